package identity

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"fmt"
	"unicode/utf8"

	"github.com/peergram/peergram/crypto/internal/wire"
)

const (
	certLabelV1 = "peergram/device-cert/v1"
	certLabel   = "peergram/device-cert/v2"
	proofLabel  = "peergram/device-proof/v1"

	// certFormatV1 certificates carry no proof of possession; they are
	// parsed only so that a device can re-certify itself (see Legacy).
	certFormatV1 = 0x01
	certFormatV2 = 0x02

	// MaxDeviceNameLen is the longest DeviceCert.Name, in bytes.
	MaxDeviceNameLen = 64

	certV1FixedSize = 1 + 32 + 32 + x25519Size + 8 + 4 + ed25519.SignatureSize // 173
	certFixedSize   = certV1FixedSize + ed25519.SignatureSize                  // 237
	certMaxSize     = certFixedSize + MaxDeviceNameLen                         // 301
	certMinSize     = certV1FixedSize
)

// DeviceCert binds a device's signing and X25519 keys to an account. The
// device signs (account, device, DH key, creation time) with its own
// signing key — proof that whoever asked for the certificate holds the
// device key, so no account can certify another account's device ID — and
// the account key signs the whole, proof included.
type DeviceCert struct {
	Account AccountID
	Device  DeviceID
	DH      [32]byte // X25519 public key
	Created int64    // Unix seconds
	Name    string   // at most MaxDeviceNameLen bytes of UTF-8
	Proof   []byte   // Ed25519 by the device key over the proof message; nil in legacy certificates
	Sig     []byte   // Ed25519 by the account key

	format byte // certFormatV2 unless parsed from a legacy encoding
}

// Propose returns the device's half of a certificate for account: the
// device's keys, name and creation time, and the device's proof of
// possession. The account key completes it with Certify. On one machine
// AccountKey.CertifyDevice does both.
func (k *DeviceKey) Propose(account AccountID, name string, created int64) (*DeviceCert, error) {
	c := &DeviceCert{Account: account, Device: k.id, Created: created, Name: name, format: certFormatV2}
	copy(c.DH[:], k.dh.PublicKey().Bytes())
	if err := c.checkName(); err != nil {
		return nil, fmt.Errorf("identity: propose device cert: %w", err)
	}
	c.Proof = k.Sign(proofLabel, c.proofBytes())
	return c, nil
}

// Certify checks a proposed certificate's proof of possession and signs
// it with the account key. The proposal must name this account.
func (k *AccountKey) Certify(proposal *DeviceCert) (*DeviceCert, error) {
	c := proposal.clone()
	c.format = certFormatV2
	if c.Account != k.id {
		return nil, fmt.Errorf("identity: certify: %w: proposal names account %s", ErrMalformed, c.Account)
	}
	if err := c.checkName(); err != nil {
		return nil, fmt.Errorf("identity: certify: %w", err)
	}
	if err := c.checkProof(); err != nil {
		return nil, fmt.Errorf("identity: certify: %w", err)
	}
	c.Sig = k.Sign(certLabel, c.signedBytes())
	return &c, nil
}

// CertifyDevice proposes and certifies dev in one step, for a device that
// holds both keys.
func (k *AccountKey) CertifyDevice(dev *DeviceKey, name string, created int64) (*DeviceCert, error) {
	p, err := dev.Propose(k.id, name, created)
	if err != nil {
		return nil, err
	}
	return k.Certify(p)
}

// Legacy reports a certificate in the first format, which has no proof of
// possession and never verifies. A device that holds both keys re-certifies
// itself with CertifyDevice.
func (c *DeviceCert) Legacy() bool { return c.format == certFormatV1 }

// Verify checks that the certificate is well formed, that the device key
// proved possession, and that c.Account signed it. It fails with
// ErrBadSignature or ErrMalformed.
func (c *DeviceCert) Verify() error {
	if err := c.checkName(); err != nil {
		return fmt.Errorf("identity: verify device cert: %w", err)
	}
	if c.format == certFormatV1 {
		return fmt.Errorf("identity: verify device cert %s: %w: legacy certificate without proof of possession", c.Device, ErrBadSignature)
	}
	if err := c.checkProof(); err != nil {
		return fmt.Errorf("identity: verify device cert: %w", err)
	}
	if !Verify(c.Account[:], certLabel, c.signedBytes(), c.Sig) {
		return fmt.Errorf("identity: verify device cert %s: %w", c.Device, ErrBadSignature)
	}
	return nil
}

func (c *DeviceCert) checkProof() error {
	if !Verify(c.Device[:], proofLabel, c.proofBytes(), c.Proof) {
		return fmt.Errorf("device %s: %w: no proof of possession of the device key", c.Device, ErrBadSignature)
	}
	return nil
}

// Equal reports whether two certificates are the same signed statement.
func (c *DeviceCert) Equal(o *DeviceCert) bool {
	return c.format == o.format && c.Account == o.Account && c.Device == o.Device && c.DH == o.DH &&
		c.Created == o.Created && c.Name == o.Name && bytes.Equal(c.Proof, o.Proof) && bytes.Equal(c.Sig, o.Sig)
}

// DHPublic returns the certified X25519 public key.
func (c *DeviceCert) DHPublic() (*ecdh.PublicKey, error) {
	pub, err := ecdh.X25519().NewPublicKey(c.DH[:])
	if err != nil {
		return nil, fmt.Errorf("identity: device cert DH key: %w: %w", ErrMalformed, err)
	}
	return pub, nil
}

// MarshalBinary encodes the certificate. It fails if a field is out of
// bounds; it does not check the signatures.
func (c *DeviceCert) MarshalBinary() ([]byte, error) {
	if err := c.checkBounds(); err != nil {
		return nil, fmt.Errorf("identity: marshal device cert: %w", err)
	}
	w := wire.NewWriter(c.encodedLen())
	c.writeTo(w)
	return w.Bytes(), nil
}

// ParseDeviceCert decodes a certificate. It checks the encoding and bounds,
// not the signatures: call Verify.
func ParseDeviceCert(b []byte) (*DeviceCert, error) {
	c, err := parseCert(b)
	if err != nil {
		return nil, fmt.Errorf("identity: parse device cert: %w", err)
	}
	return c, nil
}

func parseCert(b []byte) (*DeviceCert, error) {
	r := wire.NewReader(b)
	c := new(DeviceCert)
	c.format = r.Byte()
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if c.format != certFormatV1 && c.format != certFormatV2 {
		return nil, fmt.Errorf("%w: %#x", ErrUnknownVersion, c.format)
	}
	r.FixedInto(c.Account[:])
	r.FixedInto(c.Device[:])
	r.FixedInto(c.DH[:])
	c.Created = int64(r.Uint64())
	c.Name = string(r.Var(MaxDeviceNameLen))
	if c.format == certFormatV2 {
		c.Proof = r.Fixed(ed25519.SignatureSize)
	}
	c.Sig = r.Fixed(ed25519.SignatureSize)
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := c.checkName(); err != nil {
		return nil, err
	}
	return c, nil
}

// proofBytes is what the device key signs: account, device, DH key and
// creation time, with the format byte in front.
func (c *DeviceCert) proofBytes() []byte {
	w := wire.NewWriter(1 + 32 + 32 + 32 + 8)
	w.Byte(certFormatV2)
	w.Fixed(c.Account[:])
	w.Fixed(c.Device[:])
	w.Fixed(c.DH[:])
	w.Uint64(uint64(c.Created))
	return w.Bytes()
}

// signedBytes returns the part of the encoding the account signs:
// everything but Sig.
func (c *DeviceCert) signedBytes() []byte {
	w := wire.NewWriter(c.encodedLen())
	c.writeSigned(w)
	return w.Bytes()
}

func (c *DeviceCert) writeSigned(w *wire.Writer) {
	w.Byte(c.fmtByte())
	w.Fixed(c.Account[:])
	w.Fixed(c.Device[:])
	w.Fixed(c.DH[:])
	w.Uint64(uint64(c.Created))
	w.Var([]byte(c.Name))
	if c.fmtByte() == certFormatV2 {
		w.Fixed(c.Proof)
	}
}

func (c *DeviceCert) fmtByte() byte {
	if c.format == certFormatV1 {
		return certFormatV1
	}
	return certFormatV2
}

// writeTo writes the full encoding without checking bounds.
func (c *DeviceCert) writeTo(w *wire.Writer) {
	c.writeSigned(w)
	w.Fixed(c.Sig)
}

// encodedLen is the length writeTo writes.
func (c *DeviceCert) encodedLen() int {
	n := certV1FixedSize - ed25519.SignatureSize + len(c.Name) + len(c.Sig)
	if c.fmtByte() == certFormatV2 {
		n += len(c.Proof)
	}
	return n
}

func (c *DeviceCert) checkName() error {
	if len(c.Name) > MaxDeviceNameLen {
		return fmt.Errorf("%w: device name of %d bytes > %d", ErrMalformed, len(c.Name), MaxDeviceNameLen)
	}
	if !utf8.ValidString(c.Name) {
		return fmt.Errorf("%w: device name is not UTF-8", ErrMalformed)
	}
	return nil
}

func (c *DeviceCert) checkBounds() error {
	if err := c.checkName(); err != nil {
		return err
	}
	if len(c.Sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: signature of %d bytes", ErrMalformed, len(c.Sig))
	}
	if c.fmtByte() == certFormatV2 && len(c.Proof) != ed25519.SignatureSize {
		return fmt.Errorf("%w: proof of possession of %d bytes", ErrMalformed, len(c.Proof))
	}
	return nil
}

// clone returns a deep copy, so lists never share Sig or Proof with their
// callers.
func (c *DeviceCert) clone() DeviceCert {
	d := *c
	d.Sig = bytes.Clone(c.Sig)
	d.Proof = bytes.Clone(c.Proof)
	return d
}

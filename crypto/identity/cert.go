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
	certLabel = "peergram/device-cert/v1"

	// MaxDeviceNameLen is the longest DeviceCert.Name, in bytes.
	MaxDeviceNameLen = 64

	certFixedSize = 1 + 32 + 32 + x25519Size + 8 + 4 + ed25519.SignatureSize // 173
	certMaxSize   = certFixedSize + MaxDeviceNameLen                         // 237
)

// DeviceCert binds a device's signing and X25519 keys to an account. It is
// signed by the account key.
type DeviceCert struct {
	Account AccountID
	Device  DeviceID
	DH      [32]byte // X25519 public key
	Created int64    // Unix seconds
	Name    string   // at most MaxDeviceNameLen bytes of UTF-8
	Sig     []byte
}

// Certify signs a certificate for the device dev with X25519 key dh, a
// user-visible name and the creation time in Unix seconds.
func (k *AccountKey) Certify(dev DeviceID, dh *ecdh.PublicKey, name string, created int64) (*DeviceCert, error) {
	if dh == nil || dh.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("identity: certify: %w: DH key is not X25519", ErrMalformed)
	}
	c := &DeviceCert{Account: k.id, Device: dev, Created: created, Name: name}
	copy(c.DH[:], dh.Bytes())
	if err := c.checkName(); err != nil {
		return nil, fmt.Errorf("identity: certify: %w", err)
	}
	c.Sig = k.Sign(certLabel, c.signedBytes())
	return c, nil
}

// Verify checks that the certificate is well formed and signed by
// c.Account. It fails with ErrBadSignature or ErrMalformed.
func (c *DeviceCert) Verify() error {
	if err := c.checkName(); err != nil {
		return fmt.Errorf("identity: verify device cert: %w", err)
	}
	if !Verify(c.Account[:], certLabel, c.signedBytes(), c.Sig) {
		return fmt.Errorf("identity: verify device cert %s: %w", c.Device, ErrBadSignature)
	}
	return nil
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
// bounds; it does not check the signature.
func (c *DeviceCert) MarshalBinary() ([]byte, error) {
	if err := c.checkBounds(); err != nil {
		return nil, fmt.Errorf("identity: marshal device cert: %w", err)
	}
	w := wire.NewWriter(c.encodedLen())
	c.writeTo(w)
	return w.Bytes(), nil
}

// ParseDeviceCert decodes a certificate. It checks the encoding and bounds,
// not the signature: call Verify.
func ParseDeviceCert(b []byte) (*DeviceCert, error) {
	c, err := parseCert(b)
	if err != nil {
		return nil, fmt.Errorf("identity: parse device cert: %w", err)
	}
	return c, nil
}

func parseCert(b []byte) (*DeviceCert, error) {
	r := wire.NewReader(b)
	if err := checkFormat(r); err != nil {
		return nil, err
	}
	c := new(DeviceCert)
	r.FixedInto(c.Account[:])
	r.FixedInto(c.Device[:])
	r.FixedInto(c.DH[:])
	c.Created = int64(r.Uint64())
	c.Name = string(r.Var(MaxDeviceNameLen))
	c.Sig = r.Fixed(ed25519.SignatureSize)
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := c.checkName(); err != nil {
		return nil, err
	}
	return c, nil
}

// signedBytes returns the signed part of the encoding: everything but Sig.
func (c *DeviceCert) signedBytes() []byte {
	w := wire.NewWriter(certFixedSize + len(c.Name))
	c.writeSigned(w)
	return w.Bytes()
}

func (c *DeviceCert) writeSigned(w *wire.Writer) {
	w.Byte(formatV1)
	w.Fixed(c.Account[:])
	w.Fixed(c.Device[:])
	w.Fixed(c.DH[:])
	w.Uint64(uint64(c.Created))
	w.Var([]byte(c.Name))
}

// writeTo writes the full encoding without checking bounds.
func (c *DeviceCert) writeTo(w *wire.Writer) {
	c.writeSigned(w)
	w.Fixed(c.Sig)
}

// encodedLen is the length writeTo writes.
func (c *DeviceCert) encodedLen() int {
	return certFixedSize - ed25519.SignatureSize + len(c.Name) + len(c.Sig)
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
	return nil
}

// clone returns a deep copy, so lists never share Sig with their callers.
func (c *DeviceCert) clone() DeviceCert {
	d := *c
	d.Sig = bytes.Clone(c.Sig)
	return d
}

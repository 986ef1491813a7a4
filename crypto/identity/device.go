package identity

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"fmt"
	"io"

	"github.com/peergram/peergram/crypto/internal/wire"
)

const (
	deviceTextSize = (32*8 + 4) / 5 // 52 base32 characters
	x25519Size     = 32
	deviceKeySize  = 1 + ed25519.SeedSize + x25519Size
)

// DeviceID is the device's Ed25519 signing public key. It doubles as the
// device's relay mailbox address.
type DeviceID [32]byte

// String returns the device ID as 52 lower-case base32 characters.
func (d DeviceID) String() string { return lowerBase32.EncodeToString(d[:]) }

// MarshalText returns String().
func (d DeviceID) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses the String form.
func (d *DeviceID) UnmarshalText(b []byte) error {
	id, err := ParseDeviceID(string(b))
	if err != nil {
		return err
	}
	*d = id
	return nil
}

// PublicKey returns a copy of the device's Ed25519 public key, for use with
// Verify.
func (d DeviceID) PublicKey() ed25519.PublicKey { return bytes.Clone(d[:]) }

// ParseDeviceID parses the String form of a device ID. It trims surrounding
// spaces and folds ASCII case; anything else fails with ErrBadDeviceID.
func ParseDeviceID(s string) (DeviceID, error) {
	var d DeviceID
	s, ok := foldASCII(s)
	if !ok {
		return d, fmt.Errorf("%w: not ASCII", ErrBadDeviceID)
	}
	if len(s) != deviceTextSize {
		return d, fmt.Errorf("%w: %d characters, want %d", ErrBadDeviceID, len(s), deviceTextSize)
	}
	raw, err := lowerBase32.DecodeString(s)
	if err != nil || len(raw) != len(d) {
		return d, fmt.Errorf("%w: bad base32", ErrBadDeviceID)
	}
	if lowerBase32.EncodeToString(raw) != s {
		return d, fmt.Errorf("%w: non-canonical encoding", ErrBadDeviceID)
	}
	copy(d[:], raw)
	return d, nil
}

// DeviceKey is a device's private keys: an Ed25519 signing key (its
// DeviceID) and an X25519 key for key agreement. It is immutable and safe
// for concurrent use.
type DeviceKey struct {
	priv ed25519.PrivateKey
	dh   *ecdh.PrivateKey
	id   DeviceID
}

// NewDeviceKey generates a device key from 64 bytes of rand (Ed25519 seed,
// then X25519 scalar); nil means crypto/rand. The same bytes always give the
// same key: unlike ecdh's GenerateKey, which may ignore its reader, this
// reads the scalar itself.
func NewDeviceKey(rand io.Reader) (*DeviceKey, error) {
	var b [ed25519.SeedSize + x25519Size]byte
	if err := readRand(rand, b[:]); err != nil {
		return nil, fmt.Errorf("identity: new device key: %w", err)
	}
	k, err := newDeviceKey(b[:ed25519.SeedSize], b[ed25519.SeedSize:])
	if err != nil {
		return nil, fmt.Errorf("identity: new device key: %w", err)
	}
	return k, nil
}

func newDeviceKey(seed, scalar []byte) (*DeviceKey, error) {
	dh, err := ecdh.X25519().NewPrivateKey(scalar)
	if err != nil {
		return nil, err
	}
	k := &DeviceKey{priv: ed25519.NewKeyFromSeed(seed), dh: dh}
	copy(k.id[:], k.priv.Public().(ed25519.PublicKey))
	return k, nil
}

// ID returns the device ID, which is the signing public key.
func (k *DeviceKey) ID() DeviceID { return k.id }

// SigningKey returns a copy of the Ed25519 private key.
func (k *DeviceKey) SigningKey() ed25519.PrivateKey { return bytes.Clone(k.priv) }

// DH returns the X25519 private key.
func (k *DeviceKey) DH() *ecdh.PrivateKey { return k.dh }

// Sign signs label || 0x00 || msg with the device's signing key; see
// AccountKey.Sign.
func (k *DeviceKey) Sign(label string, msg []byte) []byte { return sign(k.priv, label, msg) }

// MarshalBinary encodes both private keys.
func (k *DeviceKey) MarshalBinary() ([]byte, error) {
	w := wire.NewWriter(deviceKeySize)
	w.Byte(formatV1)
	w.Fixed(k.priv.Seed())
	w.Fixed(k.dh.Bytes())
	return w.Bytes(), nil
}

// UnmarshalDeviceKey decodes the output of DeviceKey.MarshalBinary.
func UnmarshalDeviceKey(b []byte) (*DeviceKey, error) {
	r := wire.NewReader(b)
	if err := checkFormat(r); err != nil {
		return nil, fmt.Errorf("identity: unmarshal device key: %w", err)
	}
	var seed [ed25519.SeedSize]byte
	var scalar [x25519Size]byte
	r.FixedInto(seed[:])
	r.FixedInto(scalar[:])
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("identity: unmarshal device key: %w: %w", ErrMalformed, err)
	}
	k, err := newDeviceKey(seed[:], scalar[:])
	if err != nil {
		return nil, fmt.Errorf("identity: unmarshal device key: %w: %w", ErrMalformed, err)
	}
	return k, nil
}

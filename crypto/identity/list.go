package identity

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"math"

	"github.com/peergram/peergram/crypto/internal/wire"
)

const (
	listLabel     = "peergram/device-list/v1"
	listHashLabel = "peergram/device-list-hash/v1"

	// MaxDevices is the largest number of devices on one DeviceList.
	MaxDevices = 64

	listFixedSize = 1 + 32 + 8 + 32 + 8 + 4 + ed25519.SignatureSize // 149
)

// DeviceList is the versioned, hash-chained list of an account's devices,
// signed by the account key. Clients keep the newest list they have checked
// and accept another only through CheckUpdate or CheckChain.
type DeviceList struct {
	Account AccountID
	Version uint64   // 1 for the first list, then +1 per update
	Prev    [32]byte // Hash of version Version-1; zero for version 1
	Issued  int64    // Unix seconds
	Devices []DeviceCert
	Sig     []byte
}

// SignDeviceList signs the successor of prev listing devices; a nil prev
// makes version 1. prev must be the account's newest list. Every
// certificate must be signed by k, and the result passes Verify.
func (k *AccountKey) SignDeviceList(prev *DeviceList, devices []DeviceCert, issued int64) (*DeviceList, error) {
	l := &DeviceList{Account: k.id, Version: 1, Issued: issued}
	if prev != nil {
		if prev.Account != k.id {
			return nil, fmt.Errorf("identity: sign device list: previous list is for account %s", prev.Account)
		}
		if prev.Version == 0 || prev.Version == math.MaxUint64 {
			return nil, fmt.Errorf("identity: sign device list: %w: previous version %d", ErrMalformed, prev.Version)
		}
		l.Version = prev.Version + 1
		l.Prev = prev.Hash()
	}
	if len(devices) > MaxDevices {
		return nil, fmt.Errorf("identity: sign device list: %w: %d devices > %d", ErrMalformed, len(devices), MaxDevices)
	}
	l.Devices = make([]DeviceCert, len(devices))
	for i := range devices {
		l.Devices[i] = devices[i].clone()
	}
	l.Sig = k.Sign(listLabel, l.signedBytes())
	if err := l.Verify(k.id); err != nil {
		return nil, fmt.Errorf("identity: sign device list: %w", err)
	}
	return l, nil
}

// Hash identifies the list, signature included; the next version carries it
// as Prev. It is meaningful only for lists that pass Verify.
func (l *DeviceList) Hash() [32]byte {
	w := wire.NewWriter(len(listHashLabel) + 1 + l.encodedLen())
	w.Fixed([]byte(listHashLabel))
	w.Byte(0)
	l.writeTo(w)
	return sha256.Sum256(w.Bytes())
}

// Verify checks that the list belongs to account and is signed by it, that
// every certificate is signed by the same account, and that the list is
// well formed: version at least 1, zero Prev on version 1, at most
// MaxDevices devices, none twice. It fails with ErrBadSignature or
// ErrMalformed. Verify says nothing about freshness: see CheckUpdate.
func (l *DeviceList) Verify(account AccountID) error {
	if l.Account != account {
		return fmt.Errorf("identity: verify device list: %w: list of %s, want %s", ErrBadSignature, l.Account, account)
	}
	if err := l.checkBounds(); err != nil {
		return fmt.Errorf("identity: verify device list: %w", err)
	}
	// The list signature first: a forgery costs one verification.
	if !Verify(account[:], listLabel, l.signedBytes(), l.Sig) {
		return fmt.Errorf("identity: verify device list v%d: %w", l.Version, ErrBadSignature)
	}
	for i := range l.Devices {
		c := &l.Devices[i]
		if c.Account != account {
			return fmt.Errorf("identity: verify device list: %w: device %s certified by %s", ErrBadSignature, c.Device, c.Account)
		}
		for j := range i {
			if l.Devices[j].Device == c.Device {
				return fmt.Errorf("identity: verify device list: %w: device %s listed twice", ErrMalformed, c.Device)
			}
		}
		if err := c.Verify(); err != nil {
			return fmt.Errorf("identity: verify device list: %w", err)
		}
	}
	return nil
}

// CheckUpdate verifies l and checks that it may replace known, the newest
// list already accepted for the account (nil if none). With a nil known, l
// is checked against its own Account: the caller must make sure that is the
// account it asked for. It returns ErrRollback for an older version, ErrFork
// for a different list of the same version or a successor that does not
// chain to known, and ErrGap if versions are missing in between. A list
// identical to known is accepted.
func (l *DeviceList) CheckUpdate(known *DeviceList) error {
	account := l.Account
	if known != nil {
		account = known.Account
	}
	if err := l.Verify(account); err != nil {
		return err
	}
	if known == nil {
		return nil
	}
	switch {
	case l.Version < known.Version:
		return fmt.Errorf("identity: device list v%d after v%d: %w", l.Version, known.Version, ErrRollback)
	case l.Version == known.Version:
		if l.Hash() != known.Hash() {
			return fmt.Errorf("identity: two device lists v%d: %w", l.Version, ErrFork)
		}
	case l.Version == known.Version+1:
		if l.Prev != known.Hash() {
			return fmt.Errorf("identity: device list v%d does not follow known v%d: %w", l.Version, known.Version, ErrFork)
		}
	default:
		return fmt.Errorf("identity: device list v%d after v%d: %w", l.Version, known.Version, ErrGap)
	}
	return nil
}

// CheckChain applies CheckUpdate to each list of chain in turn, starting
// from known (nil if none), and returns the last one. An empty chain returns
// known; with a nil known it is an error.
func CheckChain(known *DeviceList, chain []*DeviceList) (*DeviceList, error) {
	if len(chain) == 0 && known == nil {
		return nil, fmt.Errorf("identity: check chain: %w: no lists", ErrMalformed)
	}
	cur := known
	for i, l := range chain {
		if l == nil {
			return nil, fmt.Errorf("identity: check chain: %w: nil list at %d", ErrMalformed, i)
		}
		if err := l.CheckUpdate(cur); err != nil {
			return nil, fmt.Errorf("identity: check chain at %d: %w", i, err)
		}
		cur = l
	}
	return cur, nil
}

// Freshness bounds of a device list's Issued time, in seconds. A list is
// the account's statement of which devices speak for it; a directory that
// withholds a newer list (one that removes a stolen device) could otherwise
// keep a removed device's certificate in use forever. Certificates have no
// lifetime of their own: a certificate is valid while it is listed in a
// list that is fresh.
const (
	// MaxListAge is how long after Issued a list stays valid: 60 days.
	MaxListAge = 60 * 24 * 3600
	// ListRefresh is the age at which a device re-signs its account's list
	// (same devices, next version), well inside MaxListAge: 7 days.
	ListRefresh = 7 * 24 * 3600
	// MaxListSkew is how far Issued may run ahead of the checker's clock: 10
	// minutes.
	MaxListSkew = 10 * 60
)

// CheckFresh reports whether the list is valid at now (Unix seconds): issued
// at most MaxListAge ago and at most MaxListSkew ahead. It fails with
// ErrExpired.
func (l *DeviceList) CheckFresh(now int64) error {
	switch {
	case l.Issued < now-MaxListAge:
		return fmt.Errorf("identity: device list v%d of %s issued %d, now %d: %w", l.Version, l.Account, l.Issued, now, ErrExpired)
	case l.Issued > now+MaxListSkew:
		return fmt.Errorf("identity: device list v%d of %s issued in the future (%d, now %d): %w", l.Version, l.Account, l.Issued, now, ErrExpired)
	}
	return nil
}

// Lookup returns a copy of the certificate of device d, or ErrUnlistedDevice.
// It trusts the list: call it only on a list that passed Verify.
func (l *DeviceList) Lookup(d DeviceID) (*DeviceCert, error) {
	for i := range l.Devices {
		if l.Devices[i].Device == d {
			c := l.Devices[i].clone()
			return &c, nil
		}
	}
	return nil, fmt.Errorf("identity: device %s: %w", d, ErrUnlistedDevice)
}

// MarshalBinary encodes the list. It fails if a field is out of bounds; it
// does not check signatures.
func (l *DeviceList) MarshalBinary() ([]byte, error) {
	if err := l.checkBounds(); err != nil {
		return nil, fmt.Errorf("identity: marshal device list: %w", err)
	}
	w := wire.NewWriter(l.encodedLen())
	l.writeTo(w)
	return w.Bytes(), nil
}

// ParseDeviceList decodes a list. It checks the encoding and bounds, not
// signatures: call Verify or CheckUpdate.
func ParseDeviceList(b []byte) (*DeviceList, error) {
	r := wire.NewReader(b)
	if err := checkFormat(r); err != nil {
		return nil, fmt.Errorf("identity: parse device list: %w", err)
	}
	l := new(DeviceList)
	r.FixedInto(l.Account[:])
	l.Version = r.Uint64()
	r.FixedInto(l.Prev[:])
	l.Issued = int64(r.Uint64())
	n := r.Count(MaxDevices, 4+certMinSize)
	if n > 0 {
		l.Devices = make([]DeviceCert, n)
	}
	for i := range n {
		raw := r.Var(certMaxSize)
		if r.Err() != nil {
			break
		}
		c, err := parseCert(raw)
		if err != nil {
			return nil, fmt.Errorf("identity: parse device list: device %d: %w", i, err)
		}
		l.Devices[i] = *c
	}
	l.Sig = r.Fixed(ed25519.SignatureSize)
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("identity: parse device list: %w: %w", ErrMalformed, err)
	}
	if err := l.checkBounds(); err != nil {
		return nil, fmt.Errorf("identity: parse device list: %w", err)
	}
	return l, nil
}

func (l *DeviceList) checkBounds() error {
	if l.Version == 0 {
		return fmt.Errorf("%w: version 0", ErrMalformed)
	}
	if l.Version == 1 && l.Prev != [32]byte{} {
		return fmt.Errorf("%w: version 1 with a previous hash", ErrMalformed)
	}
	if len(l.Devices) > MaxDevices {
		return fmt.Errorf("%w: %d devices > %d", ErrMalformed, len(l.Devices), MaxDevices)
	}
	for i := range l.Devices {
		if err := l.Devices[i].checkBounds(); err != nil {
			return fmt.Errorf("device %d: %w", i, err)
		}
	}
	if len(l.Sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: signature of %d bytes", ErrMalformed, len(l.Sig))
	}
	return nil
}

// signedBytes returns the signed part of the encoding: everything but Sig.
func (l *DeviceList) signedBytes() []byte {
	w := wire.NewWriter(l.encodedLen())
	l.writeSigned(w)
	return w.Bytes()
}

func (l *DeviceList) writeSigned(w *wire.Writer) {
	w.Byte(formatV1)
	w.Fixed(l.Account[:])
	w.Uint64(l.Version)
	w.Fixed(l.Prev[:])
	w.Uint64(uint64(l.Issued))
	w.Uint32(uint32(len(l.Devices)))
	for i := range l.Devices {
		c := &l.Devices[i]
		w.Uint32(uint32(c.encodedLen()))
		c.writeTo(w)
	}
}

// writeTo writes the full encoding without checking bounds.
func (l *DeviceList) writeTo(w *wire.Writer) {
	l.writeSigned(w)
	w.Fixed(l.Sig)
}

func (l *DeviceList) encodedLen() int {
	n := listFixedSize - ed25519.SignatureSize + len(l.Sig)
	for i := range l.Devices {
		n += 4 + l.Devices[i].encodedLen()
	}
	return n
}

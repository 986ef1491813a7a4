package ratchet

import (
	"crypto/ecdh"
	"fmt"

	"github.com/peergram/peergram/crypto/internal/wire"
)

// StateVersion is the version byte that starts a marshalled Session.
const StateVersion = 1

// State flags (layout in doc.go). Append-only.
const (
	flagDHr = 1 << iota
	flagCKs
	flagCKr
	flagsKnown = flagDHr | flagCKs | flagCKr
)

// Encoded sizes of the fixed part and of list entries.
const (
	stateFixedSize = 1 + 1 + 5*keySize + 3*4
	oldChainSize   = keySize + 4
	skippedKeySize = keySize + 4 + keySize
)

// MarshalBinary encodes the whole session, skipped keys included, so that it
// can be stored and restored with Unmarshal. The result holds secret keys.
func (s *Session) MarshalBinary() ([]byte, error) {
	w := wire.NewWriter(stateFixedSize + 4 + len(s.old)*oldChainSize + 4 + len(s.skipped)*skippedKeySize)
	w.Byte(StateVersion)
	var flags byte
	if s.hasDHr {
		flags |= flagDHr
	}
	if s.hasCKs {
		flags |= flagCKs
	}
	if s.hasCKr {
		flags |= flagCKr
	}
	w.Byte(flags)
	w.Fixed(s.dhs.Bytes())
	w.Fixed(s.dhr[:])
	w.Fixed(s.rk[:])
	w.Fixed(s.cks[:])
	w.Fixed(s.ckr[:])
	w.Uint32(s.ns)
	w.Uint32(s.nr)
	w.Uint32(s.pn)
	w.Uint32(uint32(len(s.old)))
	for _, c := range s.old {
		w.Fixed(c.dh[:])
		w.Uint32(c.end)
	}
	w.Uint32(uint32(len(s.skipped)))
	for i := range s.skipped {
		k := &s.skipped[i]
		w.Fixed(k.dh[:])
		w.Uint32(k.n)
		w.Fixed(k.mk[:])
	}
	return w.Bytes(), nil
}

// Unmarshal decodes a session encoded by MarshalBinary. It rejects any input
// MarshalBinary could not have produced (ErrMalformed) and never allocates
// more than the input's size allows.
func Unmarshal(b []byte) (*Session, error) {
	s, err := unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("ratchet: unmarshal: %w", err)
	}
	return s, nil
}

func unmarshal(b []byte) (*Session, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty state", ErrMalformed)
	}
	if b[0] != StateVersion {
		return nil, fmt.Errorf("%w: state version %d", ErrUnknownVersion, b[0])
	}
	r := wire.NewReader(b[1:])
	flags := r.Byte()
	var priv [keySize]byte
	r.FixedInto(priv[:])
	s := &Session{}
	r.FixedInto(s.dhr[:])
	r.FixedInto(s.rk[:])
	r.FixedInto(s.cks[:])
	r.FixedInto(s.ckr[:])
	s.ns = r.Uint32()
	s.nr = r.Uint32()
	s.pn = r.Uint32()
	if n := r.Count(MaxOldChains-1, oldChainSize); n > 0 {
		s.old = make([]oldChain, n)
		for i := range s.old {
			r.FixedInto(s.old[i].dh[:])
			s.old[i].end = r.Uint32()
		}
	}
	if n := r.Count(MaxSkippedKeys, skippedKeySize); n > 0 {
		s.skipped = make([]skippedKey, n)
		for i := range s.skipped {
			k := &s.skipped[i]
			r.FixedInto(k.dh[:])
			k.n = r.Uint32()
			r.FixedInto(k.mk[:])
		}
	}
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if flags&^flagsKnown != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#x", ErrMalformed, flags)
	}
	s.hasDHr = flags&flagDHr != 0
	s.hasCKs = flags&flagCKs != 0
	s.hasCKr = flags&flagCKr != 0
	if err := s.check(); err != nil {
		return nil, err
	}
	k, err := ecdh.X25519().NewPrivateKey(priv[:])
	clear(priv[:])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	s.dhs = k
	copy(s.dhsPub[:], k.PublicKey().Bytes())
	return s, nil
}

// check verifies the invariants a Session keeps, so that a decoded state
// behaves like one built by this package.
func (s *Session) check() error {
	var zero [keySize]byte
	switch {
	case !s.hasDHr && s.dhr != zero,
		!s.hasCKs && s.cks != zero,
		!s.hasCKr && s.ckr != zero:
		return fmt.Errorf("%w: key set for an absent field", ErrMalformed)
	case s.hasCKr && !s.hasDHr:
		return fmt.Errorf("%w: receiving chain without remote key", ErrMalformed)
	case !s.hasCKs && (s.hasDHr || s.hasCKr || s.ns != 0 || s.pn != 0):
		// Only a responder that has received nothing lacks a sending chain.
		return fmt.Errorf("%w: state without sending chain", ErrMalformed)
	case !s.hasCKr && (s.nr != 0 || len(s.old) != 0 || len(s.skipped) != 0):
		return fmt.Errorf("%w: receiving data without receiving chain", ErrMalformed)
	}
	for i := range s.old {
		if s.old[i].dh == s.dhr {
			return fmt.Errorf("%w: old chain equals current chain", ErrMalformed)
		}
		for j := range i {
			if s.old[j].dh == s.old[i].dh {
				return fmt.Errorf("%w: old chain listed twice", ErrMalformed)
			}
		}
	}
	seen := make(map[skippedID]struct{}, len(s.skipped))
	for i := range s.skipped {
		k := &s.skipped[i]
		if !s.keyBelongs(k) {
			return fmt.Errorf("%w: skipped key %d outside a known chain", ErrMalformed, k.n)
		}
		id := skippedID{k.dh, k.n}
		if _, dup := seen[id]; dup {
			return fmt.Errorf("%w: skipped key %d listed twice", ErrMalformed, k.n)
		}
		seen[id] = struct{}{}
	}
	return nil
}

type skippedID struct {
	dh [keySize]byte
	n  uint32
}

// keyBelongs reports whether k is a key of a known chain below that chain's
// next message number.
func (s *Session) keyBelongs(k *skippedKey) bool {
	if k.dh == s.dhr {
		return k.n < s.nr
	}
	for _, c := range s.old {
		if c.dh == k.dh {
			return k.n < c.end
		}
	}
	return false
}

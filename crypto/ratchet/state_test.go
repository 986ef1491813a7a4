package ratchet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func TestMarshalRoundTrip(t *testing.T) {
	fx := newDecryptFixture(t)
	if len(fx.bob.old) == 0 || len(fx.bob.skipped) < 2 {
		t.Fatalf("fixture has %d old chains and %d skipped keys", len(fx.bob.old), len(fx.bob.skipped))
	}
	alice, bob := newPair(t, testRand(t.Name()))
	for _, s := range []*Session{fx.bob, alice, bob} {
		c := roundTrip(t, s)
		// The restored session behaves the same: it opens every genuine
		// message the original opens.
		for i, m := range fx.msgs {
			want, errWant := s.clone().Decrypt(testRand("x"), m, fx.ad)
			got, errGot := c.clone().Decrypt(testRand("x"), m, fx.ad)
			if !bytes.Equal(got, want) || (errGot == nil) != (errWant == nil) {
				t.Fatalf("message %d: restored session gives %q, %v; original %q, %v", i, got, errGot, want, errWant)
			}
		}
	}
}

func TestUnmarshalRejects(t *testing.T) {
	fx := newDecryptFixture(t)
	good := marshal(t, fx.bob)
	_, fresh := newPair(t, testRand(t.Name()))

	// Every strict prefix and a trailing byte are rejected.
	for n := range len(good) {
		if _, err := Unmarshal(good[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("prefix of %d bytes: %v", n, err)
		}
	}
	if _, err := Unmarshal(append(bytes.Clone(good), 0)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing byte: %v", err)
	}

	bytesCase := func(f func(b []byte) []byte) func() []byte {
		return func() []byte { return f(bytes.Clone(good)) }
	}
	stateCase := func(base *Session, f func(s *Session)) func() []byte {
		return func() []byte {
			s := base.clone()
			f(s)
			return marshal(t, s)
		}
	}
	const oldCountAt = 2 + 5*keySize + 12
	tests := []struct {
		name  string
		input func() []byte
		want  error
	}{
		{"unknown version", bytesCase(func(b []byte) []byte { b[0] = 2; return b }), ErrUnknownVersion},
		{"unknown flag", bytesCase(func(b []byte) []byte { b[1] |= 8; return b }), ErrMalformed},
		{"huge old count", bytesCase(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[oldCountAt:], 1<<31)
			return b
		}), ErrMalformed},
		{"huge skipped count", bytesCase(func(b []byte) []byte {
			at := oldCountAt + 4 + len(fx.bob.old)*oldChainSize
			binary.BigEndian.PutUint32(b[at:], MaxSkippedKeys)
			return b
		}), ErrMalformed},
		{"too many old chains", stateCase(fx.bob, func(s *Session) {
			for i := range MaxOldChains {
				s.old = append(s.old, oldChain{dh: [32]byte{byte(i + 1), 1}})
			}
		}), ErrMalformed},
		{"too many skipped keys", stateCase(fx.bob, func(s *Session) {
			for n := range uint32(MaxSkippedKeys + 1) {
				s.skipped = append(s.skipped, skippedKey{dh: s.old[0].dh, n: n})
			}
			s.old[0].end = MaxSkippedKeys + 2
		}), ErrMalformed},
		{"duplicate skipped key", stateCase(fx.bob, func(s *Session) { s.skipped = append(s.skipped, s.skipped[0]) }), ErrMalformed},
		{"skipped key of unknown chain", stateCase(fx.bob, func(s *Session) { s.skipped[0].dh[0] ^= 1 }), ErrMalformed},
		{"skipped key not yet reached", stateCase(fx.bob, func(s *Session) {
			s.skipped = append(s.skipped, skippedKey{dh: s.dhr, n: s.nr})
		}), ErrMalformed},
		{"skipped key past old chain end", stateCase(fx.bob, func(s *Session) {
			s.skipped = append(s.skipped, skippedKey{dh: s.old[0].dh, n: s.old[0].end})
		}), ErrMalformed},
		{"old chain is current", stateCase(fx.bob, func(s *Session) { s.old[0].dh = s.dhr }), ErrMalformed},
		{"old chain twice", stateCase(fx.bob, func(s *Session) { s.old = append(s.old, s.old[0]) }), ErrMalformed},
		{"absent chain key set", stateCase(fresh, func(s *Session) { s.cks[0] = 1 }), ErrMalformed},
		{"absent remote key set", stateCase(fresh, func(s *Session) { s.dhr[0] = 1 }), ErrMalformed},
		{"receiving chain without remote key", stateCase(fx.bob, func(s *Session) { s.hasDHr, s.dhr = false, [32]byte{} }), ErrMalformed},
		{"no sending chain but counters", stateCase(fresh, func(s *Session) { s.ns = 1 }), ErrMalformed},
		{"no receiving chain but counters", stateCase(fresh, func(s *Session) { s.hasCKs, s.cks[0], s.nr = true, 1, 1 }), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := Unmarshal(tt.input()); !errors.Is(err, tt.want) {
				t.Fatalf("Unmarshal = %v, %v; want %v", s, err, tt.want)
			}
		})
	}
}

package ratchet

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
)

// testRand returns a deterministic reader (ChaCha8) seeded from label.
func testRand(label string) io.Reader {
	var seed [32]byte
	copy(seed[:], label)
	return rand.NewChaCha8(seed)
}

// newPair returns an initiator and a responder sharing a key, both drawn
// from r as PQXDH would have produced them.
func newPair(t testing.TB, r io.Reader) (alice, bob *Session) {
	t.Helper()
	sk := make([]byte, 32)
	if _, err := io.ReadFull(r, sk); err != nil {
		t.Fatal(err)
	}
	spk, err := newKeyPair(r)
	if err != nil {
		t.Fatal(err)
	}
	alice, err = NewInitiator(r, sk, spk.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	bob, err = NewResponder(sk, spk)
	if err != nil {
		t.Fatal(err)
	}
	return alice, bob
}

// clone deep-copies s (the private key is immutable and shared).
func (s *Session) clone() *Session {
	c := *s
	c.old = slices.Clone(s.old)
	c.skipped = slices.Clone(s.skipped)
	return &c
}

func marshal(t testing.TB, s *Session) []byte {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// roundTrip returns Unmarshal(MarshalBinary(s)) and checks it re-encodes to
// the same bytes.
func roundTrip(t testing.TB, s *Session) *Session {
	t.Helper()
	b := marshal(t, s)
	c, err := Unmarshal(b)
	if err != nil {
		t.Fatalf("Unmarshal(MarshalBinary()): %v", err)
	}
	if b2 := marshal(t, c); !bytes.Equal(b, b2) {
		t.Fatal("MarshalBinary after Unmarshal differs")
	}
	return c
}

func encrypt(t testing.TB, s *Session, pt, ad []byte) []byte {
	t.Helper()
	m, err := s.Encrypt(nil, pt, ad)
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	return m
}

func decrypt(t testing.TB, s *Session, r io.Reader, m, ad, want []byte) {
	t.Helper()
	pt, err := s.Decrypt(r, m, ad)
	if err != nil {
		t.Fatalf("Decrypt: %v", err)
	}
	if !bytes.Equal(pt, want) {
		t.Fatalf("Decrypt = %q, want %q", pt, want)
	}
}

// decryptFails checks that Decrypt fails (with want, if non-nil) and leaves
// s unchanged.
func decryptFails(t testing.TB, s *Session, r io.Reader, m, ad []byte, want error) error {
	t.Helper()
	before := marshal(t, s)
	pt, err := s.Decrypt(r, m, ad)
	if err == nil {
		t.Fatalf("Decrypt succeeded (%q), want error %v", pt, want)
	}
	if want != nil && !errors.Is(err, want) {
		t.Fatalf("Decrypt error = %v, want %v", err, want)
	}
	if after := marshal(t, s); !bytes.Equal(before, after) {
		t.Fatalf("failed Decrypt (%v) changed the session", err)
	}
	return err
}

func mustPub(t testing.TB, b []byte) *ecdh.PublicKey {
	t.Helper()
	p, err := ecdh.X25519().NewPublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

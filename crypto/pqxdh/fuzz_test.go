package pqxdh

import (
	"testing"
)

func FuzzParseBundle(f *testing.F) {
	r := seeded(8)
	bob := newParty(f, r)
	set, _ := GeneratePrekeys(r, bob.dev, 2)
	raw, _ := set.Bundle(bob.dev).MarshalBinary()
	f.Add(raw)
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBundle(data)
		if err != nil {
			return
		}
		_ = b.Verify(bob.cert)
		if _, err := b.MarshalBinary(); err != nil {
			t.Fatalf("parsed bundle does not re-encode: %v", err)
		}
	})
}

func FuzzParseInitMessage(f *testing.F) {
	r := seeded(9)
	alice, bob := newParty(f, r), newParty(f, r)
	set, _ := GeneratePrekeys(r, bob.dev, 1)
	_, init, _ := Initiate(r, alice.dev.DH(), set.Bundle(bob.dev).Take(), nil)
	raw, _ := init.MarshalBinary()
	f.Add(raw)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseInitMessage(data)
		if err != nil {
			return
		}
		// Respond must fail cleanly or agree; never panic.
		if res, err := Respond(set, bob.dev.DH(), m); err == nil && len(res.SharedKey) != 32 {
			t.Fatal("short key")
		}
	})
}

func FuzzUnmarshalPrekeySet(f *testing.F) {
	r := seeded(10)
	bob := newParty(f, r)
	set, _ := GeneratePrekeys(r, bob.dev, 1)
	raw, _ := set.MarshalBinary()
	f.Add(raw)
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := UnmarshalPrekeySet(data)
		if err != nil {
			return
		}
		if _, err := s.MarshalBinary(); err != nil {
			t.Fatal(err)
		}
	})
}

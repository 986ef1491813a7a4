package ratchet

import (
	"bytes"
	"errors"
	"testing"
)

// sentinels are the errors a decoder or Decrypt may report for hostile input.
var sentinels = []error{ErrMalformed, ErrUnknownVersion, ErrAuth, ErrDuplicate, ErrTooFarAhead, ErrInvalidKey}

func checkSentinel(t *testing.T, err error) {
	t.Helper()
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("error %v is none of the package's sentinels", err)
}

// decryptFixture is a responder with skipped keys on its current and a
// previous chain, plus messages that reach every decryption path.
type decryptFixture struct {
	bob  *Session
	ad   []byte
	msgs [][]byte // genuine messages for bob, then garbage
}

func newDecryptFixture(t testing.TB) decryptFixture {
	r := testRand("fuzz decrypt fixture")
	alice, bob := newPair(t, r)
	ad := []byte("fuzz ad")
	var chain0, chain1 [][]byte
	for range 4 {
		chain0 = append(chain0, encrypt(t, alice, []byte("chain 0"), ad))
	}
	decrypt(t, bob, r, chain0[3], ad, []byte("chain 0"))
	decrypt(t, bob, r, chain0[1], ad, []byte("chain 0"))
	decrypt(t, alice, r, encrypt(t, bob, []byte("b0"), ad), ad, []byte("b0"))
	for range 5 {
		chain1 = append(chain1, encrypt(t, alice, []byte("chain 1"), ad))
	}
	decrypt(t, bob, r, chain1[1], ad, []byte("chain 1"))
	b1 := encrypt(t, bob, []byte("b1"), ad)
	fixture := bob.clone()
	decrypt(t, alice, r, b1, ad, []byte("b1"))
	chain2 := encrypt(t, alice, []byte("chain 2"), ad)
	garbage := [][]byte{
		nil, {MessageVersion}, {2}, make([]byte, Overhead), bytes.Repeat([]byte{1}, Overhead+5),
	}
	return decryptFixture{bob: fixture, ad: ad, msgs: append([][]byte{
		chain0[0], chain0[2], // skipped keys of the previous chain
		chain0[3], // replay
		chain1[0], // skipped key of the current chain
		chain1[2], // next in order
		chain1[4], // skipping ahead
		chain2,    // new chain: DH ratchet step
	}, garbage...)}
}

// interactionSeeds are scripts for FuzzInteraction (see sim.run).
func interactionSeeds() [][]byte {
	return [][]byte{
		{opSendA, opToB},
		repeat(10, opSendA, opToB, opSendB, opToA),
		repeat(4, opSendA, opSendA, opSendA, op(opToB, 2), opSendB, opDropToB, opToB, op(opDup, 0), opToA, op(opReload, 1)),
		repeat(7, opSendA, opSendB, opToB, op(opToB, 1), opToA, op(opDropToA, 3), op(opDup, 3), opSendB, opSendA, opToA),
		{0x10, 0x23, 0x00, 0x01, 0xff, 0x3a, 0x42, 0x1b, 0x02, 0x03, 0x07, 0x0f, 0x06, 0x0e},
	}
}

func FuzzParseMessage(f *testing.F) {
	for _, m := range newDecryptFixture(f).msgs {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, ct, err := ParseMessage(b)
		if err != nil {
			checkSentinel(t, err)
			return
		}
		if len(ct) < tagSize || len(b) != HeaderSize+len(ct) {
			t.Fatalf("ciphertext of %d bytes from a %d-byte message", len(ct), len(b))
		}
		var w [HeaderSize]byte
		enc := appendHeaderForTest(w[:0], &h)
		if !bytes.Equal(enc, b[:HeaderSize]) {
			t.Fatal("re-encoded header differs")
		}
	})
}

func FuzzUnmarshal(f *testing.F) {
	for _, s := range stateSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Unmarshal(b)
		if err != nil {
			checkSentinel(t, err)
			return
		}
		again := marshal(t, s)
		if !bytes.Equal(again, b) {
			t.Fatal("MarshalBinary(Unmarshal(b)) != b")
		}
		// A decoded state must be usable without panicking.
		if _, err := s.Encrypt(nil, []byte("x"), nil); err != nil && !errors.Is(err, ErrNoSendingChain) && !errors.Is(err, ErrChainExhausted) {
			t.Fatalf("Encrypt on decoded state: %v", err)
		}
	})
}

func FuzzDecrypt(f *testing.F) {
	fx := newDecryptFixture(f)
	for _, m := range fx.msgs {
		f.Add(m)
	}
	before := marshal(f, fx.bob)
	f.Fuzz(func(t *testing.T, msg []byte) {
		s := fx.bob.clone()
		pt, err := s.Decrypt(testRand("fuzz"), msg, fx.ad)
		if err == nil {
			if !bytes.HasPrefix(pt, []byte("chain ")) {
				t.Fatalf("decrypted a forged message: %q", pt)
			}
			return
		}
		checkSentinel(t, err)
		if !bytes.Equal(marshal(t, s), before) {
			t.Fatalf("failed Decrypt (%v) changed the session", err)
		}
	})
}

func FuzzInteraction(f *testing.F) {
	for _, s := range interactionSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, script []byte) {
		// Bounded so that undelivered messages never exceed MaxSkippedKeys:
		// within that bound every message must decrypt exactly once.
		if len(script) > MaxSkippedKeys {
			script = script[:MaxSkippedKeys]
		}
		newSim(t, testRand("fuzz interaction")).run(script)
	})
}

// stateSeeds are marshalled sessions at several stages, and broken ones.
func stateSeeds(t testing.TB) [][]byte {
	r := testRand("fuzz state seeds")
	alice, bob := newPair(t, r)
	seeds := [][]byte{marshal(t, alice), marshal(t, bob)}
	fx := newDecryptFixture(t)
	full := marshal(t, fx.bob)
	seeds = append(seeds, full, full[:len(full)-1], append([]byte{2}, full[1:]...), nil)
	m := newSim(t, r)
	m.run(interactionSeeds()[3])
	return append(seeds, marshal(t, m.party[0]), marshal(t, m.party[1]))
}

// TestFuzzCorpus keeps testdata/fuzz in step with the seed generators
// (-update rewrites it).
func TestFuzzCorpus(t *testing.T) {
	fx := newDecryptFixture(t)
	writeCorpus(t, "FuzzParseMessage", fx.msgs)
	writeCorpus(t, "FuzzDecrypt", fx.msgs)
	writeCorpus(t, "FuzzUnmarshal", stateSeeds(t))
	writeCorpus(t, "FuzzInteraction", interactionSeeds())
}

func appendHeaderForTest(b []byte, h *Header) []byte {
	b = append(b, MessageVersion)
	b = append(b, h.DH[:]...)
	b = append(b, byte(h.PN>>24), byte(h.PN>>16), byte(h.PN>>8), byte(h.PN))
	return append(b, byte(h.N>>24), byte(h.N>>16), byte(h.N>>8), byte(h.N))
}

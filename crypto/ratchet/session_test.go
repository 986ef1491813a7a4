package ratchet

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"testing"
)

// Script operations for sim.run (see sim.run): op | arg<<3.
const (
	opSendA   = 0
	opSendB   = 1
	opToB     = 2
	opToA     = 3
	opDropToB = 4
	opDropToA = 5
	opDup     = 6
	opReload  = 7
)

func op(o, arg int) byte { return byte(o | arg<<3) }

func repeat(n int, ops ...byte) []byte {
	var s []byte
	for range n {
		s = append(s, ops...)
	}
	return s
}

func TestConversations(t *testing.T) {
	tests := []struct {
		name   string
		script []byte
	}{
		{"one message", []byte{opSendA, opToB}},
		{"in order alternating", repeat(20, opSendA, opToB, opSendB, opToA)},
		{"in order bursts", repeat(5, append(repeat(7, opSendA, opToB), repeat(4, opSendB, opToA)...)...)},
		{"first messages reversed", []byte{opSendA, opSendA, opSendA, op(opToB, 2), op(opToB, 1), opToB}},
		{"both send before receiving", repeat(10, opSendA, opToB, opSendB, opSendA, opSendB, opToA, opToB, opToA)},
		{"late message from previous chain", []byte{
			opSendA, opSendA, op(opToB, 1), opSendB, opToA, opSendA, op(opToB, 1), opToB,
		}},
		{"drops", repeat(10, opSendA, opSendA, opDropToB, opToB, opSendB, opSendB, op(opDropToA, 1), opToA)},
		{"duplicates and reloads", repeat(10, opSendA, opToB, op(opDup, 0), op(opReload, 1), opSendB, opToA, op(opDup, 1), op(opReload, 0))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newSim(t, testRand(tt.name))
			m.run(tt.script)
			if m.sent[0] == 0 || len(m.done[1]) == 0 {
				t.Fatal("script delivered nothing")
			}
		})
	}
}

// TestInterleaving sends 1,000 messages each way with random interleaving,
// bounded reordering and drops, and checks every message that was not
// dropped decrypts exactly once.
func TestInterleaving(t *testing.T) {
	const total = 1000
	r := mrand.New(mrand.NewPCG(1, 2))
	m := newSim(t, testRand(t.Name()))
	dropped := [2]int{}
	for m.sent[0] < total || m.sent[1] < total || len(m.queue[0])+len(m.queue[1]) > 0 {
		switch x := r.IntN(100); {
		case x < 20 && m.sent[0] < total:
			m.send(0)
		case x < 40 && m.sent[1] < total:
			m.send(1)
		case x < 42 && len(m.queue[1]) > 0:
			m.drop(1, r.IntN(4))
			dropped[1]++
		case x < 44 && len(m.queue[0]) > 0:
			m.drop(0, r.IntN(4))
			dropped[0]++
		case x < 46:
			m.duplicate(r.IntN(2), r.IntN(1000))
		case x < 47:
			m.reload(r.IntN(2))
		case x < 75:
			m.deliver(1, r.IntN(4)) // one of the 4 oldest in flight
		default:
			m.deliver(0, r.IntN(4))
		}
	}
	m.check()
	for p := range 2 {
		if got, want := len(m.got[p]), m.sent[1-p]-dropped[p]; got != want {
			t.Errorf("party %d decrypted %d messages, want %d (sent %d, dropped %d)", p, got, want, m.sent[1-p], dropped[p])
		}
	}
	if len(m.seen[1]) < 50 {
		t.Errorf("only %d DH ratchet steps at the responder", len(m.seen[1]))
	}
}

// TestReplay replays every delivered ciphertext, before and after
// Marshal/Unmarshal of both parties.
func TestReplay(t *testing.T) {
	m := newSim(t, testRand(t.Name()))
	m.run(repeat(30, opSendA, opSendA, opSendA, op(opToB, 2), opSendB, opSendB, op(opToA, 1), opToB, opToA, opToB))
	for round := range 2 {
		for p := range 2 {
			for i := range m.done[p] {
				m.duplicate(p, i)
			}
		}
		if round == 0 {
			m.reload(0)
			m.reload(1)
		}
	}
	// The sessions still work.
	m.run([]byte{opSendA, opToB, opSendB, opToA})
}

func TestForwardSecrecy(t *testing.T) {
	r := testRand(t.Name())
	alice, bob := newPair(t, r)
	ad := []byte("ad")
	const n = 1000
	const held = 500 // never delivered before the snapshot
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = encrypt(t, alice, fmt.Appendf(nil, "m%d", i), ad)
	}
	for i, m := range msgs {
		if i != held {
			decrypt(t, bob, r, m, ad, fmt.Appendf(nil, "m%d", i))
		}
	}
	snap := roundTrip(t, bob)
	for i, m := range msgs {
		if i == held {
			continue
		}
		decryptFails(t, snap, r, m, ad, ErrDuplicate)
	}
	if len(snap.skipped) != 1 {
		t.Fatalf("%d skipped keys held, want 1", len(snap.skipped))
	}
	// Only the message never received stays decryptable, once.
	decrypt(t, snap, r, msgs[held], ad, []byte("m500"))
	decryptFails(t, snap, r, msgs[held], ad, ErrDuplicate)
	for i := range snap.skipped {
		t.Fatalf("key %d still held", snap.skipped[i].n)
	}
}

// TestPostCompromise: an attacker who copied Alice's state cannot decrypt
// what follows a full DH round trip, even when it decrypts everything it can
// in between.
func TestPostCompromise(t *testing.T) {
	r := testRand(t.Name())
	alice, bob := newPair(t, r)
	ad := []byte("ad")
	decrypt(t, bob, r, encrypt(t, alice, []byte("hi"), ad), ad, []byte("hi"))
	stolen := roundTrip(t, alice)
	attackerRand := testRand("attacker")

	// Bob answers under his new ratchet key: the stolen state can read this
	// (the compromise is not yet healed).
	m1 := encrypt(t, bob, []byte("reply"), ad)
	decrypt(t, stolen.clone(), attackerRand, m1, ad, []byte("reply"))
	decrypt(t, alice, r, m1, ad, []byte("reply"))

	// Alice's fresh ratchet key heals it.
	m2 := encrypt(t, alice, []byte("after"), ad)
	decrypt(t, bob, r, m2, ad, []byte("after"))
	m3 := encrypt(t, bob, []byte("secret"), ad)
	m4 := encrypt(t, bob, []byte("secret 2"), ad)

	for _, s := range []*Session{stolen.clone(), stolen} {
		if s != stolen {
			decrypt(t, s, attackerRand, m1, ad, []byte("reply")) // follow as far as possible
		}
		for _, m := range [][]byte{m3, m4} {
			decryptFails(t, s, attackerRand, m, ad, nil)
		}
	}
	decrypt(t, alice, r, m4, ad, []byte("secret 2"))
	decrypt(t, alice, r, m3, ad, []byte("secret"))
}

// TestTamper flips every bit of messages on each decryption path; each must
// fail without changing the session, and the genuine message must then
// decrypt.
func TestTamper(t *testing.T) {
	ad := []byte("tamper ad")
	setups := []struct {
		name string
		// prepare returns the receiver and a genuine message for it.
		prepare func(t *testing.T) (*Session, []byte, []byte)
	}{
		{"first message", func(t *testing.T) (*Session, []byte, []byte) {
			alice, bob := newPair(t, testRand(t.Name()))
			return bob, encrypt(t, alice, []byte("first"), ad), []byte("first")
		}},
		{"in order", func(t *testing.T) (*Session, []byte, []byte) {
			r := testRand(t.Name())
			alice, bob := newPair(t, r)
			decrypt(t, bob, r, encrypt(t, alice, []byte("a"), ad), ad, []byte("a"))
			return bob, encrypt(t, alice, []byte("b"), ad), []byte("b")
		}},
		{"skipped key", func(t *testing.T) (*Session, []byte, []byte) {
			r := testRand(t.Name())
			alice, bob := newPair(t, r)
			m0 := encrypt(t, alice, []byte("a"), ad)
			decrypt(t, bob, r, encrypt(t, alice, []byte("b"), ad), ad, []byte("b"))
			return bob, m0, []byte("a")
		}},
		{"new chain", func(t *testing.T) (*Session, []byte, []byte) {
			r := testRand(t.Name())
			alice, bob := newPair(t, r)
			decrypt(t, bob, r, encrypt(t, alice, []byte("a"), ad), ad, []byte("a"))
			decrypt(t, alice, r, encrypt(t, bob, []byte("b"), ad), ad, []byte("b"))
			return bob, encrypt(t, alice, []byte("c"), ad), []byte("c")
		}},
	}
	for _, tt := range setups {
		t.Run(tt.name, func(t *testing.T) {
			s, m, want := tt.prepare(t)
			r := testRand("tamper")
			for bit := range len(m) * 8 {
				bad := bytes.Clone(m)
				bad[bit/8] ^= 1 << (bit % 8)
				decryptFails(t, s, r, bad, ad, nil)
			}
			decryptFails(t, s, r, m, []byte("other ad"), ErrAuth)
			decryptFails(t, s, r, m[:len(m)-1], ad, nil)
			decryptFails(t, s, r, append(bytes.Clone(m), 0), ad, ErrAuth)
			decrypt(t, s, r, m, ad, want)
		})
	}
}

func TestSkipBounds(t *testing.T) {
	ad := []byte("ad")
	// send encrypts n messages and returns them.
	send := func(s *Session, n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = encrypt(t, s, fmt.Appendf(nil, "%d", i), ad)
		}
		return out
	}
	t.Run("new chain", func(t *testing.T) {
		r := testRand(t.Name())
		alice, bob := newPair(t, r)
		msgs := send(alice, MaxSkip+2)
		decryptFails(t, bob, r, msgs[MaxSkip+1], ad, ErrTooFarAhead)
		decrypt(t, bob, r, msgs[MaxSkip], ad, fmt.Appendf(nil, "%d", MaxSkip))
		decrypt(t, bob, r, msgs[MaxSkip+1], ad, fmt.Appendf(nil, "%d", MaxSkip+1))
		// Of the MaxSkip skipped keys only the newest MaxSkippedKeys remain.
		if len(bob.skipped) != MaxSkippedKeys {
			t.Fatalf("%d skipped keys, want %d", len(bob.skipped), MaxSkippedKeys)
		}
		first := MaxSkip - MaxSkippedKeys
		decryptFails(t, bob, r, msgs[0], ad, ErrDuplicate)
		decryptFails(t, bob, r, msgs[first-1], ad, ErrDuplicate)
		decrypt(t, bob, r, msgs[first], ad, fmt.Appendf(nil, "%d", first))
		decrypt(t, bob, r, msgs[MaxSkip-1], ad, fmt.Appendf(nil, "%d", MaxSkip-1))
	})
	t.Run("current chain", func(t *testing.T) {
		r := testRand(t.Name())
		alice, bob := newPair(t, r)
		msgs := send(alice, MaxSkip+3)
		decrypt(t, bob, r, msgs[0], ad, []byte("0"))
		decryptFails(t, bob, r, msgs[MaxSkip+2], ad, ErrTooFarAhead)
		decrypt(t, bob, r, msgs[MaxSkip+1], ad, fmt.Appendf(nil, "%d", MaxSkip+1))
	})
	t.Run("previous chain", func(t *testing.T) {
		for _, tc := range []struct {
			pn   int
			fail bool
		}{{MaxSkip + 1, false}, {MaxSkip + 2, true}} {
			r := testRand(fmt.Sprint(t.Name(), tc.pn))
			alice, bob := newPair(t, r)
			msgs := send(alice, tc.pn) // PN of Alice's next chain
			decrypt(t, bob, r, msgs[0], ad, []byte("0"))
			decrypt(t, alice, r, encrypt(t, bob, []byte("r"), ad), ad, []byte("r"))
			next := encrypt(t, alice, []byte("next"), ad)
			if tc.fail {
				decryptFails(t, bob, r, next, ad, ErrTooFarAhead)
				continue
			}
			decrypt(t, bob, r, next, ad, []byte("next"))
			decrypt(t, bob, r, msgs[tc.pn-1], ad, fmt.Appendf(nil, "%d", tc.pn-1))
		}
	})
	t.Run("eviction across chains", func(t *testing.T) {
		r := testRand(t.Name())
		alice, bob := newPair(t, r)
		chain0 := send(alice, 1500)
		decrypt(t, bob, r, chain0[1499], ad, []byte("1499")) // skips 0..1498
		decrypt(t, alice, r, encrypt(t, bob, []byte("r"), ad), ad, []byte("r"))
		chain1 := send(alice, 601)
		decrypt(t, bob, r, chain1[600], ad, []byte("600")) // skips 600 more: 2098 > MaxSkippedKeys
		if len(bob.skipped) != MaxSkippedKeys {
			t.Fatalf("%d skipped keys, want %d", len(bob.skipped), MaxSkippedKeys)
		}
		evicted := 1499 + 600 - MaxSkippedKeys
		decryptFails(t, bob, r, chain0[0], ad, ErrDuplicate)
		decryptFails(t, bob, r, chain0[evicted-1], ad, ErrDuplicate)
		decrypt(t, bob, r, chain0[evicted], ad, fmt.Appendf(nil, "%d", evicted))
		decrypt(t, bob, r, chain1[0], ad, []byte("0"))
	})
}

// TestOldChains checks that skipped keys live exactly as long as their chain
// is among the last MaxOldChains receiving chains.
func TestOldChains(t *testing.T) {
	ad := []byte("ad")
	for k := 1; k <= MaxOldChains; k++ { // new chains after the one with the late message
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			r := testRand(t.Name())
			alice, bob := newPair(t, r)
			late := encrypt(t, alice, []byte("late"), ad)
			decrypt(t, bob, r, encrypt(t, alice, []byte("x"), ad), ad, []byte("x"))
			for range k {
				decrypt(t, alice, r, encrypt(t, bob, []byte("b"), ad), ad, []byte("b"))
				decrypt(t, bob, r, encrypt(t, alice, []byte("a"), ad), ad, []byte("a"))
			}
			if len(bob.old) > MaxOldChains-1 {
				t.Fatalf("%d old chains", len(bob.old))
			}
			if k < MaxOldChains {
				decrypt(t, bob, r, late, ad, []byte("late"))
				return
			}
			decryptFails(t, bob, r, late, ad, ErrAuth)
			if len(bob.skipped) != 0 {
				t.Fatalf("%d skipped keys kept for forgotten chains", len(bob.skipped))
			}
		})
	}
}

func TestResponderSendsAfterReceiving(t *testing.T) {
	r := testRand(t.Name())
	alice, bob := newPair(t, r)
	if _, err := bob.Encrypt(nil, []byte("x"), nil); !errors.Is(err, ErrNoSendingChain) {
		t.Fatalf("responder Encrypt before receiving: %v, want ErrNoSendingChain", err)
	}
	decrypt(t, bob, r, encrypt(t, alice, []byte("a"), nil), nil, []byte("a"))
	decrypt(t, alice, r, encrypt(t, bob, []byte("b"), nil), nil, []byte("b"))
}

func TestConstructorErrors(t *testing.T) {
	r := testRand(t.Name())
	good, err := newKeyPair(r)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var lowOrder [32]byte // the point of order 1... as X25519 u = 0
	sk := make([]byte, 32)
	tests := []struct {
		name string
		fn   func() error
		want error
	}{
		{"initiator short key", func() error { _, err := NewInitiator(r, sk[:31], good.PublicKey()); return err }, ErrInvalidKey},
		{"initiator nil remote", func() error { _, err := NewInitiator(r, sk, nil); return err }, ErrInvalidKey},
		{"initiator P-256 remote", func() error { _, err := NewInitiator(r, sk, p256.PublicKey()); return err }, ErrInvalidKey},
		{"initiator low-order remote", func() error { _, err := NewInitiator(r, sk, mustPub(t, lowOrder[:])); return err }, ErrInvalidKey},
		{"initiator nil rand", func() error { _, err := NewInitiator(nil, sk, good.PublicKey()); return err }, nil},
		{"initiator empty rand", func() error { _, err := NewInitiator(bytes.NewReader(nil), sk, good.PublicKey()); return err }, nil},
		{"responder long key", func() error { _, err := NewResponder(append(sk, 0), good); return err }, ErrInvalidKey},
		{"responder nil key", func() error { _, err := NewResponder(sk, nil); return err }, ErrInvalidKey},
		{"responder P-256 key", func() error { _, err := NewResponder(sk, p256); return err }, ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.fn()
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestDecryptErrors(t *testing.T) {
	r := testRand(t.Name())
	alice, bob := newPair(t, r)
	ad := []byte("ad")
	decrypt(t, bob, r, encrypt(t, alice, []byte("a"), ad), ad, []byte("a"))
	good := encrypt(t, alice, []byte("b"), ad)
	forge := func(h Header, ctLen int) []byte {
		m := make([]byte, 0, HeaderSize+ctLen)
		m = append(m, MessageVersion)
		m = append(m, h.DH[:]...)
		m = append(m, byte(h.PN>>24), byte(h.PN>>16), byte(h.PN>>8), byte(h.PN))
		m = append(m, byte(h.N>>24), byte(h.N>>16), byte(h.N>>8), byte(h.N))
		return append(m, make([]byte, ctLen)...)
	}
	cur, _, err := ParseMessage(good)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		msg  []byte
		rand []byte
		want error
	}{
		{"empty", nil, nil, ErrMalformed},
		{"unknown version", append([]byte{2}, good[1:]...), nil, ErrUnknownVersion},
		{"short", good[:Overhead-1], nil, ErrMalformed},
		{"low-order ratchet key", forge(Header{}, 16), make([]byte, 32), ErrInvalidKey},
		{"new chain too far", forge(Header{DH: [32]byte{9}, N: MaxSkip + 1}, 16), nil, ErrTooFarAhead},
		{"previous chain too far", forge(Header{DH: [32]byte{9}, PN: 1 + MaxSkip + 1}, 16), nil, ErrTooFarAhead},
		{"current chain too far", forge(Header{DH: cur.DH, N: 1 + MaxSkip + 1}, 16), nil, ErrTooFarAhead},
		{"message number overflow", forge(Header{DH: cur.DH, N: math.MaxUint32}, 16), nil, ErrMalformed},
		{"consumed", forge(Header{DH: cur.DH, N: 0}, 16), nil, ErrDuplicate},
		{"forged next", forge(Header{DH: cur.DH, N: 1}, 16), nil, ErrAuth},
		{"forged new chain", forge(Header{DH: [32]byte{9}}, 16), make([]byte, 32), ErrAuth},
		{"rand fails", forge(Header{DH: [32]byte{9}}, 16), nil, nil},
		{"rand nil", forge(Header{DH: [32]byte{9}}, 16), []byte("nil"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rnd io.Reader = bytes.NewReader(tt.rand)
			if string(tt.rand) == "nil" {
				rnd = nil
			}
			decryptFails(t, bob, rnd, tt.msg, ad, tt.want)
		})
	}
	decrypt(t, bob, r, good, ad, []byte("b"))
}

func TestChainExhausted(t *testing.T) {
	alice, _ := newPair(t, testRand(t.Name()))
	alice.ns = math.MaxUint32
	if _, err := alice.Encrypt(nil, nil, nil); !errors.Is(err, ErrChainExhausted) {
		t.Fatalf("Encrypt at the last message number: %v, want ErrChainExhausted", err)
	}
}

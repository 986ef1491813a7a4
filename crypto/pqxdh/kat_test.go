package pqxdh

import (
	"bytes"
	"crypto/mlkem"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/curve25519"
	xhkdf "golang.org/x/crypto/hkdf"
)

// TestKDFKnownAnswer recomputes SK from the raw keys with independent
// implementations (golang.org/x/crypto's curve25519 and hkdf) and the
// formula of PQXDH §2.2 and §3.3:
//
//	SK = HKDF-SHA-256(salt = 0^32, IKM = 0xFF^32 || DH1 || DH2 || DH3 [|| DH4] || SS, info)
//
// so dropping the ML-KEM secret (a silent downgrade to X3DH), the 0xFF
// prefix, a DH output or the info string from the implementation fails it.
// It also shows that SK changes when only SS changes.
func TestKDFKnownAnswer(t *testing.T) {
	for _, oneTime := range []int{1, 0} {
		name := map[int]string{1: "with DH4", 0: "without DH4"}[oneTime]
		t.Run(name, func(t *testing.T) {
			r := seeded(40)
			alice, bob := newParty(t, r), newParty(t, r)
			set, err := GeneratePrekeys(r, bob.dev, oneTime)
			if err != nil {
				t.Fatal(err)
			}
			b := set.Bundle(bob.dev).Take()
			ekSeed := bytes.Repeat([]byte{0x42}, 32)
			var ss []byte
			encap := func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
				k, ct := ek.Encapsulate()
				ss = k
				return k, ct, nil
			}
			res, init, err := Initiate(bytes.NewReader(ekSeed), alice.dev.DH(), b, encap)
			if err != nil {
				t.Fatal(err)
			}
			dh := func(priv, pub []byte) []byte {
				out, err := curve25519.X25519(priv, pub)
				if err != nil {
					t.Fatal(err)
				}
				return out
			}
			ikA, ikB := alice.dev.DH().Bytes(), b.IdentityKey[:]
			spkB := b.SignedPrekey.Pub
			ikm := bytes.Repeat([]byte{0xFF}, 32)
			ikm = append(ikm, dh(ikA, spkB)...)
			ikm = append(ikm, dh(ekSeed, ikB)...)
			ikm = append(ikm, dh(ekSeed, spkB)...)
			if oneTime > 0 {
				ikm = append(ikm, dh(ekSeed, b.OneTime[0].Pub)...)
			}
			expect := func(ikm []byte) []byte {
				out := make([]byte, 32)
				if _, err := io.ReadFull(xhkdf.New(sha256.New, ikm, make([]byte, 32), []byte("Peergram_CURVE25519_SHA-256_ML-KEM-768")), out); err != nil {
					t.Fatal(err)
				}
				return out
			}
			want := expect(append(bytes.Clone(ikm), ss...))
			if !bytes.Equal(res.SharedKey, want) {
				t.Fatalf("initiator SK = %x, independent computation = %x", res.SharedKey, want)
			}
			if !bytes.Equal(res.AD, append(bytes.Clone(ikA[:0:0]), append(alice.dev.DH().PublicKey().Bytes(), ikB...)...)) {
				t.Fatal("AD is not IK_A || IK_B")
			}
			rb, err := Respond(set, bob.dev.DH(), init)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(rb.SharedKey, want) {
				t.Fatalf("responder SK = %x, independent computation = %x", rb.SharedKey, want)
			}
			// SK depends on SS: the same keys with another SS give another
			// SK, in the formula and in the implementation.
			ss2 := bytes.Clone(ss)
			ss2[0] ^= 1
			if bytes.Equal(expect(append(bytes.Clone(ikm), ss2...)), want) {
				t.Fatal("formula does not depend on SS")
			}
			other := func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
				_, ct := ek.Encapsulate()
				return ss2, ct, nil
			}
			res2, _, err := Initiate(bytes.NewReader(ekSeed), alice.dev.DH(), b, other)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(res2.SharedKey, res.SharedKey) {
				t.Fatal("SK does not change with the ML-KEM shared secret")
			}
			if !bytes.Equal(res2.SharedKey, expect(append(bytes.Clone(ikm), ss2...))) {
				t.Fatal("SK with another SS differs from the formula")
			}
		})
	}
}

// TestReplayCacheCannotBeFlushed: before, a ring of 4,096 ephemeral keys
// forgot the oldest once 4,096 more sessions were accepted, and the old
// initial message was accepted again. Now it is refused for as long as
// its signed prekey lives, also across a restart, and refused as unknown
// once that prekey is rotated out.
func TestReplayCacheCannotBeFlushed(t *testing.T) {
	r := seeded(41)
	alice, bob := newParty(t, r), newParty(t, r)
	set, err := GeneratePrekeys(r, bob.dev, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, init, err := Initiate(r, alice.dev.DH(), set.Bundle(bob.dev).Take(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Respond(set, bob.dev.DH(), init); err != nil {
		t.Fatal(err)
	}
	set.Consume(init)
	for i := range 5000 { // a flood of other accepted sessions
		flood := *init
		flood.EphemeralKey = [32]byte{byte(i), byte(i >> 8), 0xEE}
		set.Consume(&flood)
	}
	if _, err := Respond(set, bob.dev.DH(), init); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay after a flood: %v, want ErrReplay", err)
	}
	raw, err := set.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if set, err = UnmarshalPrekeySet(raw); err != nil {
		t.Fatal(err)
	}
	if _, err := Respond(set, bob.dev.DH(), init); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay after a restart: %v, want ErrReplay", err)
	}
	for range maxSigned {
		if err := set.RotateSigned(r, bob.dev); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Respond(set, bob.dev.DH(), init); !errors.Is(err, ErrUnknownPrekey) {
		t.Fatalf("replay after the signed prekey was rotated out: %v, want ErrUnknownPrekey", err)
	}
	if len(set.seen) > maxSigned {
		t.Fatalf("%d seen sets kept for %d signed prekeys", len(set.seen), maxSigned)
	}
}

// TestSignedPrekeyCapacity: a signed prekey asks for rotation at
// RotateAfterSeen sessions and refuses new ones at MaxSeenEphemeral.
func TestSignedPrekeyCapacity(t *testing.T) {
	r := seeded(42)
	alice, bob := newParty(t, r), newParty(t, r)
	set, err := GeneratePrekeys(r, bob.dev, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, init, err := Initiate(r, alice.dev.DH(), set.Bundle(bob.dev).Take(), nil)
	if err != nil {
		t.Fatal(err)
	}
	fake := func(i int) *InitMessage {
		m := *init
		m.EphemeralKey = [32]byte{byte(i), byte(i >> 8), byte(i >> 16), 0xAB}
		return &m
	}
	for i := range RotateAfterSeen - 1 {
		set.Consume(fake(i))
	}
	if set.NeedsRotation() {
		t.Fatal("rotation requested too early")
	}
	set.Consume(fake(RotateAfterSeen))
	if !set.NeedsRotation() {
		t.Fatal("no rotation requested")
	}
	for i := RotateAfterSeen + 1; i <= MaxSeenEphemeral; i++ {
		set.Consume(fake(i))
	}
	if _, err := Respond(set, bob.dev.DH(), init); !errors.Is(err, ErrPrekeyFull) {
		t.Fatalf("full signed prekey: %v, want ErrPrekeyFull", err)
	}
	if err := set.RotateSigned(r, bob.dev); err != nil {
		t.Fatal(err)
	}
	if set.NeedsRotation() {
		t.Fatal("rotation still requested after rotating")
	}
	_, init2, err := Initiate(r, alice.dev.DH(), set.Bundle(bob.dev).Take(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Respond(set, bob.dev.DH(), init2); err != nil {
		t.Fatalf("new signed prekey: %v", err)
	}
}

// TestLegacyPrekeySet: a version 1 encoding (one ring of ephemeral keys)
// still loads, and its remembered keys are refused for every signed
// prekey.
func TestLegacyPrekeySet(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "legacy_prekey_set_v1.hex"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	set, err := UnmarshalPrekeySet(b)
	if err != nil {
		t.Fatal(err)
	}
	m := &InitMessage{SignedPrekey: set.SignedPrekeyID(), EphemeralKey: [32]byte{4, 5, 6}, PQKind: PQLastResort}
	if _, err := Respond(set, nil, m); !errors.Is(err, ErrReplay) {
		t.Fatalf("ephemeral key remembered by a v1 set: %v, want ErrReplay", err)
	}
	again, err := set.MarshalBinary()
	if err != nil || again[0] != prekeySetVersion {
		t.Fatalf("re-marshal: %v, version %d", err, again[0])
	}
}

// TestRetireOneTime: handed-out, unused one-time prekeys below a bound are
// deleted; the others stay usable.
func TestRetireOneTime(t *testing.T) {
	r := seeded(43)
	alice, bob := newParty(t, r), newParty(t, r)
	set, err := GeneratePrekeys(r, bob.dev, 5)
	if err != nil {
		t.Fatal(err)
	}
	b := set.Bundle(bob.dev)
	// IDs alternate between kinds: retire the first two of each.
	x, pq := b.OneTime[2].ID, b.OneTimePQ[2].ID
	if n := set.RetireOneTime(x, pq); n != 4 {
		t.Fatalf("retired %d, want 4", n)
	}
	if lx, lpq := set.OneTimeLeft(); lx != 3 || lpq != 3 {
		t.Fatalf("left %d+%d, want 3+3", lx, lpq)
	}
	old := &Bundle{Device: b.Device, IdentityKey: b.IdentityKey, SignedPrekey: b.SignedPrekey, LastResortPQ: b.LastResortPQ,
		OneTime: b.OneTime[:1], OneTimePQ: b.OneTimePQ[:1]}
	_, init, err := Initiate(r, alice.dev.DH(), old, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Respond(set, bob.dev.DH(), init); !errors.Is(err, ErrUnknownPrekey) {
		t.Fatalf("a retired prekey: %v, want ErrUnknownPrekey", err)
	}
	kept := &Bundle{Device: b.Device, IdentityKey: b.IdentityKey, SignedPrekey: b.SignedPrekey, LastResortPQ: b.LastResortPQ,
		OneTime: b.OneTime[2:3], OneTimePQ: b.OneTimePQ[2:3]}
	_, init, err = Initiate(r, alice.dev.DH(), kept, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Respond(set, bob.dev.DH(), init); err != nil {
		t.Fatalf("a kept prekey: %v", err)
	}
}

// TestParseRefusesNonCanonicalKeys: an initial message whose identity or
// ephemeral key has the bit X25519 ignores set is refused on parsing.
func TestParseRefusesNonCanonicalKeys(t *testing.T) {
	r := seeded(44)
	alice, bob := newParty(t, r), newParty(t, r)
	set, err := GeneratePrekeys(r, bob.dev, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, init, err := Initiate(r, alice.dev.DH(), set.Bundle(bob.dev), nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, flip := range map[string]func(m *InitMessage){
		"identity key":  func(m *InitMessage) { m.IdentityKey[31] |= 0x80 },
		"ephemeral key": func(m *InitMessage) { m.EphemeralKey[31] |= 0x80 },
	} {
		m := *init
		flip(&m)
		raw, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseInitMessage(raw); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s with bit 255 set: %v, want ErrMalformed", name, err)
		}
	}
}

// TestClone: what a clone consumes, retires or rotates leaves the original
// as it was (the node changes prekeys copy-on-write).
func TestClone(t *testing.T) {
	r := seeded(45)
	alice, bob := newParty(t, r), newParty(t, r)
	set, err := GeneratePrekeys(r, bob.dev, 2)
	if err != nil {
		t.Fatal(err)
	}
	_, first, err := Initiate(r, alice.dev.DH(), set.Bundle(bob.dev).Take(), nil)
	if err != nil {
		t.Fatal(err)
	}
	set.Consume(first)
	before, err := set.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	c := set.Clone()
	_, init, err := Initiate(r, alice.dev.DH(), set.Bundle(bob.dev).Take(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Consume(init)
	c.RetireOneTime(1<<31, 1<<31)
	if err := c.RotateSigned(r, bob.dev); err != nil {
		t.Fatal(err)
	}
	after, err := set.MarshalBinary()
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("changing a clone changed the original (%v)", err)
	}
	if _, err := Respond(set, bob.dev.DH(), init); err != nil {
		t.Fatalf("the original lost what the clone consumed: %v", err)
	}
	if _, err := Respond(c, bob.dev.DH(), init); !errors.Is(err, ErrReplay) && !errors.Is(err, ErrUnknownPrekey) {
		t.Fatalf("the clone accepts what it consumed: %v", err)
	}
	if _, err := Respond(c, bob.dev.DH(), first); !errors.Is(err, ErrReplay) {
		t.Fatalf("the clone forgot what the original consumed: %v", err)
	}
}

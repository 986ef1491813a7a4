package pqxdh

import (
	"bytes"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/peergram/peergram/crypto/identity"
)

func seeded(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}

// seededEncap makes ML-KEM encapsulation deterministic for golden tests.
func seededEncap(r io.Reader) Encapsulator {
	return func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
		m := make([]byte, 32)
		if _, err := io.ReadFull(r, m); err != nil {
			return nil, nil, err
		}
		return mlkemtest.Encapsulate768(ek, m)
	}
}

type party struct {
	acct *identity.AccountKey
	dev  *identity.DeviceKey
	cert *identity.DeviceCert
}

func newParty(t testing.TB, r io.Reader) party {
	t.Helper()
	acct, err := identity.NewAccountKey(r)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := identity.NewDeviceKey(r)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := acct.CertifyDevice(dev, "laptop", 1_700_000_000)
	if err != nil {
		t.Fatal(err)
	}
	return party{acct, dev, cert}
}

func TestAgreement(t *testing.T) {
	tests := []struct {
		name     string
		oneTime  int
		wantOPK  bool
		wantKind byte
	}{
		{"with one-time prekeys", 3, true, PQOneTime},
		{"last resort only", 0, false, PQLastResort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := seeded(1)
			alice, bob := newParty(t, r), newParty(t, r)
			set, err := GeneratePrekeys(r, bob.dev, tt.oneTime)
			if err != nil {
				t.Fatal(err)
			}
			full := set.Bundle(bob.dev)
			if err := full.Verify(bob.cert); err != nil {
				t.Fatal(err)
			}
			b := full.Take()
			ra, init, err := Initiate(r, alice.dev.DH(), b, nil)
			if err != nil {
				t.Fatal(err)
			}
			if (init.OneTime != 0) != tt.wantOPK || init.PQKind != tt.wantKind {
				t.Fatalf("init used OPK=%d kind=%d", init.OneTime, init.PQKind)
			}
			raw, _ := init.MarshalBinary()
			if len(raw) != InitSize {
				t.Fatalf("init size %d, want %d", len(raw), InitSize)
			}
			parsed, err := ParseInitMessage(raw)
			if err != nil {
				t.Fatal(err)
			}
			rb, err := Respond(set, bob.dev.DH(), parsed)
			if err != nil {
				t.Fatal(err)
			}
			if !ra.Equal(rb) {
				t.Fatal("shared keys differ")
			}
			set.Consume(parsed)
			_, err = Respond(set, bob.dev.DH(), parsed)
			if !errors.Is(err, ErrReplay) {
				t.Fatalf("second respond: %v, want ErrReplay", err)
			}
			if tt.wantOPK {
				// Even with a fresh ephemeral key (not a byte replay), a
				// consumed one-time prekey is refused.
				_, init2, err := Initiate(r, alice.dev.DH(), b, nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := Respond(set, bob.dev.DH(), init2); !errors.Is(err, ErrUnknownPrekey) {
					t.Fatalf("reuse of one-time prekey: %v, want ErrUnknownPrekey", err)
				}
			}
		})
	}
}

func TestWrongIdentityKeyDisagrees(t *testing.T) {
	r := seeded(2)
	alice, bob, mallory := newParty(t, r), newParty(t, r), newParty(t, r)
	set, _ := GeneratePrekeys(r, bob.dev, 1)
	ra, init, err := Initiate(r, alice.dev.DH(), set.Bundle(bob.dev).Take(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Mallory holds Bob's prekeys but not his identity key.
	rm, err := Respond(set, mallory.dev.DH(), init)
	if err != nil {
		t.Fatal(err)
	}
	if ra.Equal(rm) {
		t.Fatal("agreement without the responder's identity key")
	}
}

func TestBundleVerify(t *testing.T) {
	r := seeded(3)
	bob, eve := newParty(t, r), newParty(t, r)
	set, _ := GeneratePrekeys(r, bob.dev, 2)
	tests := []struct {
		name   string
		mutate func(b *Bundle)
		cert   *identity.DeviceCert
		want   error
	}{
		{"valid", func(*Bundle) {}, bob.cert, nil},
		{"other device's cert", func(*Bundle) {}, eve.cert, ErrDeviceMismatch},
		{"forged signed prekey", func(b *Bundle) { b.SignedPrekey.Pub[0] ^= 1 }, bob.cert, ErrBadSignature},
		{"forged PQ prekey", func(b *Bundle) { b.LastResortPQ.Sig[5] ^= 1 }, bob.cert, ErrBadSignature},
		{"forged one-time", func(b *Bundle) { b.OneTime[1].ID++ }, bob.cert, ErrBadSignature},
		{"forged one-time PQ", func(b *Bundle) { b.OneTimePQ[0].Pub[100] ^= 1 }, bob.cert, ErrBadSignature},
		{"short key", func(b *Bundle) { b.OneTime[0].Pub = b.OneTime[0].Pub[:31] }, bob.cert, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := set.Bundle(bob.dev).MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			b, err := ParseBundle(raw)
			if err != nil {
				t.Fatal(err)
			}
			tt.mutate(b)
			if err := b.Verify(tt.cert); !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestTakeHandsOutEachOnce(t *testing.T) {
	r := seeded(4)
	bob := newParty(t, r)
	set, _ := GeneratePrekeys(r, bob.dev, 5)
	full := set.Bundle(bob.dev)
	seen := map[uint32]bool{}
	for i := range 7 {
		b := full.Take()
		if i >= 5 {
			if len(b.OneTime) != 0 || len(b.OneTimePQ) != 0 {
				t.Fatal("one-time prekeys after exhaustion")
			}
			continue
		}
		if len(b.OneTime) != 1 || len(b.OneTimePQ) != 1 {
			t.Fatalf("take %d: %d/%d one-time keys", i, len(b.OneTime), len(b.OneTimePQ))
		}
		for _, id := range []uint32{b.OneTime[0].ID, b.OneTimePQ[0].ID} {
			if seen[id] {
				t.Fatalf("prekey %d handed out twice", id)
			}
			seen[id] = true
		}
	}
}

func TestPrekeySetMarshal(t *testing.T) {
	r := seeded(5)
	alice, bob := newParty(t, r), newParty(t, r)
	set, _ := GeneratePrekeys(r, bob.dev, 3)
	if err := set.RotateSigned(r, bob.dev); err != nil {
		t.Fatal(err)
	}
	old := set.Bundle(bob.dev)
	old.SignedPrekey = set.signed[0].pub // an initiator still holding the previous SPK
	old.LastResortPQ = set.lastResort[0].pub
	ra, init, err := Initiate(r, alice.dev.DH(), old.Take(), nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := set.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	set2, err := UnmarshalPrekeySet(raw)
	if err != nil {
		t.Fatal(err)
	}
	raw2, _ := set2.MarshalBinary()
	if !bytes.Equal(raw, raw2) {
		t.Fatal("marshal round trip differs")
	}
	rb, err := Respond(set2, bob.dev.DH(), init)
	if err != nil {
		t.Fatal(err)
	}
	if !ra.Equal(rb) {
		t.Fatal("keys differ after round trip with rotated prekey")
	}
	set2.Consume(init)
	raw3, _ := set2.MarshalBinary()
	set3, err := UnmarshalPrekeySet(raw3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Respond(set3, bob.dev.DH(), init); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay after restart: %v", err)
	}
	if x, pq := set3.OneTimeLeft(); x != 2 || pq != 2 {
		t.Fatalf("one-time left %d/%d, want 2/2", x, pq)
	}
	for _, bad := range [][]byte{nil, {9}, raw[:len(raw)-1], append(bytes.Clone(raw), 0)} {
		if _, err := UnmarshalPrekeySet(bad); err == nil {
			t.Fatalf("UnmarshalPrekeySet(%d bytes) succeeded", len(bad))
		}
	}
}

func TestDeterministicWithSeed(t *testing.T) {
	run := func() []byte {
		r := seeded(6)
		alice, bob := newParty(t, r), newParty(t, r)
		set, _ := GeneratePrekeys(r, bob.dev, 1)
		_, init, err := Initiate(r, alice.dev.DH(), set.Bundle(bob.dev).Take(), seededEncap(r))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := init.MarshalBinary()
		return raw
	}
	if !bytes.Equal(run(), run()) {
		t.Fatal("seeded runs differ")
	}
}

func BenchmarkSetup(b *testing.B) {
	r := seeded(7)
	alice, bob := newParty(b, r), newParty(b, r)
	set, _ := GeneratePrekeys(r, bob.dev, 0)
	bundle := set.Bundle(bob.dev)
	b.ReportAllocs()
	for b.Loop() {
		_, init, err := Initiate(r, alice.dev.DH(), bundle, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Respond(set, bob.dev.DH(), init); err != nil {
			b.Fatal(err)
		}
	}
}

package directory

import (
	"crypto/ed25519"
	"math"
	"testing"

	"github.com/peergram/peergram/crypto/pqxdh"
	"github.com/peergram/peergram/storage"
)

// BenchmarkEd25519Verify is the anchor: one raw signature check. Checking
// a Publish costs about (devices+1) + (2×one-time prekeys+2) + 1 of these
// (the list again when the relay already holds one); checking a Fetch
// answer about (devices+1) + 4 per bundle + 1 per record.
func BenchmarkEd25519Verify(b *testing.B) {
	pub, priv, err := ed25519.GenerateKey(rng)
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 200)
	sig := ed25519.Sign(priv, msg)
	b.ReportAllocs()
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("verify failed")
		}
	}
}

// BenchmarkValidatePublish100 checks a Publish of a 2-device list, a
// bundle with 100 one-time prekeys of each kind and a record.
func BenchmarkValidatePublish100(b *testing.B) {
	f := newFixture(b, rng, 2)
	m := &publishMsg{
		List:   mustMarshal(b, f.sign(b)),
		Bundle: mustMarshal(b, genPrekeys(b, rng, f.devs[0], 100).Bundle(f.devs[0])),
		Record: mustMarshal(b, signRecord(b, f.devs[0], 1)),
	}
	b.SetBytes(int64(len(m.List) + len(m.Bundle) + len(m.Record)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := validatePublish(m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFetch4 serves an account of 4 devices, each handing out one
// one-time prekey of each kind per fetch (the store's transaction only;
// no network, in-memory Badger).
func BenchmarkFetch4(b *testing.B) {
	db, err := storage.Open(storage.Options{InMemory: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	st := newStore(db, pqxdh.MaxOneTime, math.MaxInt64)
	f := newFixture(b, rng, 4)
	list := f.sign(b)
	raw := mustMarshal(b, list)
	heads := make([]*pqxdh.Bundle, len(f.devs))
	for i, d := range f.devs {
		heads[i] = genPrekeys(b, rng, d, 0).Bundle(d)
	}
	next := uint32(1)
	refill := func() {
		// Synthetic keys: the store does not verify (validatePublish did).
		for _, h := range heads {
			bd := *h
			for id := next; id < next+pqxdh.MaxOneTime; id++ {
				bd.OneTime = append(bd.OneTime, pqxdh.SignedKey{ID: id, Pub: make([]byte, 32), Sig: make([]byte, 64)})
				bd.OneTimePQ = append(bd.OneTimePQ, pqxdh.SignedKey{ID: id, Pub: make([]byte, oneTimePQSize-68), Sig: make([]byte, 64)})
			}
			if _, err := st.publish(&publishReq{list: list, listRaw: raw, bundle: &bd}); err != nil {
				b.Fatal(err)
			}
		}
		next += pqxdh.MaxOneTime
	}
	refill()
	left := pqxdh.MaxOneTime
	b.ReportAllocs()
	for b.Loop() {
		if left == 0 {
			b.StopTimer()
			refill()
			left = pqxdh.MaxOneTime
			b.StartTimer()
		}
		msg, out, err := st.fetch(list.Account, allowAll)
		if err != nil || len(msg.Entries) != 4 || out.taken != [2]int{4, 4} {
			b.Fatalf("fetch: %v, %d entries, %v taken", err, len(msg.Entries), out.taken)
		}
		left--
	}
}

// BenchmarkVerifyAnswer checks a Fetch answer of a 2-device account on
// the Client side (decode included).
func BenchmarkVerifyAnswer(b *testing.B) {
	g := makeGolden(b)
	frame := appendFrame(nil, g.entries(b))
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		m, _, err := decodeFrame(frame)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := readAnswer(m, g.list.Account, nil); err != nil {
			b.Fatal(err)
		}
	}
}

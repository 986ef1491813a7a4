package directory

import (
	"bytes"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/pqxdh"
)

func TestPublishFetchRoundTrip(t *testing.T) {
	r := newRelay(t)
	owner, other := newClient(t, r), newClient(t, r)
	ctx := testCtx(t)

	f := newFixture(t, rng, 2)
	list := f.sign(t)
	sets := []*pqxdh.PrekeySet{genPrekeys(t, rng, f.devs[0], 3), genPrekeys(t, rng, f.devs[1], 2)}
	recs := []*Record{signRecord(t, f.devs[0], 100), signRecord(t, f.devs[1], 200)}
	for i := range f.devs {
		if err := owner.Publish(ctx, r.h.ID(), list, sets[i].Bundle(f.devs[i]), recs[i]); err != nil {
			t.Fatalf("publish device %d: %v", i, err)
		}
	}

	res, err := other.Fetch(ctx, r.h.ID(), f.acct.ID())
	if err != nil {
		t.Fatal(err)
	}
	if res.List.Hash() != list.Hash() {
		t.Fatalf("fetched list v%d, want v%d", res.List.Version, list.Version)
	}
	if len(res.Devices) != 2 {
		t.Fatalf("%d device entries, want 2", len(res.Devices))
	}
	for i, d := range res.Devices {
		if d.Cert.Device != f.devs[i].ID() {
			t.Fatalf("entry %d is device %s, want %s", i, d.Cert.Device, f.devs[i].ID())
		}
		full := sets[i].Bundle(f.devs[i])
		if d.Bundle == nil {
			t.Fatalf("device %d: no bundle", i)
		}
		if err := d.Bundle.Verify(d.Cert); err != nil {
			t.Fatal(err)
		}
		if d.Bundle.SignedPrekey.ID != full.SignedPrekey.ID || d.Bundle.LastResortPQ.ID != full.LastResortPQ.ID {
			t.Fatalf("device %d: signed prekeys %d/%d, want %d/%d", i,
				d.Bundle.SignedPrekey.ID, d.Bundle.LastResortPQ.ID, full.SignedPrekey.ID, full.LastResortPQ.ID)
		}
		// The lowest ID of each kind comes first.
		if got, want := ids(d.Bundle.OneTime), []uint32{full.OneTime[0].ID}; !slices.Equal(got, want) {
			t.Fatalf("device %d: one-time %v, want %v", i, got, want)
		}
		if got, want := ids(d.Bundle.OneTimePQ), []uint32{full.OneTimePQ[0].ID}; !slices.Equal(got, want) {
			t.Fatalf("device %d: one-time PQ %v, want %v", i, got, want)
		}
		if d.Record == nil || d.Record.Issued != recs[i].Issued || d.Record.PeerID != recs[i].PeerID ||
			!slices.Equal(d.Record.Relays, recs[i].Relays) {
			t.Fatalf("device %d: record %+v, want %+v", i, d.Record, recs[i])
		}
	}
	// The fetched bundle works: a session can start from it.
	if _, _, err := pqxdh.Initiate(rng, f.devs[1].DH(), res.Devices[0].Bundle, nil); err != nil {
		t.Fatalf("initiate from fetched bundle: %v", err)
	}

	if got := counterValue(t, r.srv.met.requests.WithLabelValues("publish", "ok")); got != 2 {
		t.Errorf("publish ok counter = %v, want 2", got)
	}
	if got := counterValue(t, r.srv.met.served.WithLabelValues("mlkem768")); got != 2 {
		t.Errorf("served mlkem768 counter = %v, want 2", got)
	}
}

// A list with no bundle or record publishes alone, and devices without
// anything stored still appear in the Result.
func TestPublishListOnly(t *testing.T) {
	r := newRelay(t)
	c := newClient(t, r)
	ctx := testCtx(t)
	f := newFixture(t, rng, 2)
	if err := c.Publish(ctx, r.h.ID(), f.sign(t), nil, nil); err != nil {
		t.Fatal(err)
	}
	res, err := c.Fetch(ctx, r.h.ID(), f.acct.ID())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Devices) != 2 || res.Devices[0].Bundle != nil || res.Devices[1].Record != nil {
		t.Fatalf("unexpected result %+v", res.Devices)
	}
}

func TestOneTimePrekeysHandedOutOnce(t *testing.T) {
	r := newRelay(t)
	ctx := testCtx(t)
	owner := newClient(t, r)
	f := newFixture(t, rng, 1)
	list := f.sign(t)
	const n = 12
	set := genPrekeys(t, rng, f.devs[0], n)
	full := set.Bundle(f.devs[0])
	if err := owner.Publish(ctx, r.h.ID(), list, full, nil); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var got, gotPQ []uint32
	fetchN := func(k int) {
		clients := []*Client{newClient(t, r), newClient(t, r), newClient(t, r)}
		var wg sync.WaitGroup
		for i := range k {
			wg.Go(func() {
				res, err := clients[i%len(clients)].Fetch(ctx, r.h.ID(), f.acct.ID())
				if err != nil {
					t.Error(err)
					return
				}
				b := res.Devices[0].Bundle
				mu.Lock()
				defer mu.Unlock()
				got = append(got, ids(b.OneTime)...)
				gotPQ = append(gotPQ, ids(b.OneTimePQ)...)
			})
		}
		wg.Wait()
	}

	fetchN(n / 2) // concurrently
	r.restart(t)
	fetchN(n / 2)
	if t.Failed() {
		t.FailNow()
	}
	slices.Sort(got)
	slices.Sort(gotPQ)
	if want := sortedIDs(full.OneTime); !slices.Equal(got, want) {
		t.Fatalf("handed out X25519 prekeys %v, want each of %v once", got, want)
	}
	if want := sortedIDs(full.OneTimePQ); !slices.Equal(gotPQ, want) {
		t.Fatalf("handed out ML-KEM prekeys %v, want each of %v once", gotPQ, want)
	}

	// Exhausted: the signed and last-resort prekeys still come.
	res, err := owner.Fetch(ctx, r.h.ID(), f.acct.ID())
	if err != nil {
		t.Fatal(err)
	}
	b := res.Devices[0].Bundle
	if len(b.OneTime) != 0 || len(b.OneTimePQ) != 0 {
		t.Fatalf("exhausted pool still hands out %v / %v", ids(b.OneTime), ids(b.OneTimePQ))
	}
	if b.LastResortPQ.ID != full.LastResortPQ.ID || b.SignedPrekey.ID != full.SignedPrekey.ID {
		t.Fatal("exhausted bundle lacks the signed or last-resort prekey")
	}
	if _, _, err := pqxdh.Initiate(rng, f.devs[0].DH(), b, nil); err != nil {
		t.Fatalf("initiate with last resort only: %v", err)
	}
	if got := counterValue(t, r.srv.met.exhausted.WithLabelValues("mlkem768")); got != 1 {
		t.Errorf("exhausted counter = %v, want 1", got)
	}

	// Publishing the same full bundle again (the device has not consumed
	// them yet, or someone replays it) restores none of them.
	if err := owner.Publish(ctx, r.h.ID(), list, full, nil); err != nil {
		t.Fatal(err)
	}
	if c := r.countPrekeys(t, f.acct.ID(), f.devs[0].ID()); c != [2]int{} {
		t.Fatalf("republished bundle restored %v handed-out prekeys", c)
	}

	// A refill adds only the new ones.
	fresh, err := set.Refill(rng, f.devs[0], 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := owner.Publish(ctx, r.h.ID(), list, set.Bundle(f.devs[0]), nil); err != nil {
		t.Fatal(err)
	}
	if c := r.countPrekeys(t, f.acct.ID(), f.devs[0].ID()); c != [2]int{2, 2} {
		t.Fatalf("after refill the relay stores %v one-time prekeys, want 2+2", c)
	}
	res, err = owner.Fetch(ctx, r.h.ID(), f.acct.ID())
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(res.Devices[0].Bundle.OneTime); !slices.Equal(got, []uint32{fresh.OneTime[0].ID}) {
		t.Fatalf("after refill got %v, want %d", got, fresh.OneTime[0].ID)
	}
}

func TestRefusals(t *testing.T) {
	ctx := testCtx(t)
	// Every case starts from: list v2 with devices 0 and 1, bundle and
	// record of device 0 published. Device 2 is certified but unlisted.
	type setup struct {
		f      *fixture
		v1, v2 *identity.DeviceList
		set    *pqxdh.PrekeySet
		rec    *Record
		old    *pqxdh.Bundle // device 0's bundle before a rotation that was published
	}
	type publish struct {
		list   *identity.DeviceList
		bundle *pqxdh.Bundle
		rec    *Record
	}
	tests := []struct {
		name string
		req  func(t *testing.T, s *setup) publish
		want error
	}{
		{"rollback", func(t *testing.T, s *setup) publish {
			return publish{list: s.v1}
		}, ErrRollback},
		{"fork", func(t *testing.T, s *setup) publish {
			other, err := s.f.acct.SignDeviceList(s.v1, s.f.certs[:1], s.f.now+999)
			if err != nil {
				t.Fatal(err)
			}
			return publish{list: other}
		}, ErrFork},
		{"gap", func(t *testing.T, s *setup) publish {
			s.f.sign(t, 0, 1)
			return publish{list: s.f.sign(t, 0, 1)}
		}, ErrGap},
		{"forged list signature", func(t *testing.T, s *setup) publish {
			l := s.f.sign(t, 0)
			l.Sig[5] ^= 1
			return publish{list: l}
		}, ErrBadSignature},
		{"list signed by another account", func(t *testing.T, s *setup) publish {
			l := s.f.sign(t, 0)
			mallory, err := identity.NewAccountKey(rng)
			if err != nil {
				t.Fatal(err)
			}
			l.Sig = mallory.Sign("peergram/device-list/v1", []byte("anything"))
			return publish{list: l}
		}, ErrBadSignature},
		{"bundle of an unlisted device", func(t *testing.T, s *setup) publish {
			return publish{list: s.v2, bundle: genPrekeys(t, rng, s.f.devs[2], 1).Bundle(s.f.devs[2])}
		}, ErrUnlisted},
		{"bundle with a bad prekey signature", func(t *testing.T, s *setup) publish {
			b := genPrekeys(t, rng, s.f.devs[1], 2).Bundle(s.f.devs[1])
			b.OneTimePQ[1].Sig = bytes.Clone(b.OneTimePQ[1].Sig)
			b.OneTimePQ[1].Sig[0] ^= 1
			return publish{list: s.v2, bundle: b}
		}, ErrBadSignature},
		{"bundle signed by another listed device", func(t *testing.T, s *setup) publish {
			b := genPrekeys(t, rng, s.f.devs[0], 1).Bundle(s.f.devs[0])
			b.Device = s.f.devs[1].ID()
			return publish{list: s.v2, bundle: b}
		}, ErrBadSignature},
		{"forged record", func(t *testing.T, s *setup) publish {
			rec := signRecord(t, s.f.devs[1], 500)
			rec.Issued++
			return publish{list: s.v2, rec: rec}
		}, ErrBadSignature},
		{"record of an unlisted device", func(t *testing.T, s *setup) publish {
			return publish{list: s.v2, rec: signRecord(t, s.f.devs[2], 500)}
		}, ErrUnlisted},
		{"older record", func(t *testing.T, s *setup) publish {
			return publish{list: s.v2, rec: signRecord(t, s.f.devs[0], s.rec.Issued-1)}
		}, ErrRollback},
		{"other record at the same time", func(t *testing.T, s *setup) publish {
			id := testPeerID(t)
			rec, err := SignRecord(s.f.devs[0], Record{PeerID: id, Issued: s.rec.Issued})
			if err != nil {
				t.Fatal(err)
			}
			return publish{list: s.v2, rec: rec}
		}, ErrRollback},
		{"older signed prekey", func(t *testing.T, s *setup) publish {
			return publish{list: s.v2, bundle: s.old}
		}, ErrRollback},
		{"good bundle with a bad record", func(t *testing.T, s *setup) publish {
			rec := signRecord(t, s.f.devs[0], 900)
			rec.Sig = bytes.Clone(rec.Sig)
			rec.Sig[63] ^= 0x10
			b := genPrekeys(t, rng, s.f.devs[1], 2).Bundle(s.f.devs[1])
			return publish{list: s.v2, bundle: b, rec: rec}
		}, ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRelay(t)
			c := newClient(t, r)
			f := newFixture(t, rng, 3)
			s := &setup{f: f, v1: f.sign(t, 0), v2: f.sign(t, 0, 1)}
			s.set = genPrekeys(t, rng, f.devs[0], 2)
			s.old = s.set.Bundle(f.devs[0])
			if err := s.set.RotateSigned(rng, f.devs[0]); err != nil {
				t.Fatal(err)
			}
			s.rec = signRecord(t, f.devs[0], 300)
			if err := c.Publish(ctx, r.h.ID(), s.v1, nil, nil); err != nil {
				t.Fatal(err)
			}
			if err := c.Publish(ctx, r.h.ID(), s.v2, s.old, nil); err != nil {
				t.Fatal(err)
			}
			if err := c.Publish(ctx, r.h.ID(), s.v2, s.set.Bundle(f.devs[0]), s.rec); err != nil {
				t.Fatal(err)
			}
			before := r.dump(t)
			p := tt.req(t, s)
			err := c.Publish(ctx, r.h.ID(), p.list, p.bundle, p.rec)
			if !errors.Is(err, tt.want) {
				t.Fatalf("publish: got %v, want %v", err, tt.want)
			}
			var ref *RefusalError
			if !errors.As(err, &ref) || ref.Message == "" {
				t.Fatalf("refusal %v carries no relay message", err)
			}
			if after := r.dump(t); !maps.Equal(before, after) {
				t.Fatalf("refused publish changed the store: %d entries before, %d after", len(before), len(after))
			}
		})
	}
}

package directory

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/pqxdh"
)

// Attacks on the directory by anyone: storage filled by one account,
// one-time prekeys drained by fetching, requests flooded. Each test is
// the attack; it failed against the directory before the rule it checks.

// defaultRates puts back the rate limits newRelay turns off.
func defaultRates(c *Config) {
	c.PublishRate, c.FetchRate, c.OneTimePerPeer, c.OneTimePerDevice = Rate{}, Rate{}, Rate{}, Rate{}
}

// storedBytes returns what an account's one-time prekeys take, at their
// encoded sizes.
func (r *relay) storedBytes(t *testing.T, f *fixture) int64 {
	t.Helper()
	var n int64
	for _, d := range f.devs {
		c := r.countPrekeys(t, f.acct.ID(), d.ID())
		n += int64(c[0])*oneTimeSize + int64(c[1])*oneTimePQSize
	}
	return n
}

// One account publishing its largest bundles for many devices used to
// store everything: about 1.35 MB per device, 86 MB for 64 devices.
func TestAccountQuota(t *testing.T) {
	r := newRelay(t)
	c := newClient(t, r)
	ctx := testCtx(t)
	const devices = 10 // 7 fill the quota at DefaultMaxOneTime of each kind
	f := newFixture(t, rng, devices)
	list := f.sign(t)
	sets := make([]*pqxdh.PrekeySet, devices)
	for i := range f.devs {
		// Over the per-device maximum, so the cap is met too (the
		// relay before the quota stored all of a bundle's 1,000).
		sets[i] = genPrekeys(t, rng, f.devs[i], DefaultMaxOneTime+10)
		if err := c.Publish(ctx, r.h.ID(), list, sets[i].Bundle(f.devs[i]), signRecord(t, f.devs[i], 1)); err != nil {
			t.Fatal(err)
		}
	}
	stored := r.storedBytes(t, f)
	t.Logf("one account of %d devices stores %d bytes of one-time prekeys", devices, stored)
	if stored > DefaultAccountQuota {
		t.Fatalf("one account stores %d bytes of prekeys, over the quota of %d", stored, DefaultAccountQuota)
	}
	for i, d := range f.devs {
		if n := r.countPrekeys(t, f.acct.ID(), d.ID()); n[0] > DefaultMaxOneTime || n[1] > DefaultMaxOneTime {
			t.Fatalf("device %d stores %v one-time prekeys, over %d", i, n, DefaultMaxOneTime)
		}
	}
	// The first devices got their maximum; the quota stopped the later
	// ones, whose lists, bundles and records are stored all the same.
	if n := r.countPrekeys(t, f.acct.ID(), f.devs[0].ID()); n != [2]int{DefaultMaxOneTime, DefaultMaxOneTime} {
		t.Errorf("first device stores %v, want %d of each", n, DefaultMaxOneTime)
	}
	last := f.devs[devices-1].ID()
	if n := r.countPrekeys(t, f.acct.ID(), last); n != [2]int{} {
		t.Errorf("last device stores %v, want none (quota full)", n)
	}
	res, err := c.Fetch(ctx, r.h.ID(), f.acct.ID())
	if err != nil {
		t.Fatal(err)
	}
	if e := res.Devices[devices-1]; e.Bundle == nil || len(e.Bundle.OneTime) != 0 || e.Record == nil {
		t.Fatalf("over-quota device: bundle %v, record %v; want its bundle (no one-time prekey) and record", e.Bundle != nil, e.Record != nil)
	}
	if got := counterValue(t, r.srv.met.notStored.WithLabelValues("mlkem768", "account_quota")); got == 0 {
		t.Error("no prekeys counted as refused for the quota")
	}
	// Fetching makes room: the next publish of a device adds prekeys again.
	for range 3 {
		if _, err := c.Fetch(ctx, r.h.ID(), f.acct.ID()); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Publish(ctx, r.h.ID(), list, sets[devices-1].Bundle(f.devs[devices-1]), nil); err != nil {
		t.Fatal(err)
	}
	if n := r.countPrekeys(t, f.acct.ID(), last); n == [2]int{} {
		t.Error("room made by fetches was not used by the next publish")
	}
	if stored := r.storedBytes(t, f); stored > DefaultAccountQuota {
		t.Fatalf("after refills the account stores %d bytes, over the quota", stored)
	}
}

// fetchers returns n Clients, each on its own host (its own peer ID).
func fetchers(t *testing.T, r *relay, n int) []*Client {
	t.Helper()
	cs := make([]*Client, n)
	for i := range cs {
		cs[i] = newClient(t, r)
	}
	return cs
}

// Anyone fetching a bundle over and over used to drain a device's
// one-time prekeys at network speed: 50 fetches emptied a new device.
// Now one peer gets OneTimePerPeer, and all peers together get
// OneTimePerDevice; past those, bundles come with the signed and
// last-resort prekeys only, and sessions still start from them.
func TestDrainOneTimePrekeys(t *testing.T) {
	ctx := testCtx(t)
	setup := func(t *testing.T, opts ...func(*Config)) (*relay, *fixture) {
		r := newRelay(t, opts...)
		f := newFixture(t, rng, 1)
		set := genPrekeys(t, rng, f.devs[0], 50)
		if err := newClient(t, r).Publish(ctx, r.h.ID(), f.sign(t), set.Bundle(f.devs[0]), nil); err != nil {
			t.Fatal(err)
		}
		return r, f
	}
	// drain fetches rounds times with each client and returns how many
	// one-time prekeys of each kind they got.
	drain := func(t *testing.T, r *relay, f *fixture, cs []*Client, rounds int) [2]int {
		var mu sync.Mutex
		var got [2]int
		var wg sync.WaitGroup
		for _, c := range cs {
			wg.Go(func() {
				for range rounds {
					res, err := c.Fetch(ctx, r.h.ID(), f.acct.ID())
					if err != nil {
						t.Error(err)
						return
					}
					b := res.Devices[0].Bundle
					if _, _, err := pqxdh.Initiate(rng, f.devs[0].DH(), b, nil); err != nil {
						t.Errorf("initiate from a bundle handed out during the drain: %v", err)
					}
					mu.Lock()
					got[0] += len(b.OneTime)
					got[1] += len(b.OneTimePQ)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return got
	}

	t.Run("one peer", func(t *testing.T) {
		r, f := setup(t, func(c *Config) {
			c.OneTimePerPeer = Rate{Burst: 5, Every: time.Hour}
			c.OneTimePerDevice = Unlimited
		})
		got := drain(t, r, f, fetchers(t, r, 1), 20)
		if got != [2]int{5, 5} {
			t.Fatalf("one peer took %v one-time prekeys in 20 fetches, want 5 of each (its rate)", got)
		}
		if c := r.countPrekeys(t, f.acct.ID(), f.devs[0].ID()); c != [2]int{45, 45} {
			t.Fatalf("%v left, want 45 of each", c)
		}
		if n := counterValue(t, r.srv.met.withheld.WithLabelValues("peer_rate")); n != 15 {
			t.Errorf("withheld for the peer's rate: %v, want 15", n)
		}
		// Another peer still gets one.
		if got := drain(t, r, f, fetchers(t, r, 1), 1); got != [2]int{1, 1} {
			t.Fatalf("another peer got %v", got)
		}
		// An hour later the first peer's bucket has one more.
		r.clock.add(time.Hour)
		if got := drain(t, r, f, fetchers(t, r, 1), 1); got != [2]int{1, 1} {
			t.Fatalf("after an hour: %v", got)
		}
	})

	t.Run("many peers", func(t *testing.T) {
		r, f := setup(t, defaultRates)
		got := drain(t, r, f, fetchers(t, r, 20), 5) // 100 fetches by 20 peer IDs
		burst := DefaultOneTimePerDevice.Burst
		if got != [2]int{burst, burst} {
			t.Fatalf("20 peers took %v one-time prekeys in 100 fetches, want %d of each (the device's rate)", got, burst)
		}
		if c := r.countPrekeys(t, f.acct.ID(), f.devs[0].ID()); c != [2]int{50 - burst, 50 - burst} {
			t.Fatalf("%v left", c)
		}
		r.clock.add(DefaultOneTimePerDevice.Every)
		if got := drain(t, r, f, fetchers(t, r, 1), 2); got != [2]int{1, 1} {
			t.Fatalf("after one interval: %v, want one of each", got)
		}
	})
}

// One peer sending requests as fast as it can used to be served without
// end; now it gets its burst, then RateLimited with the time to wait, and
// other peers are served.
func TestRequestRateLimits(t *testing.T) {
	r := newRelay(t, func(c *Config) {
		c.PublishRate = Rate{Burst: 3, Every: time.Minute}
		c.FetchRate = Rate{Burst: 5, Every: time.Second}
	})
	ctx := testCtx(t)
	f := newFixture(t, rng, 1)
	list := f.sign(t)
	c := newClient(t, r)
	for i := range 3 {
		if err := c.Publish(ctx, r.h.ID(), list, nil, nil); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	err := c.Publish(ctx, r.h.ID(), list, nil, nil)
	var ref *RefusalError
	if !errors.Is(err, ErrRateLimited) || !errors.As(err, &ref) || ref.Code != CodeRateLimited {
		t.Fatalf("fourth publish at once: %v, want ErrRateLimited", err)
	}
	for i := range 5 {
		if _, err := c.Fetch(ctx, r.h.ID(), f.acct.ID()); err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
	}
	if _, err := c.Fetch(ctx, r.h.ID(), f.acct.ID()); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("sixth fetch at once: %v, want ErrRateLimited", err)
	}
	if _, _, err := c.Stock(ctx, r.h.ID(), f.devs[0].ID()); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("stock after the fetches: %v, want ErrRateLimited (it shares the fetch rate)", err)
	}
	// Another peer is served.
	if _, err := newClient(t, r).Fetch(ctx, r.h.ID(), f.acct.ID()); err != nil {
		t.Fatalf("another peer: %v", err)
	}
	r.clock.add(time.Second)
	if _, err := c.Fetch(ctx, r.h.ID(), f.acct.ID()); err != nil {
		t.Fatalf("a second later: %v", err)
	}
	if got := counterValue(t, r.srv.met.requests.WithLabelValues("fetch", "rate_limited")); got != 1 {
		t.Errorf("rate_limited fetches counted %v, want 1", got)
	}
}

// signRecordFor signs a record of dev naming the peer id.
func signRecordFor(t *testing.T, dev *identity.DeviceKey, id peer.ID, issued int64) *Record {
	t.Helper()
	r, err := SignRecord(dev, Record{PeerID: id, Issued: issued})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Stock tells a device how many of its one-time prekeys the relay holds,
// and tells nobody else (the count says how many sessions others start
// with it).
func TestStock(t *testing.T) {
	r := newRelay(t)
	ctx := testCtx(t)
	f := newFixture(t, rng, 1)
	list := f.sign(t)
	owner, stranger := newClient(t, r), newClient(t, r)
	dev := f.devs[0].ID()

	if _, _, err := owner.Stock(ctx, r.h.ID(), dev); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stock of an unknown device: %v, want ErrNotFound", err)
	}
	set := genPrekeys(t, rng, f.devs[0], 7)
	rec := signRecordFor(t, f.devs[0], owner.h.ID(), 1)
	x, pq, err := owner.PublishStock(ctx, r.h.ID(), list, set.Bundle(f.devs[0]), rec)
	if err != nil || x != 7 || pq != 7 {
		t.Fatalf("PublishStock = %d, %d, %v; want 7, 7", x, pq, err)
	}
	if _, err := stranger.Fetch(ctx, r.h.ID(), f.acct.ID()); err != nil {
		t.Fatal(err)
	}
	if x, pq, err := owner.Stock(ctx, r.h.ID(), dev); err != nil || x != 6 || pq != 6 {
		t.Fatalf("Stock = %d, %d, %v; want 6, 6", x, pq, err)
	}
	// The cursor: the lowest one-time prekey of each kind was handed out.
	b := set.Bundle(f.devs[0])
	info, err := owner.StockInfo(ctx, r.h.ID(), dev)
	if err != nil || info.NextX25519 != b.OneTime[0].ID+1 || info.NextMLKEM != b.OneTimePQ[0].ID+1 {
		t.Fatalf("StockInfo = %+v, %v; want next %d, %d", info, err, b.OneTime[0].ID+1, b.OneTimePQ[0].ID+1)
	}
	if _, _, err := stranger.Stock(ctx, r.h.ID(), dev); !errors.Is(err, ErrForbidden) {
		t.Fatalf("stranger's Stock: %v, want ErrForbidden", err)
	}
	// A stranger replaying the public bundle learns nothing either.
	x, pq, err = stranger.PublishStock(ctx, r.h.ID(), list, set.Bundle(f.devs[0]), nil)
	if err != nil || x != -1 || pq != -1 {
		t.Fatalf("stranger's PublishStock = %d, %d, %v; want -1, -1 (not told)", x, pq, err)
	}
}

// The refill a drained device publishes is stored and handed out. (The
// relay never took back prekeys it had handed out, which a republished
// whole bundle carries again; the node learns of a drained pool from
// Stock and refills with new IDs.)
func TestRefillAfterDrain(t *testing.T) {
	r := newRelay(t)
	ctx := testCtx(t)
	f := newFixture(t, rng, 1)
	list := f.sign(t)
	owner := newClient(t, r)
	dev := f.devs[0]
	set := genPrekeys(t, rng, dev, 5)
	rec := signRecordFor(t, dev, owner.h.ID(), 1)
	if err := owner.Publish(ctx, r.h.ID(), list, set.Bundle(dev), rec); err != nil {
		t.Fatal(err)
	}
	var handedOut []uint32
	for _, c := range fetchers(t, r, 6) {
		res, err := c.Fetch(ctx, r.h.ID(), f.acct.ID())
		if err != nil {
			t.Fatal(err)
		}
		handedOut = append(handedOut, ids(res.Devices[0].Bundle.OneTime)...)
	}
	if x, pq, err := owner.Stock(ctx, r.h.ID(), dev.ID()); err != nil || x != 0 || pq != 0 {
		t.Fatalf("after the drain Stock = %d, %d, %v; want 0, 0", x, pq, err)
	}
	// The node republishes its whole set (it still holds every private
	// key: nobody used them): nothing comes back.
	if x, _, err := owner.PublishStock(ctx, r.h.ID(), list, set.Bundle(dev), rec); err != nil || x != 0 {
		t.Fatalf("republished whole bundle: stock %d, %v; want 0", x, err)
	}
	fresh, err := set.Refill(rng, dev, 4)
	if err != nil {
		t.Fatal(err)
	}
	if x, pq, err := owner.PublishStock(ctx, r.h.ID(), list, set.Bundle(dev), rec); err != nil || x != 4 || pq != 4 {
		t.Fatalf("after the refill PublishStock = %d, %d, %v; want 4, 4", x, pq, err)
	}
	res, err := newClient(t, r).Fetch(ctx, r.h.ID(), f.acct.ID())
	if err != nil {
		t.Fatal(err)
	}
	got := ids(res.Devices[0].Bundle.OneTime)
	if want := []uint32{fresh.OneTime[0].ID}; !slices.Equal(got, want) || slices.Contains(handedOut, got[0]) {
		t.Fatalf("after the refill a fetch got %v, want the fresh %v (handed out before: %v)", got, want, handedOut)
	}
}

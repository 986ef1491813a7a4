package directory

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/pqxdh"
	"github.com/peergram/peergram/storage"
)

// Accounts and devices not published for Expiry are deleted: a device's
// bundle, record and prekeys when it alone stopped publishing, the whole
// account when nobody publishes to it any more.
func TestExpiry(t *testing.T) {
	r := newRelay(t)
	ctx := testCtx(t)
	c := newClient(t, r)
	f := newFixture(t, rng, 2)
	list := f.sign(t)
	var sets [2]*pqxdh.PrekeySet
	for i := range 2 {
		set := genPrekeys(t, rng, f.devs[i], 3)
		sets[i] = set
		if err := c.Publish(ctx, r.h.ID(), list, set.Bundle(f.devs[i]), signRecordFor(t, f.devs[i], c.h.ID(), 1)); err != nil {
			t.Fatal(err)
		}
	}
	expire := func(want Expired) {
		t.Helper()
		got, err := r.srv.Expire()
		if err != nil || got != want {
			t.Fatalf("Expire = %+v, %v; want %+v", got, err, want)
		}
	}
	expire(Expired{})

	// Device 0 publishes again 20 days later; device 1 does not.
	r.clock.add(20 * 24 * time.Hour)
	if err := c.Publish(ctx, r.h.ID(), list, nil, signRecordFor(t, f.devs[0], c.h.ID(), 2)); err != nil {
		t.Fatal(err)
	}
	r.clock.add(10*24*time.Hour + time.Second) // device 1: 30 days and a second
	expire(Expired{Devices: 1})
	expire(Expired{})
	res, err := c.Fetch(ctx, r.h.ID(), f.acct.ID())
	if err != nil {
		t.Fatal(err)
	}
	if res.Devices[1].Bundle != nil || res.Devices[1].Record != nil || res.Devices[0].Bundle == nil {
		t.Fatal("device 1 kept its bundle or record, or device 0 lost its own")
	}
	if n := r.countPrekeys(t, f.acct.ID(), f.devs[1].ID()); n != [2]int{} {
		t.Fatalf("expired device keeps %v one-time prekeys", n)
	}
	if _, _, err := c.Stock(ctx, r.h.ID(), f.devs[1].ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stock of the expired device: %v, want ErrNotFound", err)
	}

	// Nobody publishes for 30 days: the account goes, all of it.
	r.clock.add(30*24*time.Hour + time.Second)
	expire(Expired{Accounts: 1})
	if _, err := c.Fetch(ctx, r.h.ID(), f.acct.ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("fetch of the expired account: %v, want ErrNotFound", err)
	}
	if d := r.dump(t); len(d) != 0 {
		t.Fatalf("%d entries left of the expired account: %v", len(d), d)
	}
	if got := counterValue(t, r.srv.met.expired.WithLabelValues("account")); got != 1 {
		t.Errorf("expired accounts counted %v", got)
	}

	// Someone replays the account's old list and bundle: the list is
	// public, so it is stored again, but the handed-out-once rule holds:
	// the relay remembers the prekey IDs of the device it deleted.
	if err := c.Publish(ctx, r.h.ID(), list, sets[0].Bundle(f.devs[0]), nil); err != nil {
		t.Fatal(err)
	}
	if n := r.countPrekeys(t, f.acct.ID(), f.devs[0].ID()); n != [2]int{2, 2} {
		t.Fatalf("replayed bundle: %v one-time prekeys stored, want the 2+2 never handed out", n)
	}
}

// The expiry loop runs at Start and then every ExpiryInterval.
func TestExpiryLoop(t *testing.T) {
	r := newRelay(t)
	ctx := testCtx(t)
	f := newFixture(t, rng, 1)
	if err := newClient(t, r).Publish(ctx, r.h.ID(), f.sign(t), nil, nil); err != nil {
		t.Fatal(err)
	}
	r.clock.add(DefaultExpiry + time.Second)
	r.restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := r.db.View(func(tx *storage.Txn) error {
			a := f.acct.ID()
			_, err := tx.Get(r.srv.st.lists, a[:])
			return err
		})
		if errors.Is(err, storage.ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("account not expired by the loop: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A store written before publish times and the owner index existed gets
// both at Start: Stock works, and its accounts expire Expiry after the
// upgrade, not at once.
func TestMigrateOldStore(t *testing.T) {
	r := newRelay(t)
	ctx := testCtx(t)
	c := newClient(t, r)
	f := newFixture(t, rng, 1)
	set := genPrekeys(t, rng, f.devs[0], 2)
	if err := c.Publish(ctx, r.h.ID(), f.sign(t), set.Bundle(f.devs[0]), signRecordFor(t, f.devs[0], c.h.ID(), 1)); err != nil {
		t.Fatal(err)
	}
	// Make it an old store: no schema, no publish times, no owner index.
	err := r.db.Update(func(tx *storage.Txn) error {
		for _, ks := range []storage.Keyspace{r.srv.st.touched, r.srv.st.owners, r.srv.st.meta} {
			var keys [][]byte
			if err := tx.Iterate(ks, nil, func(k, _ []byte) error { keys = append(keys, bytes.Clone(k)); return nil }); err != nil {
				return err
			}
			for _, k := range keys {
				if err := tx.Delete(ks, k); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r.clock.add(365 * 24 * time.Hour) // the store is old; the upgrade is now
	r.restart(t)
	if x, pq, err := c.Stock(ctx, r.h.ID(), f.devs[0].ID()); err != nil || x != 2 || pq != 2 {
		t.Fatalf("Stock after the upgrade = %d, %d, %v; want 2, 2", x, pq, err)
	}
	if e, err := r.srv.Expire(); err != nil || e != (Expired{}) {
		t.Fatalf("Expire right after the upgrade = %+v, %v; want nothing", e, err)
	}
	r.clock.add(DefaultExpiry + time.Second)
	if e, err := r.srv.Expire(); err != nil || e.Accounts != 1 {
		t.Fatalf("Expire an expiry after the upgrade = %+v, %v; want the account", e, err)
	}
}

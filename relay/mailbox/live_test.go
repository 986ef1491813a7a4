package mailbox

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// TestHandoff: a deposit for a drained, live subscriber is pushed from
// memory and answered once the owner acks, and never stored; one the owner
// nacks, or does not ack in time, is stored and delivered again; each
// deposit is answered once and nothing is lost.
func TestHandoff(t *testing.T) {
	t.Run("acked", func(t *testing.T) {
		r := startRelay(t, t.TempDir(), nil, Config{})
		c, _ := newClient(t, r)
		key, addr := newDevice(t)
		col := subscribe(t, c, r, key, nil)
		r.waitSubscribed(addr)
		eventually(t, "backlog drained", func() bool { return r.drained(addr) })
		ctx := testCtx(t)
		for i := range 20 {
			if err := c.Deposit(ctx, r.h.ID(), addr, envID(i), envBody(i, 100)); err != nil {
				t.Fatal(err)
			}
			if n, _ := r.stats(addr); n != 0 {
				t.Fatalf("deposit %d: the relay stored %d envelopes of a live owner", i, n)
			}
		}
		if got := col.waitFor(t, 20); len(got) != 20 {
			t.Fatalf("%d deliveries", len(got))
		}
		if got := counterValue(t, r.srv.met.deposits.WithLabelValues("handed_off")); got != 20 {
			t.Fatalf("handed_off = %v, want 20", got)
		}
		if got := counterValue(t, r.srv.met.deposits.WithLabelValues("stored")); got != 0 {
			t.Fatalf("stored = %v, want 0", got)
		}
	})
	t.Run("nacked", func(t *testing.T) {
		r := startRelay(t, t.TempDir(), nil, Config{})
		c, _ := newClient(t, r)
		key, addr := newDevice(t)
		col := subscribe(t, c, r, key, func(Delivery) error { return errors.New("not now") })
		r.waitSubscribed(addr)
		eventually(t, "backlog drained", func() bool { return r.drained(addr) })
		if err := c.Deposit(testCtx(t), r.h.ID(), addr, envID(1), envBody(1, 100)); err != nil {
			t.Fatal(err)
		}
		if n, _ := r.stats(addr); n != 1 {
			t.Fatalf("a nacked hand-off must be stored; the mailbox holds %d", n)
		}
		// The stored copy comes again in the same subscription (refused
		// again: it stays stored).
		if got := col.waitFor(t, 2); got[1].ID != envID(1) {
			t.Fatalf("second delivery %v", got[1].ID)
		}
		if err := col.stop(); err != nil {
			t.Fatal(err)
		}
		// The stored copy reaches the owner on its next subscription and
		// is deleted on ack.
		col2 := subscribe(t, c, r, key, nil)
		if got := col2.waitFor(t, 1); got[0].ID != envID(1) {
			t.Fatalf("redelivered %v", got[0].ID)
		}
		eventually(t, "deleted on ack", func() bool { n, _ := r.stats(addr); return n == 0 })
	})
	t.Run("not acked in time", func(t *testing.T) {
		r := startRelay(t, t.TempDir(), nil, Config{}, func(s *Server) { s.handoffWait = 100 * time.Millisecond })
		c, _ := newClient(t, r)
		key, addr := newDevice(t)
		release := make(chan struct{})
		var once sync.Once
		col := subscribe(t, c, r, key, func(Delivery) error {
			once.Do(func() { <-release })
			return nil
		})
		r.waitSubscribed(addr)
		eventually(t, "backlog drained", func() bool { return r.drained(addr) })
		start := time.Now()
		if err := c.Deposit(testCtx(t), r.h.ID(), addr, envID(7), envBody(7, 100)); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) < 100*time.Millisecond {
			t.Fatal("answered before the owner acked or the relay stored it")
		}
		if n, _ := r.stats(addr); n != 1 {
			t.Fatalf("an unacked hand-off must be stored; the mailbox holds %d", n)
		}
		close(release)
		col.waitFor(t, 1)
		eventually(t, "stored copy delivered and deleted", func() bool { n, _ := r.stats(addr); return n == 0 })
	})
	t.Run("disabled", func(t *testing.T) {
		r := startRelay(t, t.TempDir(), nil, Config{NoHandoff: true})
		c, _ := newClient(t, r)
		key, addr := newDevice(t)
		col := subscribe(t, c, r, key, nil)
		r.waitSubscribed(addr)
		eventually(t, "backlog drained", func() bool { return r.drained(addr) })
		if err := c.Deposit(testCtx(t), r.h.ID(), addr, envID(1), envBody(1, 100)); err != nil {
			t.Fatal(err)
		}
		col.waitFor(t, 1)
		if got := counterValue(t, r.srv.met.deposits.WithLabelValues("stored")); got != 1 {
			t.Fatalf("stored = %v, want 1", got)
		}
	})
}

// drained reports whether a subscriber of addr has read its backlog.
func (r *testRelay) drained(addr Address) bool {
	r.srv.mu.Lock()
	defer r.srv.mu.Unlock()
	sess := r.srv.subs[addr]
	return sess != nil && sess.drained.Load()
}

package mailbox

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentDepositIntegrity: many goroutines deposit distinct random
// envelopes of mixed sizes over one Client, so that the Client's shared
// stream writes often exceed 1 MiB; every envelope the relay answered OK
// must come back byte for byte. (A spare write buffer that aliased the live
// one once stored 3–12 of 600 envelopes corrupted, each answered OK.)
func TestConcurrentDepositIntegrity(t *testing.T) {
	r := startRelay(t, t.TempDir(), nil, Config{StrangerPercent: 100})
	c, _ := newClient(t, r)
	ctx := testCtx(t)
	const workers, total, mailboxes = 48, 600, 3
	keys := make([]ed25519.PrivateKey, mailboxes)
	addrs := make([]Address, mailboxes)
	for i := range keys {
		keys[i], addrs[i] = newDevice(t)
	}
	rng := mrand.New(mrand.NewPCG(1, 2))
	sent := make([][]byte, total)
	for i := range sent {
		size := 100 + rng.IntN(4000)
		if i%3 == 0 {
			size = 64<<10 + rng.IntN(DefaultMaxEnvelopeSize-64<<10)
		}
		sent[i] = make([]byte, size)
		_, _ = rand.Read(sent[i])
	}
	var wg sync.WaitGroup
	errs := make(chan error, total)
	next := make(chan int, total)
	for i := range total {
		next <- i
	}
	close(next)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := c.Deposit(ctx, r.h.ID(), addrs[i%mailboxes], envID(i), sent[i]); err != nil {
					errs <- fmt.Errorf("deposit %d: %w", i, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	corrupted := 0
	for m := range mailboxes {
		want := 0
		for i := m; i < total; i += mailboxes {
			want++
		}
		col := subscribe(t, c, r, keys[m], nil)
		for _, d := range col.waitFor(t, want) {
			var i int
			if _, err := fmt.Sscanf(string(d.ID[4:]), "%d", &i); err != nil || i%mailboxes != m {
				t.Fatalf("mailbox %d delivered unknown ID %q", m, d.ID[:])
			}
			if !bytes.Equal(d.Envelope, sent[i]) {
				corrupted++
				t.Errorf("envelope %d: %d bytes delivered, %d sent, contents differ", i, len(d.Envelope), len(sent[i]))
			}
		}
		if err := col.stop(); err != nil {
			t.Fatal(err)
		}
	}
	if corrupted > 0 {
		t.Fatalf("%d of %d envelopes answered OK were stored corrupted", corrupted, total)
	}
}

// TestClientSpreadsStreams: a busy Client spreads its deposits for one
// relay over a few streams (never more than maxStreams), a quiet one keeps
// one, and answers are matched by envelope ID, the same ID twice included.
func TestClientSpreadsStreams(t *testing.T) {
	r := startRelay(t, t.TempDir(), nil, Config{StrangerPercent: 100, StrangerBudgets: Unlimited})
	c, _ := newClient(t, r)
	ctx := testCtx(t)
	_, addr := newDevice(t)
	streams := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		if p := c.pools[r.h.ID()]; p != nil {
			return len(p.conns)
		}
		return 0
	}
	for i := range 5 {
		if err := c.Deposit(ctx, r.h.ID(), addr, envID(i), []byte("quiet")); err != nil {
			t.Fatal(err)
		}
	}
	if n := streams(); n != 1 {
		t.Fatalf("a quiet client opened %d streams", n)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for i := range 1000 {
		wg.Go(func() {
			// Every ID twice, concurrently.
			if err := c.Deposit(ctx, r.h.ID(), addr, envID(100+i/2), envBody(i/2, 200)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := streams(); n < 2 || n > maxDepositStreams {
		t.Fatalf("a busy client has %d streams, want 2..%d", n, maxDepositStreams)
	}
	if n, _ := r.stats(addr); n != 505 {
		t.Fatalf("stored %d, want 505", n)
	}
}

// TestDepositAllKeepsOrder: items deposited together arrive in their
// order (they share one stream, which the relay stores in frame order);
// an item over the limit fails alone; a duplicate is answered OK.
func TestDepositAllKeepsOrder(t *testing.T) {
	r := startRelay(t, t.TempDir(), nil, Config{StrangerPercent: 100})
	c, _ := newClient(t, r)
	ctx := testCtx(t)
	key, addr := newDevice(t)
	const n = 300
	items := make([]Item, 0, n+2)
	for i := range n {
		items = append(items, Item{To: addr, ID: envID(i), Envelope: envBody(i, 200+i)})
	}
	items = append(items, Item{To: addr, ID: envID(n), Envelope: make([]byte, maxEnvelopeCeiling+1)})
	items = append(items, items[5]) // a duplicate
	errs := c.DepositAll(ctx, r.h.ID(), items)
	for i, err := range errs {
		switch {
		case i == n && !errors.Is(err, ErrTooLarge):
			t.Fatalf("oversize item: %v", err)
		case i != n && err != nil:
			t.Fatalf("item %d: %v", i, err)
		}
	}
	got := subscribe(t, c, r, key, nil).waitFor(t, n)
	for i, d := range got {
		if d.ID != envID(i) || !bytes.Equal(d.Envelope, envBody(i, 200+i)) {
			t.Fatalf("delivery %d is %v, want envelope %d", i, d.ID, i)
		}
	}
}

// TestSubscribeBatches: with SubscribeOptions.Batch, deliveries that
// queue up while a batch is handled come in one call, in order; each
// verdict counts alone (a refused delivery stays stored, the others of
// its batch are deleted).
func TestSubscribeBatches(t *testing.T) {
	r := startRelay(t, t.TempDir(), nil, Config{StrangerPercent: 100})
	c, _ := newClient(t, r)
	ctx := testCtx(t)
	key, addr := newDevice(t)
	const n = 200
	items := make([]Item, n)
	for i := range items {
		items[i] = Item{To: addr, ID: envID(i), Envelope: envBody(i, 300)}
	}
	for i, err := range c.DepositAll(ctx, r.h.ID(), items) {
		if err != nil {
			t.Fatalf("deposit %d: %v", i, err)
		}
	}
	var (
		mu      sync.Mutex
		got     []EnvelopeID
		largest int
		done    = make(chan struct{})
	)
	sctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		errc <- c.SubscribeWith(sctx, r.h.ID(), key, SubscribeOptions{MaxBatch: 64, Batch: func(_ context.Context, ds []Delivery) []error {
			mu.Lock()
			defer mu.Unlock()
			largest = max(largest, len(ds))
			errs := make([]error, len(ds))
			for i, d := range ds {
				got = append(got, d.ID)
				if d.ID == envID(7) {
					errs[i] = errors.New("not now")
				}
			}
			if len(got) >= n {
				select {
				case <-done:
				default:
					close(done)
				}
			}
			time.Sleep(5 * time.Millisecond) // deliveries queue meanwhile
			return errs
		}}, func(context.Context, Delivery) error {
			t.Error("fn called although Batch is set")
			return nil
		})
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("not every delivery arrived")
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		if got[i] != envID(i) {
			t.Fatalf("delivery %d is %v", i, got[i])
		}
	}
	if largest < 2 || largest > 64 {
		t.Fatalf("largest batch %d, want 2..64", largest)
	}
	eventually(t, "only the refused envelope left", func() bool { left, _ := r.stats(addr); return left == 1 })
}

// TestByteBudget: acquire blocks once the budget is spent, and release
// lets it go on.
func TestByteBudget(t *testing.T) {
	b := newByteBudget(4 * budgetUnit)
	b.acquire(2*budgetUnit - 1) // 2 units
	b.acquire(budgetUnit - 1)   // 1 unit
	done := make(chan struct{})
	go func() {
		b.acquire(budgetUnit) // 2 units: over the budget until a release
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("acquire went over the budget")
	case <-time.After(50 * time.Millisecond):
	}
	b.release(budgetUnit - 1)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("acquire still blocked after a release")
	}
}

// TestOnDrained: OnDrained is called once per subscription, after every
// envelope stored when it started has been handled (not merely read off
// the stream), with Batch and with fn alike.
func TestOnDrained(t *testing.T) {
	for _, batch := range []bool{true, false} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			r := startRelay(t, t.TempDir(), nil, Config{StrangerPercent: 100})
			c, _ := newClient(t, r)
			ctx := testCtx(t)
			key, addr := newDevice(t)
			const n = 50
			items := make([]Item, n)
			for i := range items {
				items[i] = Item{To: addr, ID: envID(i), Envelope: envBody(i, 300)}
			}
			for i, err := range c.DepositAll(ctx, r.h.ID(), items) {
				if err != nil {
					t.Fatalf("deposit %d: %v", i, err)
				}
			}
			var handled, drainedAt, calls atomic.Int64
			drainedAt.Store(-1)
			handle := func() {
				time.Sleep(2 * time.Millisecond) // slow: the rest arrives meanwhile
				handled.Add(1)
			}
			opts := SubscribeOptions{OnDrained: func() {
				calls.Add(1)
				drainedAt.Store(handled.Load())
			}}
			if batch {
				opts.Batch = func(_ context.Context, ds []Delivery) []error {
					for range ds {
						handle()
					}
					return make([]error, len(ds))
				}
			}
			sctx, cancel := context.WithCancel(ctx)
			errc := make(chan error, 1)
			go func() {
				errc <- c.SubscribeWith(sctx, r.h.ID(), key, opts, func(context.Context, Delivery) error {
					handle()
					return nil
				})
			}()
			eventually(t, "OnDrained", func() bool { return calls.Load() > 0 })
			// One more, live: handled, and no second call.
			if err := c.Deposit(ctx, r.h.ID(), addr, envID(n), envBody(n, 300)); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the live delivery", func() bool { return handled.Load() == n+1 })
			cancel()
			<-errc
			if got := drainedAt.Load(); got != n {
				t.Fatalf("OnDrained called after %d of %d stored envelopes were handled", got, n)
			}
			if got := calls.Load(); got != 1 {
				t.Fatalf("OnDrained called %d times", got)
			}
		})
	}
}

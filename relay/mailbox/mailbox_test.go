package mailbox

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestDepositSubscribeAck(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := startRelay(t, t.TempDir(), nil, Config{Registerer: reg})
	c, _ := newClient(t, r)
	key, addr := newDevice(t)
	ctx := testCtx(t)
	for i := range 5 {
		if err := c.Deposit(ctx, r.h.ID(), addr, envID(i), envBody(i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if n, b := r.stats(addr); n != 5 || b != 500 {
		t.Fatalf("stats = %d, %d; want 5, 500", n, b)
	}
	col := subscribe(t, c, r, key, nil)
	got := col.waitFor(t, 5)
	for i, d := range got {
		if d.ID != envID(i) || !bytes.Equal(d.Envelope, envBody(i, 100)) {
			t.Fatalf("delivery %d = %v, want %v in deposit order", i, d.ID, envID(i))
		}
		if d.Deposited.IsZero() || time.Since(d.Deposited) > time.Minute {
			t.Fatalf("delivery %d deposit time %v", i, d.Deposited)
		}
	}
	if err := col.stop(); err != nil {
		t.Fatal(err)
	}
	// Subscribe returns after the relay committed the acks.
	if n, b := r.stats(addr); n != 0 || b != 0 {
		t.Fatalf("after acks the mailbox holds %d envelopes, %d bytes", n, b)
	}
	for _, tc := range []struct {
		c    prometheus.Counter
		want float64
	}{
		{r.srv.met.deposits.WithLabelValues("stored"), 5},
		{r.srv.met.deliveries, 5},
		{r.srv.met.acks, 5},
		{r.srv.met.storedBytes, 500},
	} {
		if got := counterValue(t, tc.c); got != tc.want {
			t.Errorf("metric = %v, want %v", got, tc.want)
		}
	}
	if mfs, err := reg.Gather(); err != nil || len(mfs) == 0 {
		t.Errorf("registry gathered %d metric families, %v", len(mfs), err)
	}
}

func TestLivePush(t *testing.T) {
	r := startRelay(t, t.TempDir(), nil, Config{})
	c, _ := newClient(t, r)
	key, addr := newDevice(t)
	col := subscribe(t, c, r, key, nil)
	r.waitSubscribed(addr)
	ctx := testCtx(t)
	for i := range 3 {
		if err := c.Deposit(ctx, r.h.ID(), addr, envID(i), envBody(i, 10)); err != nil {
			t.Fatal(err)
		}
		if got := col.waitFor(t, i+1); got[i].ID != envID(i) {
			t.Fatalf("push %d = %v", i, got[i].ID)
		}
	}
	// A deposit for another mailbox is not pushed here.
	_, other := newDevice(t)
	if err := c.Deposit(ctx, r.h.ID(), other, envID(9), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := c.Deposit(ctx, r.h.ID(), addr, envID(3), []byte("y")); err != nil {
		t.Fatal(err)
	}
	if got := col.waitFor(t, 4); len(got) != 4 || got[3].ID != envID(3) {
		t.Fatalf("got %d deliveries, last %v", len(got), got[len(got)-1].ID)
	}
	if err := col.stop(); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.stats(other); n != 1 {
		t.Fatalf("other mailbox holds %d", n)
	}
}

func TestUnackedRedelivered(t *testing.T) {
	r := startRelay(t, t.TempDir(), nil, Config{})
	c, _ := newClient(t, r)
	key, addr := newDevice(t)
	ctx := testCtx(t)
	for i := range 6 {
		if err := c.Deposit(ctx, r.h.ID(), addr, envID(i), envBody(i, 10)); err != nil {
			t.Fatal(err)
		}
	}
	// Accept even-numbered envelopes only.
	col := subscribe(t, c, r, key, func(d Delivery) error {
		if d.ID[14]%2 == 1 { // envID's last digit
			return errors.New("not now")
		}
		return nil
	})
	col.waitFor(t, 6)
	if err := col.stop(); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.stats(addr); n != 3 {
		t.Fatalf("after partial acks the mailbox holds %d, want 3", n)
	}
	col = subscribe(t, c, r, key, nil)
	got := col.waitFor(t, 3)
	for i, d := range got {
		if d.ID != envID(2*i+1) {
			t.Fatalf("redelivery %d = %v, want %v", i, d.ID, envID(2*i+1))
		}
	}
	if err := col.stop(); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.stats(addr); n != 0 {
		t.Fatalf("mailbox holds %d", n)
	}
	// A subscription cut before the ack (stream reset, no graceful close)
	// loses nothing either.
	if err := c.Deposit(ctx, r.h.ID(), addr, envID(7), []byte("z")); err != nil {
		t.Fatal(err)
	}
	raw := openRaw(t, newHost(t, nil), r)
	raw.auth(key, r.h.ID())
	if d, ok := raw.mustNext().(*deliveryMsg); !ok || d.ID != envID(7) {
		t.Fatalf("raw subscriber got %#v", d)
	}
	_ = raw.str.Reset()
	col = subscribe(t, c, r, key, nil)
	if got := col.waitFor(t, 1); got[0].ID != envID(7) {
		t.Fatalf("redelivery = %v", got[0].ID)
	}
}

func TestRestartLosesNothing(t *testing.T) {
	r := startRelay(t, t.TempDir(), nil, Config{})
	c, ch := newClient(t, r)
	key, addr := newDevice(t)
	ctx := testCtx(t)
	const n = 50
	for i := range n {
		if err := c.Deposit(ctx, r.h.ID(), addr, envID(i), envBody(i, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	r.restart()
	learn(ch, r)
	// The client's deposit stream died with the old host; Deposit reopens.
	if err := c.Deposit(ctx, r.h.ID(), addr, envID(n), envBody(n, 1000)); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.stats(addr); got != n+1 {
		t.Fatalf("after restart the mailbox holds %d, want %d", got, n+1)
	}
	col := subscribe(t, c, r, key, nil)
	got := col.waitFor(t, n+1)
	for i, d := range got {
		if d.ID != envID(i) || !bytes.Equal(d.Envelope, envBody(i, 1000)) {
			t.Fatalf("delivery %d = %v", i, d.ID)
		}
	}
	if err := col.stop(); err != nil {
		t.Fatal(err)
	}
	// Sequence numbers keep increasing across the restart: a new deposit
	// sorts after the old ones.
	r.restart()
	learn(ch, r)
	for i := range 2 {
		if err := c.Deposit(ctx, r.h.ID(), addr, envID(100+i), []byte("late")); err != nil {
			t.Fatal(err)
		}
	}
	col = subscribe(t, c, r, key, nil)
	if got := col.waitFor(t, 2); got[0].ID != envID(100) || got[1].ID != envID(101) {
		t.Fatalf("order after restart: %v, %v", got[0].ID, got[1].ID)
	}
}

func TestDuplicateDepositStoredOnce(t *testing.T) {
	r := startRelay(t, t.TempDir(), nil, Config{})
	c, _ := newClient(t, r)
	c2, _ := newClient(t, r)
	key, addr := newDevice(t)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 { // the same ID from two clients, concurrently
		cl := c
		if i%2 == 1 {
			cl = c2
		}
		wg.Go(func() { errs <- cl.Deposit(ctx, r.h.ID(), addr, envID(1), []byte("once")) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n, b := r.stats(addr); n != 1 || b != 4 {
		t.Fatalf("stats = %d, %d; want 1, 4", n, b)
	}
	// The same ID in another mailbox is another envelope.
	_, other := newDevice(t)
	if err := c.Deposit(ctx, r.h.ID(), other, envID(1), []byte("once")); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.stats(other); n != 1 {
		t.Fatalf("other mailbox holds %d", n)
	}
	col := subscribe(t, c, r, key, nil)
	col.waitFor(t, 1)
	time.Sleep(200 * time.Millisecond)
	if got := col.deliveries(); len(got) != 1 {
		t.Fatalf("%d deliveries of one envelope", len(got))
	}
	if got := counterValue(t, r.srv.met.deposits.WithLabelValues("duplicate")); got != 19 {
		t.Errorf("duplicate deposits counted %v, want 19", got)
	}
}

func TestRefusals(t *testing.T) {
	r := startRelay(t, t.TempDir(), nil, Config{
		MaxEnvelopeSize:     1000,
		MaxMailboxEnvelopes: 3,
		MaxMailboxBytes:     2000,
		StrangerPercent:     100, // the mailbox quota, not the strangers' share
	})
	c, _ := newClient(t, r)
	ctx := testCtx(t)
	relay := r.h.ID()
	_, addr := newDevice(t)

	tests := []struct {
		name string
		size int
		want error
	}{
		{"fits", 1000, nil},
		{"over by one", 1001, ErrTooLarge},
		{"over the frame bound, skipped", 3000, ErrTooLarge},
		{"over the drain bound, stream closed", 17 << 20, ErrTooLarge},
		{"fits again after refusals", 500, nil},
		{"bytes quota", 600, ErrQuotaExceeded},
		{"third", 10, nil},
		{"count quota", 10, ErrQuotaExceeded},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Deposit(ctx, relay, addr, envID(i), make([]byte, tc.size))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Deposit = %v, want %v", err, tc.want)
			}
			var re *RefusalError
			if tc.want != nil && !errors.As(err, &re) {
				t.Fatalf("refusal %v is not a *RefusalError", err)
			}
			if tc.want != nil && re.Message == "" {
				t.Fatal("refusal has no message")
			}
		})
	}
	if n, b := r.stats(addr); n != 3 || b != 1510 {
		t.Fatalf("stats = %d, %d; want 3, 1510", n, b)
	}
	// Other mailboxes are not affected by a full one.
	_, other := newDevice(t)
	if err := c.Deposit(ctx, relay, other, envID(0), []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if got := counterValue(t, r.srv.met.refusals.WithLabelValues("quota_exceeded")); got != 2 {
		t.Errorf("quota refusals = %v", got)
	}
}

func TestQuotaFreedByAck(t *testing.T) {
	r := startRelay(t, t.TempDir(), nil, Config{MaxMailboxEnvelopes: 2, StrangerPercent: 100})
	c, _ := newClient(t, r)
	key, addr := newDevice(t)
	ctx := testCtx(t)
	for i := range 2 {
		if err := c.Deposit(ctx, r.h.ID(), addr, envID(i), []byte("a")); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Deposit(ctx, r.h.ID(), addr, envID(2), []byte("a")); !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("third deposit = %v", err)
	}
	col := subscribe(t, c, r, key, nil)
	col.waitFor(t, 2)
	if err := col.stop(); err != nil {
		t.Fatal(err)
	}
	for i := 2; i < 4; i++ {
		if err := c.Deposit(ctx, r.h.ID(), addr, envID(i), []byte("a")); err != nil {
			t.Fatalf("deposit after acks: %v", err)
		}
	}
}

func TestTTLExpiry(t *testing.T) {
	r := startRelay(t, t.TempDir(), nil, Config{TTL: 2 * time.Second, MaxMailboxEnvelopes: 2, StrangerPercent: 100})
	c, _ := newClient(t, r)
	key, addr := newDevice(t)
	ctx := testCtx(t)
	for i := range 2 {
		if err := c.Deposit(ctx, r.h.ID(), addr, envID(i), []byte("soon gone")); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := r.stats(addr); n != 2 {
		t.Fatalf("stats = %d", n)
	}
	eventually(t, "expiry", func() bool { n, _ := r.stats(addr); return n == 0 })
	// The quota counters over-count expired envelopes; the recount lets
	// new deposits in.
	for i := 2; i < 4; i++ {
		if err := c.Deposit(ctx, r.h.ID(), addr, envID(i), []byte("fresh")); err != nil {
			t.Fatalf("deposit after expiry: %v", err)
		}
	}
	raw := openRaw(t, newHost(t, nil), r)
	raw.auth(key, r.h.ID())
	var got []EnvelopeID
	for {
		m := raw.mustNext()
		if _, ok := m.(*drainedMsg); ok {
			break
		}
		got = append(got, m.(*deliveryMsg).ID)
	}
	if len(got) != 2 || got[0] != envID(2) || got[1] != envID(3) {
		t.Fatalf("after expiry delivered %v, want only the fresh two", got)
	}
}

func TestConcurrentDepositors(t *testing.T) {
	r := startRelay(t, t.TempDir(), nil, Config{})
	ctx := testCtx(t)
	const clients, workers, perWorker, mailboxes = 3, 8, 25, 4
	keys := make([]Address, mailboxes)
	privs := make([][]byte, mailboxes)
	for i := range keys {
		k, a := newDevice(t)
		keys[i], privs[i] = a, k
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients*workers)
	cls := make([]*Client, clients)
	for ci := range clients {
		cls[ci], _ = newClient(t, r)
		for w := range workers {
			wg.Go(func() {
				for j := range perWorker {
					n := (ci*workers+w)*perWorker + j
					if err := cls[ci].Deposit(ctx, r.h.ID(), keys[n%mailboxes], envID(n), envBody(n, 200)); err != nil {
						errs <- fmt.Errorf("deposit %d: %w", n, err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := 0
	for i, a := range keys {
		n, _ := r.stats(a)
		total += n
		col := subscribe(t, cls[0], r, privs[i], nil)
		got := col.waitFor(t, n)
		seen := map[EnvelopeID]bool{}
		for _, d := range got {
			if seen[d.ID] {
				t.Fatalf("mailbox %d: %v delivered twice", i, d.ID)
			}
			seen[d.ID] = true
			var k int
			if _, err := fmt.Sscanf(string(d.ID[4:]), "%d", &k); err != nil || k%mailboxes != i {
				t.Fatalf("mailbox %d got %v", i, d.ID)
			}
		}
		if err := col.stop(); err != nil {
			t.Fatal(err)
		}
	}
	if want := clients * workers * perWorker; total != want {
		t.Fatalf("stored %d, want %d", total, want)
	}
}

func TestWindow(t *testing.T) {
	r := startRelay(t, t.TempDir(), nil, Config{Window: 4})
	c, _ := newClient(t, r)
	key, addr := newDevice(t)
	ctx := testCtx(t)
	for i := range 10 {
		if err := c.Deposit(ctx, r.h.ID(), addr, envID(i), []byte("w")); err != nil {
			t.Fatal(err)
		}
	}
	raw := openRaw(t, newHost(t, nil), r)
	if ch := raw.auth(key, r.h.ID()); ch.Window != 4 {
		t.Fatalf("announced window %d", ch.Window)
	}
	read := func(n int) []EnvelopeID {
		var ids []EnvelopeID
		for range n {
			ids = append(ids, raw.mustNext().(*deliveryMsg).ID)
		}
		return ids
	}
	first := read(4)
	// Nothing more until something is acked.
	_ = raw.str.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if m, err := raw.fr.next(clientFrameCeiling); err == nil {
		t.Fatalf("window exceeded: got %#v", m)
	}
	raw.send(&ackMsg{IDs: first[:2]})
	raw.send(&nackMsg{IDs: first[2:3]})
	if got := read(3); got[0] != envID(4) || got[2] != envID(6) {
		t.Fatalf("after ack got %v", got)
	}
	if err := raw.str.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	raw.expectEOF()
	if n, _ := r.stats(addr); n != 8 {
		t.Fatalf("mailbox holds %d, want 8", n)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || len(mfs[0].GetMetric()) != 1 {
		t.Fatalf("gather: %d families, %v", len(mfs), err)
	}
	return mfs[0].GetMetric()[0].GetCounter().GetValue()
}

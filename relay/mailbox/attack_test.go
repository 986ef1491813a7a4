package mailbox

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The attacks of issue 6 §2, each written first against the relay as it
// was (where it succeeded), then defended.

// TestAttackAuthDeadline: twenty anonymous peers open subscribe streams
// and never authenticate; half of them dribble their Subscribe frame so
// that it completes just before the deadline (each frame used to restart
// it). Every stream is closed AuthTimeout after it was opened, and a real
// subscriber is served meanwhile.
func TestAttackAuthDeadline(t *testing.T) {
	const timeout = 2 * time.Second
	r := startRelay(t, t.TempDir(), nil, Config{AuthTimeout: timeout})
	const attackers = 20
	var wg sync.WaitGroup
	held := make(chan time.Duration, attackers)
	ready := make(chan struct{}, attackers)
	h := newHost(t, nil)
	for i := range attackers {
		raw := openRaw(t, h, r)
		wg.Go(func() {
			opened := time.Now()
			ready <- struct{}{}
			if i%2 == 1 {
				frame := appendFrame(nil, &subscribeMsg{})
				for j, b := range frame {
					if j == len(frame)-1 {
						time.Sleep(time.Until(opened.Add(timeout * 3 / 4)))
					}
					if _, err := raw.str.Write([]byte{b}); err != nil {
						held <- time.Since(opened)
						return
					}
				}
			} else {
				raw.send(&subscribeMsg{})
			}
			_ = raw.str.SetReadDeadline(time.Now().Add(4 * timeout))
			for {
				if _, err := raw.fr.next(controlFrameMax); err != nil {
					held <- time.Since(opened)
					return
				}
			}
		})
	}
	for range attackers {
		<-ready
	}
	// A real subscriber gets its mail while the attackers hold their
	// streams.
	c, _ := newClient(t, r)
	key, addr := newDevice(t)
	if err := c.Deposit(testCtx(t), r.h.ID(), addr, envID(1), []byte("real")); err != nil {
		t.Fatal(err)
	}
	col := subscribe(t, c, r, key, nil)
	col.waitFor(t, 1)
	wg.Wait()
	close(held)
	for d := range held {
		if d > timeout+time.Second {
			t.Errorf("an unauthenticated stream was held %v (AuthTimeout %v)", d.Round(time.Millisecond), timeout)
		}
	}
	eventually(t, "no unauthenticated streams", func() bool {
		return gaugeValue(t, r.srv.met.streams.WithLabelValues(streamPending)) == 0
	})
	if got := counterValue(t, r.srv.met.refusals.WithLabelValues("auth_timeout")); got != attackers {
		t.Errorf("auth_timeout refusals = %v, want %d", got, attackers)
	}
}

// TestAttackFloodRandomMailboxes: one peer deposits 100 KiB envelopes into
// fresh random mailboxes as fast as it can (the attack stored 40 MB in 400
// mailboxes in 0.67 s). Its budget stops it; more peers from the same
// address are stopped by the address's budget and, all together, by the
// store's cap; the relay still takes a contact's deposit (the last 5 % of
// the cap) and still serves its owners.
func TestAttackFloodRandomMailboxes(t *testing.T) {
	const size = 100 << 10
	r := startRelay(t, t.TempDir(), nil, Config{
		MaxStoreBytes: 60 * size,
		StrangerBudgets: Budgets{
			Peer: Budget{Envelopes: 1000, Bytes: 20 * size, Window: time.Hour},
			IP:   Budget{Envelopes: 1000, Bytes: 1000 * size, Window: time.Hour},
		},
	})
	ctx := testCtx(t)
	flood := func(c *Client, n int) (stored int, errs map[error]int) {
		errs = map[error]int{}
		env := make([]byte, size)
		for i := range n {
			var to Address
			_, _ = rand.Read(to[:])
			err := c.Deposit(ctx, r.h.ID(), to, envID(i), env)
			switch {
			case err == nil:
				stored++
			case errors.Is(err, ErrRateLimited):
				errs[ErrRateLimited]++
			case errors.Is(err, ErrRelayFull):
				errs[ErrRelayFull]++
			default:
				t.Fatalf("deposit %d: %v", i, err)
			}
		}
		return stored, errs
	}
	first, _ := newClient(t, r)
	if stored, errs := flood(first, 40); stored != 20 || errs[ErrRateLimited] != 20 {
		t.Fatalf("one peer stored %d of 40 (refusals %v); its budget is 20", stored, errs)
	}
	total := 20
	for range 5 {
		c, _ := newClient(t, r)
		stored, _ := flood(c, 20)
		total += stored
	}
	if limit := 57; total > limit { // 95 % of 60 envelopes' bytes
		t.Fatalf("strangers stored %d envelopes; the cap leaves them %d", total, limit)
	}
	if _, errs := flood(first, 1); errs[ErrRateLimited] != 1 {
		t.Fatalf("the first peer is still limited: %v", errs)
	}
	last, _ := newClient(t, r)
	if _, errs := flood(last, 1); errs[ErrRelayFull] != 1 {
		t.Fatalf("a full relay refuses strangers with ErrRelayFull: %v", errs)
	}
	if got := gaugeValue(t, r.srv.met.heldBytes); got != float64(total*size) {
		t.Errorf("held_bytes = %v, want %d", got, total*size)
	}

	// A contact's deposit still fits in the reserve, and the owner reads
	// and acks.
	c, _ := newClient(t, r)
	key, addr := newDevice(t)
	tok := newToken(t)
	col := subscribeWith(t, c, r, key, SubscribeOptions{Tokens: []Token{tok}}, nil)
	r.waitSubscribed(addr)
	if err := col.stop(); err != nil { // registered; Alice goes offline
		t.Fatal(err)
	}
	if err := c.DepositWithToken(ctx, r.h.ID(), addr, envID(1), make([]byte, size), tok); err != nil {
		t.Fatalf("contact's deposit to a relay full for strangers: %v", err)
	}
	col = subscribe(t, c, r, key, nil)
	col.waitFor(t, 1)
	if err := col.stop(); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.stats(addr); n != 0 {
		t.Fatalf("owner's ack on a full relay deleted nothing: %d left", n)
	}
}

// TestAttackStrangerFillsMailbox: while Alice is offline, strangers fill
// her mailbox. Her contact Bob, holding a delivery token Alice registered,
// still gets his message in; the strangers together get only their share
// (ErrStrangerQuota), and each one only its budget (ErrRateLimited).
func TestAttackStrangerFillsMailbox(t *testing.T) {
	r := startRelay(t, t.TempDir(), nil, Config{
		MaxMailboxEnvelopes: 100, // strangers: 10
		StrangerBudgets:     Budgets{Peer: Budget{Envelopes: 6, Window: time.Hour}},
	})
	ctx := testCtx(t)
	alice, _ := newClient(t, r)
	key, addr := newDevice(t)
	tok := newToken(t)
	// Alice registers her token, then goes offline.
	col := subscribeWith(t, alice, r, key, SubscribeOptions{Tokens: []Token{tok}}, nil)
	r.waitSubscribed(addr)
	if err := col.stop(); err != nil {
		t.Fatal(err)
	}

	stored := 0
	var quota, limited int
	for s := range 3 {
		mallory, _ := newClient(t, r)
		for i := range 8 {
			err := mallory.Deposit(ctx, r.h.ID(), addr, envID(s*100+i), []byte("junk"))
			switch {
			case err == nil:
				stored++
			case errors.Is(err, ErrStrangerQuota):
				quota++
			case errors.Is(err, ErrRateLimited):
				limited++
			default:
				t.Fatal(err)
			}
		}
	}
	// 3 strangers × 6 allowed by their budgets, 10 stored (the share),
	// 8 refused for the share, 6 over budget.
	if stored != 10 || quota != 8 || limited != 6 {
		t.Fatalf("strangers: %d stored, %d refused for the share, %d rate limited; want 10, 8, 6", stored, quota, limited)
	}
	bob, _ := newClient(t, r)
	for i := range 50 {
		if err := bob.DepositWithToken(ctx, r.h.ID(), addr, envID(1000+i), []byte("hi Alice"), tok); err != nil {
			t.Fatalf("contact's deposit %d: %v", i, err)
		}
	}
	// A wrong token is no token.
	var wrong Token
	wrong[0] = 1
	if err := bob.DepositWithToken(ctx, r.h.ID(), addr, envID(2000), []byte("x"), wrong); !errors.Is(err, ErrStrangerQuota) {
		t.Fatalf("deposit with a token Alice did not register = %v, want ErrStrangerQuota", err)
	}
	if n, _ := r.stats(addr); n != 60 {
		t.Fatalf("mailbox holds %d, want 60", n)
	}
}

// TestAttackStuckSubscriber: a subscriber that never reads its stream does
// not stall its depositors. Deposits for it fall back to storage, and the
// same client's deposits to other mailboxes, on the same relay, are
// answered promptly.
func TestAttackStuckSubscriber(t *testing.T) {
	r := startRelay(t, t.TempDir(), nil, Config{StrangerPercent: 100})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	victimKey, victim := newDevice(t)
	raw := openRaw(t, newHost(t, nil), r)
	raw.auth(victimKey, r.h.ID())
	if _, ok := raw.mustNext().(*drainedMsg); !ok {
		t.Fatal("want Drained")
	}
	// From here on the victim reads nothing.
	c, _ := newClient(t, r)
	_, other := newDevice(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	const stuck = 40
	for i := range stuck { // 2.5 MiB: far over the stream's flow-control window
		wg.Go(func() {
			if err := c.Deposit(ctx, r.h.ID(), victim, envID(i), make([]byte, 64<<10)); err != nil {
				errs <- fmt.Errorf("deposit for the stuck subscriber: %w", err)
			}
		})
	}
	time.Sleep(100 * time.Millisecond) // let them queue first
	for i := range 20 {
		start := time.Now()
		if err := c.Deposit(ctx, r.h.ID(), other, envID(100+i), []byte("other")); err != nil {
			t.Fatalf("deposit to another mailbox: %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("deposit %d to another mailbox took %v", i, d.Round(time.Millisecond))
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// What the victim did not take is stored.
	if n, _ := r.stats(victim); n != stuck {
		t.Fatalf("the stuck subscriber's mailbox holds %d of %d", n, stuck)
	}
	if got := counterValue(t, r.srv.met.fallbacks); got == 0 {
		t.Fatal("no hand-off fell back to storage")
	}
}

// TestAttackFullRelayServesReadsAndAcks: at its cap, and below its disk's
// free-space reserve, a relay refuses deposits with a clear error but
// still delivers and deletes on ack, so its owners can empty it.
func TestAttackFullRelayServesReadsAndAcks(t *testing.T) {
	t.Run("cap", func(t *testing.T) {
		r := startRelay(t, t.TempDir(), nil, Config{MaxStoreBytes: 5000, StrangerPercent: 100})
		c, _ := newClient(t, r)
		key, addr := newDevice(t)
		ctx := testCtx(t)
		for i := range 4 {
			if err := c.Deposit(ctx, r.h.ID(), addr, envID(i), make([]byte, 1000)); err != nil {
				t.Fatal(err)
			}
		}
		err := c.Deposit(ctx, r.h.ID(), addr, envID(9), make([]byte, 1000))
		var re *RefusalError
		if !errors.Is(err, ErrRelayFull) || !errors.As(err, &re) || re.Code != CodeRelayFull || re.Message == "" {
			t.Fatalf("deposit to a full relay = %v", err)
		}
		col := subscribe(t, c, r, key, nil)
		col.waitFor(t, 4)
		if err := col.stop(); err != nil {
			t.Fatal(err)
		}
		if n, _ := r.stats(addr); n != 0 {
			t.Fatalf("after acks the mailbox holds %d", n)
		}
		if err := c.Deposit(ctx, r.h.ID(), addr, envID(9), make([]byte, 1000)); err != nil {
			t.Fatalf("deposit once acks made room: %v", err)
		}
	})
	t.Run("disk reserve", func(t *testing.T) {
		r := startRelay(t, t.TempDir(), nil, Config{})
		c, ch := newClient(t, r)
		key, addr := newDevice(t)
		ctx := testCtx(t)
		for i := range 5 {
			if err := c.Deposit(ctx, r.h.ID(), addr, envID(i), []byte("before the disk filled")); err != nil {
				t.Fatal(err)
			}
		}
		r.stop()
		r.minFree = 1 << 62 // every write now finds the disk below its reserve
		r.start()
		learn(ch, r)
		err := c.Deposit(ctx, r.h.ID(), addr, envID(9), []byte("more"))
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("deposit below the free-space reserve = %v, want ErrUnavailable", err)
		}
		// The owner keeps two for later, so its mailbox is not emptied
		// (a relay that rewrote counters on ack failed exactly then).
		col := subscribe(t, c, r, key, func(d Delivery) error {
			if d.ID == envID(3) || d.ID == envID(4) {
				return errors.New("later")
			}
			return nil
		})
		col.waitFor(t, 5)
		if err := col.stop(); err != nil {
			t.Fatal(err)
		}
		if n, _ := r.stats(addr); n != 2 {
			t.Fatalf("acks below the free-space reserve: %d envelopes left, want 2", n)
		}
	})
}

func newToken(t testing.TB) Token {
	t.Helper()
	var tok Token
	if _, err := rand.Read(tok[:]); err != nil {
		t.Fatal(err)
	}
	return tok
}

func gaugeValue(t testing.TB, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

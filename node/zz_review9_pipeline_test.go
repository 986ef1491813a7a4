package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// review9Texts posts count distinct ~40 KiB texts from a to contact at
// once (several batches) and returns them in posting order.
func review9Post(t *testing.T, a *testNode, contact string, count int) []string {
	t.Helper()
	pad := strings.Repeat("x", 40<<10)
	want := make([]string, count)
	var wg sync.WaitGroup
	for i := range count {
		want[i] = fmt.Sprintf("r9-%03d-%s", i, pad)
		wg.Go(func() {
			if _, err := a.Send(context.Background(), contact, want[i]); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	return want
}

// review9Once checks that bob holds every text of want exactly once.
func review9Once(t *testing.T, bob *testNode, from string, want []string) {
	t.Helper()
	eventually(t, "every text at Bob", func() (bool, error) {
		return len(texts(t, bob, from)) >= len(want), nil
	})
	time.Sleep(time.Second) // any duplicate still on its way
	got := texts(t, bob, from)
	seen := map[string]int{}
	for _, s := range got {
		seen[s]++
	}
	for _, w := range want {
		if seen[w] != 1 {
			t.Errorf("text %.6s stored %d times at Bob", w, seen[w])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("Bob holds %d texts, want %d", len(got), len(want))
	}
}

// TestReview9LostOutcomeResentOnce: a batch is handed over but its
// outcome is never committed (the node stops right after the send, as a
// crash losing the unsynced outcome would). After a restart the batch
// goes again (same sealed copies) and the next batch, sealed meanwhile,
// goes for the first time: Bob must hold each message exactly once.
func TestReview9LostOutcomeResentOnce(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)

	var (
		mu     sync.Mutex
		calls  int
		firstN int
	)
	fault := func(ctx context.Context, a *attempt) bool {
		mu.Lock()
		calls++
		call := calls
		mu.Unlock()
		if call == 1 {
			// Fails slowly: every send is in the outbox when it goes again.
			time.Sleep(time.Second)
			for i := range a.errs {
				a.errs[i] = errors.New("review9: first try fails")
			}
			return true
		}
		if call > 2 {
			// A later batch: never sent in this run.
			for i := range a.errs {
				a.errs[i] = errors.New("review9: not in this run")
			}
			return true
		}
		time.Sleep(500 * time.Millisecond) // the next batch is sealed meanwhile
		// The real send.
		for _, ds := range a.sends {
			dev := ds.t.cert.Device.String()
			for k, e := range alice.sendBatch(ctx, ds.t, ds.envs) {
				i := ds.idx[k]
				if e != nil {
					a.errs[i] = errors.Join(a.errs[i], e)
					continue
				}
				a.jobs[i].Done = append(a.jobs[i].Done, dev)
			}
		}
		mu.Lock()
		firstN = len(a.jobs)
		mu.Unlock()
		alice.cancel() // stop before the outcome is committed
		return true
	}
	alice.sendFault.Store(&fault)
	want := review9Post(t, alice, "bob", 30)
	select {
	case <-alice.done:
		alice.cancel = nil
	case <-time.After(40 * time.Second):
		t.Fatal("Alice did not stop")
	}
	mu.Lock()
	t.Logf("batch: %d jobs handed over, %d attempts before stop", firstN, calls)
	if firstN == 0 || firstN >= 30 {
		t.Fatalf("%d jobs in the batch handed over; the test needs a later batch", firstN)
	}
	mu.Unlock()
	eventually(t, "the first batch at Bob", func() (bool, error) {
		return len(texts(t, bob, aliceInfo.AccountID)) >= firstN, nil
	})
	alice = startNode(t, aliceHome, relay.addr)
	eventually(t, "Alice's outbox empty", func() (bool, error) {
		st, err := alice.Status(context.Background())
		return err == nil && st.Outbox == 0, err
	})
	review9Once(t, bob, aliceInfo.AccountID, want)
	_ = bobInfo
}

// TestReview9StopWhileBatchHangs: the node stops while a batch's send
// hangs and the next batch has been sealed: Run must return (no worker
// waits forever), and after a restart everything arrives once.
func TestReview9StopWhileBatchHangs(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)

	hung := make(chan struct{}, 1)
	fault := func(ctx context.Context, a *attempt) bool {
		select {
		case hung <- struct{}{}:
		default:
		}
		<-ctx.Done()
		for i := range a.errs {
			a.errs[i] = ctx.Err()
		}
		return true
	}
	alice.sendFault.Store(&fault)
	want := review9Post(t, alice, "bob", 20)
	<-hung
	time.Sleep(500 * time.Millisecond)
	stopped := make(chan struct{})
	go func() { alice.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("Alice's Run did not return within 20 s of stopping mid-send")
	}
	alice = startNode(t, aliceHome, relay.addr)
	eventually(t, "Alice's outbox empty", func() (bool, error) {
		st, err := alice.Status(context.Background())
		return err == nil && st.Outbox == 0, err
	})
	review9Once(t, bob, aliceInfo.AccountID, want)
}

// TestReview9NextBatchKeepsItsBudget: each batch's attempt is bounded by
// jobBudget. The next batch's budget must not be spent waiting for the
// previous batch's send.
func TestReview9NextBatchKeepsItsBudget(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)

	var (
		mu   sync.Mutex
		left []time.Duration
		seqs [][]uint64
	)
	fault := func(ctx context.Context, a *attempt) bool {
		dl, _ := ctx.Deadline()
		mu.Lock()
		n := len(left)
		left = append(left, time.Until(dl))
		var s []uint64
		for _, j := range a.jobs {
			s = append(s, j.Seq)
		}
		seqs = append(seqs, s)
		mu.Unlock()
		if n == 0 {
			// The first batch's relay is slow: 3 s.
			time.Sleep(3 * time.Second)
			return true // handed over (errs nil)
		}
		return false
	}
	alice.sendFault.Store(&fault)
	review9Post(t, alice, "bob", 20)
	eventually(t, "Alice's outbox empty", func() (bool, error) {
		st, err := alice.Status(context.Background())
		return err == nil && st.Outbox == 0, err
	})
	mu.Lock()
	defer mu.Unlock()
	if len(left) < 2 {
		t.Fatalf("%d attempts; the test needs two batches", len(left))
	}
	t.Logf("budget left at each send: %v", left)
	if left[1] < jobBudget-time.Second {
		t.Fatalf("the second batch started its send with %v of its %v budget left: the wait for the first batch's send (3 s) was charged to it", left[1].Round(time.Millisecond), jobBudget)
	}
}

// TestReview9SlowBatchFailsNext: the first batch's relay takes nearly the
// whole budget (and succeeds); the next batch, sealed meanwhile, must
// still be handed over on its first attempt, not fail for a budget it
// spent waiting.
func TestReview9SlowBatchFailsNext(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)

	var (
		mu    sync.Mutex
		calls int
		tries = map[uint64]int{}
		left  []time.Duration
	)
	fault := func(ctx context.Context, a *attempt) bool {
		dl, _ := ctx.Deadline()
		mu.Lock()
		calls++
		n := calls
		left = append(left, time.Until(dl))
		for _, j := range a.jobs {
			tries[j.Seq]++
		}
		mu.Unlock()
		if n == 1 {
			time.Sleep(time.Until(dl) - 30*time.Millisecond)
			return true // handed over, just in time
		}
		return false // the real send
	}
	alice.sendFault.Store(&fault)
	review9Post(t, alice, "bob", 12)
	deadline := time.Now().Add(50 * time.Second)
	for {
		st, err := alice.Status(context.Background())
		if err == nil && st.Outbox == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("outbox never emptied")
		}
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("attempts %d, budget left at each: %v", calls, left)
	for s, n := range tries {
		if n > 1 {
			t.Errorf("job %d attempted %d times: a batch that waited behind a slow one failed for lack of budget", s, n)
		}
	}
}

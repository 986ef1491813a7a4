package node

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestOutboxNothingSentBehindAFailure: the outbox seals a recipient's next
// batch while the last one is being sent. When that send fails, the next
// batch must not go out ahead of it: it waits, sealed, and both go again
// in order once the failure is due.
func TestOutboxNothingSentBehindAFailure(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	bob.stop()

	var (
		mu    sync.Mutex
		calls int
		sent  []uint64 // job numbers in the order they were handed on
	)
	fault := func(_ context.Context, a *attempt) bool {
		mu.Lock()
		calls++
		first := calls == 1
		if !first {
			for _, j := range a.jobs {
				sent = append(sent, j.Seq)
			}
		}
		mu.Unlock()
		if !first {
			return false
		}
		// The first batch fails, slowly: the next one is sealed meanwhile.
		time.Sleep(300 * time.Millisecond)
		for i := range a.errs {
			a.errs[i] = errors.New("injected: the relay went away")
		}
		return true
	}
	alice.sendFault.Store(&fault)

	// Texts of 40 KiB: a batch holds a few of them (half a transaction's
	// limit), so 40 make many batches.
	const count = 40
	text := strings.Repeat("x", 40<<10)
	var wg sync.WaitGroup
	for i := range count {
		wg.Go(func() {
			if _, err := alice.Send(context.Background(), bobInfo.AccountID, text+string(rune('A'+i%26))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	eventually(t, "every job handed on", func() (bool, error) {
		st, err := alice.Status(context.Background())
		return err == nil && st.Outbox == 0, err
	})
	mu.Lock()
	defer mu.Unlock()
	if calls < 3 {
		t.Fatalf("%d attempts: the jobs went in fewer than two batches after the failure; the test proves nothing", calls)
	}
	if !slices.IsSorted(sent) {
		t.Fatalf("jobs handed on out of order after a failed batch: %v", sent)
	}
	if distinct := len(slices.Compact(slices.Clone(sent))); len(sent) != count || distinct != count {
		t.Fatalf("%d jobs handed on (%d distinct), want %d once each", len(sent), distinct, count)
	}
}

package node

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestOutboxHoldsOnlyTheFailedDevice: when a batch fails for the
// recipient's device, the next batch (sealed meanwhile) is held back from
// that device only. The sender's own other device, which took the failed
// batch, gets the next one at once: its session with this device is
// advanced by every other chat too, and positions held back for as long
// as a failure lasts would pile up there as skipped keys, past what the
// ratchet keeps.
func TestOutboxHoldsOnlyTheFailedDevice(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, _ := initHome(t, "alice")
	alice := startNode(t, aliceHome, relay.addr)
	if !ready(alice, 20*time.Second) {
		t.Fatal("alice never ready")
	}
	carol := newFakeDevice(t, relay, nil, "carol")
	carol.publish(t, nil, carol.cert)
	ctx := context.Background()
	if _, err := alice.AddContact(ctx, carol.acct.ID().String(), "carol"); err != nil {
		t.Fatal(err)
	}
	laptop := newFakeDevice(t, relay, alice.keys.account, "alice's laptop")
	laptop.publish(t, alice.keys.list, alice.keys.cert, laptop.cert)
	if got := laptop.send(t, alice, payload{Kind: "text", Text: "from the laptop", Chat: carol.acct.ID().String()}, newMessageID(t)); got != int(directOK) {
		t.Fatalf("laptop copy: answer %d", got)
	}
	if alice.keys.list.Version != 2 {
		t.Fatalf("alice holds list v%d, want 2 (with the laptop)", alice.keys.list.Version)
	}
	carolDev, laptopDev := carol.cert.Device.String(), laptop.cert.Device.String()

	type call struct {
		devs []string
		seqs []uint64
	}
	var (
		mu    sync.Mutex
		calls []call
	)
	fault := func(_ context.Context, a *attempt) bool {
		mu.Lock()
		defer mu.Unlock()
		var c call
		for _, j := range a.jobs {
			c.seqs = append(c.seqs, j.Seq)
		}
		for _, ds := range a.sends {
			c.devs = append(c.devs, ds.t.cert.Device.String())
		}
		calls = append(calls, c)
		if len(calls) > 1 {
			return false
		}
		// The first batch fails for Carol's device alone (slowly, so that
		// the next batch is sealed meanwhile); the laptop takes it.
		time.Sleep(300 * time.Millisecond)
		kept := a.sends[:0]
		for _, ds := range a.sends {
			if ds.t.cert.Device.String() != carolDev {
				kept = append(kept, ds)
				continue
			}
			for _, i := range ds.idx {
				a.errs[i] = errHeld // any error will do
			}
			a.failed[carolDev] = true
		}
		a.sends = kept
		return false
	}
	alice.sendFault.Store(&fault)

	const count = 12
	text := strings.Repeat("y", 40<<10)
	var wg sync.WaitGroup
	for i := range count {
		wg.Go(func() {
			if _, err := alice.Send(ctx, "carol", text+string(rune('a'+i))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	eventually(t, "Alice's outbox to drain", func() (bool, error) { return outboxLen(t, alice) == 0, nil })

	mu.Lock()
	defer mu.Unlock()
	if len(calls) < 3 || !slices.Contains(calls[0].devs, carolDev) || !slices.Contains(calls[0].devs, laptopDev) {
		t.Fatalf("attempts %+v: want a first batch for Carol and the laptop, then more", calls)
	}
	next := calls[1]
	if next.seqs[0] <= calls[0].seqs[len(calls[0].seqs)-1] {
		t.Fatalf("the attempt after the failure was a retry (%v), not the next batch: it was held back from every device", next.seqs)
	}
	if !slices.Contains(next.devs, laptopDev) || slices.Contains(next.devs, carolDev) {
		t.Fatalf("the batch after Carol's failure went to %v: want the laptop only", next.devs)
	}
}

package node

import (
	"context"
	"testing"
	"time"

	"github.com/peergram/peergram/relay/directory"
)

// TestDrainedPoolRefilled: fetches alone drain a device's one-time
// prekeys on its relay (the node's own count never moves); the node learns
// it from the relay's stock and publishes more. Keys handed out and never
// used are retired once no initial message can still use them.
func TestDrainedPoolRefilled(t *testing.T) {
	relay := startRelayWith(t, t.TempDir(), func(c *directory.Config) {
		c.OneTimePerPeer, c.OneTimePerDevice, c.FetchRate = directory.Unlimited, directory.Unlimited, directory.Unlimited
	})
	home, _ := initHome(t, "bob")
	bob := startNode(t, home, relay.addr)
	ctx := context.Background()
	drainer := newFakeDevice(t, relay, nil, "drainer")
	stock := func() int {
		x, _, err := bob.dir.Stock(ctx, relay.h.ID(), bob.keys.device.ID())
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	eventually(t, "bob's keys on the relay", func() (bool, error) {
		_, err := drainer.dir.Fetch(ctx, relay.h.ID(), bob.keys.account.ID())
		return err == nil, nil
	})
	for stock() >= refillBelow {
		if _, err := drainer.dir.Fetch(ctx, relay.h.ID(), bob.keys.account.ID()); err != nil {
			t.Fatal(err)
		}
	}
	localBefore, _ := bob.currentPrekeys().OneTimeLeft()
	if !bob.checkStock(ctx) {
		t.Fatal("a drained pool was not reported low")
	}
	bob.refillPrekeysIf(ctx, true)
	if got := stock(); got < refillBelow+initialOneTimePrekeys/2 {
		t.Fatalf("stock after the refill: %d", got)
	}
	// Two months on, the keys handed out to the drainer are retired.
	bob.setClock(retireHandedOut + time.Hour)
	bob.checkStock(ctx)
	localAfter, _ := bob.currentPrekeys().OneTimeLeft()
	handedOut := initialOneTimePrekeys - refillBelow + 1
	if want := localBefore + initialOneTimePrekeys - handedOut; localAfter > want {
		t.Fatalf("%d one-time prekeys kept, want at most %d (%d handed out long ago)", localAfter, want, handedOut)
	}
	if localAfter < initialOneTimePrekeys {
		t.Fatalf("only %d one-time prekeys left: keys still on the relay were retired", localAfter)
	}
}

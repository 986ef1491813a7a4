package node

import (
	"context"
	"fmt"
	"testing"

	"github.com/peergram/peergram/node/chat"
)

// TestOfflineGoesStraightToMailbox: once a direct attempt to an offline
// device failed, its next messages are deposited at once (not after a
// direct attempt each, which made every message to an offline contact wait
// out the direct timeout); when the device is back and connects, direct
// delivery resumes.
func TestOfflineGoesStraightToMailbox(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	bob.stop()
	ctx := context.Background()
	const n = 30
	for i := range n {
		if _, err := alice.Send(ctx, "bob", fmt.Sprintf("while away %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every message deposited", func() (bool, error) {
		for _, st := range statusOf(t, alice, "bob") {
			if st == chat.StatusPending {
				return false, nil
			}
		}
		return true, nil
	})
	if got := alice.directAttempts.Load(); got > 2 {
		t.Fatalf("%d direct attempts for %d messages to an offline device", got, n)
	}
	bob = startNode(t, bobHome, relay.addr)
	eventually(t, "Bob gets them all", func() (bool, error) { return len(texts(t, bob, "alice")) == n, nil })
	// Bob's receipts connect him to Alice (directly or through the
	// relay): she writes directly again.
	before := alice.sentDirect.Load()
	eventually(t, "direct delivery again", func() (bool, error) {
		if _, err := alice.Send(ctx, "bob", "welcome back"); err != nil {
			return false, err
		}
		return alice.sentDirect.Load() > before, nil
	})
}

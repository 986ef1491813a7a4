package node

import (
	"context"
	"testing"
	"time"
)

// TestSendAnsweredAfterSync: a send's group is committed without waiting
// for the store's sync, but its sender is answered only after a sync that
// began after the commit ("exits 0 once stored" means kept on disk).
func TestSendAnsweredAfterSync(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	bob.stop() // nothing comes back to wake Alice's store meanwhile

	// Wait until Alice's store is idle: no sync for 300 ms.
	last, quiet := alice.db.Syncs(), time.Now()
	for deadline := time.Now().Add(20 * time.Second); time.Since(quiet) < 300*time.Millisecond; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Alice's store never went idle")
		}
		if s := alice.db.Syncs(); s != last {
			last, quiet = s, time.Now()
		}
	}
	for i := range 5 {
		before := alice.db.Syncs()
		if _, err := alice.Send(context.Background(), bobInfo.AccountID, "kept before the answer"); err != nil {
			t.Fatal(err)
		}
		if after := alice.db.Syncs(); after <= before {
			t.Fatalf("send %d answered with no sync since it was posted (%d syncs before, %d after)", i, before, after)
		}
		// Let the outbox's own syncs for this message pass.
		time.Sleep(300 * time.Millisecond)
	}
}

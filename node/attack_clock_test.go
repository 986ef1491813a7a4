package node

import (
	"testing"
	"time"
)

// TestAttackFutureIssuedSticks: a device whose clock once ran a week ahead
// re-signs its list with Issued in the future; every contact (clock right)
// refuses that list as "issued in the future" (CheckFresh). Once the clock
// is fixed the node does not repair it: maintainOwnList signs with
// max(now, list.Issued) and only when now-Issued >= ListRefresh, so the
// account stays unreachable — nobody can add it or send to it — until real
// time catches up with the bad Issued. Worse, its directory record (also
// issued in the future) makes every publish fail as a rollback, and
// keepRelay, which treats a failed publish as a lost relay, never
// subscribes to the mailbox: the node receives nothing through its relay.
func TestAttackFutureIssuedSticks(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, _ := initHome(t, "bob")
	alice := startNodeWith(t, aliceHome, func(c *Config) {
		c.Now = func() time.Time { return time.Now().Add(8 * 24 * time.Hour) }
	}, relay.addr)
	if !ready(alice, 10*time.Second) {
		t.Logf("alice (clock ahead) not ready: %v", alice.publish(t.Context(), relay.h.ID()))
	}
	alice.stop()
	alice = startNode(t, aliceHome, relay.addr) // clock fixed
	if !ready(alice, 10*time.Second) {
		t.Errorf("with its clock fixed, Alice's node never subscribes to its mailbox (publish: %v)", alice.publish(t.Context(), relay.h.ID()))
	}
	bob := startNode(t, bobHome, relay.addr)
	c, err := bob.AddContact(t.Context(), aliceInfo.AccountID, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if c.Devices != 1 {
		_, err := bob.refreshContact(t.Context(), alice.keys.account.ID())
		t.Fatalf("Alice's clock is right again, yet Bob cannot use her keys: %v", err)
	}
}

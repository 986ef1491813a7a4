package node

import (
	"slices"
	"testing"
	"time"
)

// TestAttackListGapAfterSilence: a contact whose device list moved two
// versions since the node last checked it can never be heard again. Every
// running node re-signs its list each identity.ListRefresh (7 days), so
// two contacts who do not write to each other for two weeks hit this with
// no attacker at all: the receiver asks the directory, gets a list two
// versions ahead (ErrGap), and fetchHistory always fails (no directory
// keeps history), so every envelope of the contact is refused as a
// transient error, forever. (Sending to the contact keeps using the old
// list until it expires after identity.MaxListAge, then fails too.)
func TestAttackListGapAfterSilence(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	bobHome, _ := initHome(t, "bob")
	bob := startNode(t, bobHome, relay.addr)
	alice := newFakeDevice(t, relay, nil, "alice")
	v1 := alice.publish(t, nil, alice.cert)
	aliceID := alice.acct.ID().String()

	if got := alice.send(t, bob, payload{Kind: "text", Text: "before the silence"}, newMessageID(t)); got != int(directOK) {
		t.Fatalf("first message: answer %d", got)
	}
	// Two weekly re-signs of the same device set, as Alice's own node
	// does (maintainOwnList) while Bob hears nothing from her.
	v2 := alice.publish(t, v1, alice.cert)
	alice.publish(t, v2, alice.cert)
	bob.setClock(15 * 24 * time.Hour)

	got := alice.send(t, bob, payload{Kind: "text", Text: "after two weeks"}, newMessageID(t))
	if got != int(directOK) {
		t.Errorf("message after two list re-signs: answer %d, want %d (ok)", got, directOK)
	}
	want := []string{"before the silence", "after two weeks"}
	if have := texts(t, bob, aliceID); !slices.Equal(have, want) {
		t.Fatalf("Bob's chat with Alice: %q, want %q", have, want)
	}
}

// TestAttackListGapRealNodes is TestAttackListGapAfterSilence with two
// real nodes and nothing but the passing of time: Alice's node re-signs
// its list at start when it is a week old; after two such weeks Bob no
// longer accepts anything from her.
func TestAttackListGapRealNodes(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := t.Context()
	if _, err := alice.Send(ctx, "bob", "week 0"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bob receives week 0", func() (bool, error) {
		return slices.Contains(texts(t, bob, "alice"), "week 0"), nil
	})
	// Alice's node runs on through two weeks (restarted here with a clock
	// 8 and then 15 days ahead, so maintainOwnList re-signs twice and
	// keepRelay publishes each version).
	for i, days := range []int{8, 15} {
		alice.stop()
		d := time.Duration(days) * 24 * time.Hour
		alice = startNodeWith(t, aliceHome, func(c *Config) {
			c.Now = func() time.Time { return time.Now().Add(d) }
		}, relay.addr)
		want := uint64(2 + i)
		eventually(t, "alice's list re-signed and republished", func() (bool, error) {
			res, err := alice.dir.Fetch(ctx, relay.h.ID(), alice.keys.account.ID())
			return err == nil && res.List.Version == want, err
		})
	}
	bob.setClock(15 * 24 * time.Hour)
	if _, err := alice.Send(ctx, "bob", "week 2"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && !slices.Contains(texts(t, bob, "alice"), "week 2") {
		time.Sleep(100 * time.Millisecond)
	}
	if !slices.Contains(texts(t, bob, "alice"), "week 2") {
		_, err := bob.refreshContact(ctx, alice.keys.account.ID())
		t.Fatalf("Bob never got Alice's message after two weeks of silence: chat %q (Bob's refresh of Alice: %v)", texts(t, bob, "alice"), err)
	}
}

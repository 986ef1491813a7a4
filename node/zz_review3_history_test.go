package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/peergram/peergram/calls"
	"github.com/peergram/peergram/crypto/identity"
)

// TestReview3HistoryWipe: a contact sends ~1,300 opening offers dated 2
// minutes ahead (the most the engine accepts). Each is a busy call kept
// in Bob's history; pruning keeps the newest by StartedAt, so Bob's real
// call history (here a call with Alice he declined) is deleted, and the
// list shows only the spam.
func TestReview3HistoryWipe(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNodeWith(t, aliceHome, callNode, relay.addr)
	bob := startNodeWith(t, bobHome, callNode, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()

	// A real call, in Bob's history.
	c, err := alice.StartCall(ctx, "bob", calls.Media{})
	if err != nil {
		t.Fatal(err)
	}
	waitCall(t, bob, c.ID, calls.StateRinging)
	if err := bob.DeclineCall(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	waitCall(t, bob, c.ID, calls.StateDeclined)

	// The spam, as the contact's device would send it (what the apply of
	// a "call" payload hands to takeCallSignal).
	acct, err := identity.ParseAccountID(aliceInfo.AccountID)
	if err != nil {
		t.Fatal(err)
	}
	dev := alice.keys.device.ID()
	sdp := "v=0\r\na=fingerprint:sha-256 AA:BB\r\n"
	for i := 0; i < 1300; i++ {
		var id [16]byte
		rand.Read(id[:])
		s := calls.Signal{Call: hex.EncodeToString(id[:]), Type: calls.SignalOffer, SDP: sdp, At: time.Now().Add(110 * time.Second).UnixMilli()}
		raw, err := s.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		bob.takeCallSignal(acct, dev, raw)
		if i%50 == 49 {
			time.Sleep(500 * time.Millisecond) // the queue holds 256
		}
	}
	time.Sleep(3 * time.Second)
	list, err := bob.Calls(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, x := range list {
		found = found || x.ID == c.ID
	}
	_, gerr := bob.Call(ctx, c.ID)
	t.Logf("Bob's list: %d calls, the real one listed %v; Call(real): %v", len(list), found, gerr)
	if !found || gerr != nil {
		t.Fatalf("ATTACK WORKS: offers dated 2 minutes ahead pushed the real call out of Bob's history (listed %v, stored: %v)", found, gerr)
	}
}

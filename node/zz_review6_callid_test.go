package node

import (
	"context"
	"testing"
	"time"

	"github.com/peergram/peergram/calls"
)

// TestReview6CallIDCollidesWithMessage: a contact (Alice) opens a call whose
// ID is the ID of a chat message (hers or one of Bob's: she knows both),
// dated long ago. Bob's chat then lists two entries with one ID: the call
// entry (sorted at the old date) and the message. GET
// /v1/chats/{c}/messages?before=ID&limit=N pages from the FIRST entry with
// that ID, so a client paging back from the message skips everything
// between the two; the web client, which drops entries whose ID it has,
// hides one of them.
func TestReview6CallIDCollidesWithMessage(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNodeWith(t, aliceHome, callNode, relay.addr)
	bob := startNodeWith(t, bobHome, callNode, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	m, err := bob.Send(ctx, "alice", "Bob's message Alice will shadow")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "alice has Bob's message", func() (bool, error) {
		ms, err := alice.Messages(ctx, "bob", false)
		for _, x := range ms {
			if x.ID == m.ID {
				return true, nil
			}
		}
		return false, err
	})
	// Alice's daemon, modified: an offer with the message's ID as call ID,
	// dated a year ago (a missed call at Bob, placed first in the chat).
	sig := calls.Signal{Call: m.ID, Type: calls.SignalOffer, SDP: "v=0\r\na=fingerprint:sha-256 AA:BB\r\n",
		At: time.Now().Add(-365 * 24 * time.Hour).UnixMilli()}
	if err := (callSignaller{alice.Node}).Signal(ctx, bobInfo.AccountID, sig); err != nil {
		t.Fatal(err)
	}
	// Once Bob's daemon has the call (missed at once), his chat lists the
	// ID once.
	eventually(t, "the call at Bob", func() (bool, error) {
		cs, err := bob.Calls(ctx)
		for _, c := range cs {
			if c.ID == m.ID {
				return true, nil
			}
		}
		return false, err
	})
	ms, err := bob.Messages(ctx, "alice", false)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, x := range ms {
		if x.ID == m.ID {
			n++
		}
	}
	if n > 1 {
		t.Errorf("ATTACK WORKS: Bob's chat lists %d entries with the ID of his message %s (a call entry of Alice's choosing among them): paging by before= and the web client's dedup by ID go wrong", n, m.ID)
	}
}

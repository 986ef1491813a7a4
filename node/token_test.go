package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/mailbox"
)

// TestContactsBeatStrangerFlood: a stranger fills the part of Bob's
// mailbox open to deposits without a delivery token while Bob is offline;
// Alice, a contact who got Bob's token inside their session, still
// deposits everything, and Bob gets it all when he is back. Without
// tokens her messages were refused with the stranger's.
func TestContactsBeatStrangerFlood(t *testing.T) {
	relay := startRelayConfig(t, t.TempDir(), nil, func(c *mailbox.Config) {
		c.MaxMailboxEnvelopes = 40
		c.StrangerPercent = 10 // 4 envelopes without a token
	})
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	if _, err := bob.Send(ctx, "alice", "here is my token, inside"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Alice to hold Bob's delivery token", func() (bool, error) {
		c, err := alice.knownAccount(bob.keys.account.ID())
		return err == nil && c != nil && c.Devices[bob.keys.device.ID().String()].Token != "", err
	})
	bobDev := bob.keys.device.ID()
	bob.stop()

	stranger := newFakeDevice(t, relay, nil, "stranger")
	mbox := mailbox.NewClient(stranger.h, nil)
	defer mbox.Close()
	refused := 0
	for i := range 10 {
		junk := make([]byte, 300)
		rand.Read(junk)
		var id mailbox.EnvelopeID
		rand.Read(id[:])
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := mbox.Deposit(dctx, relay.h.ID(), mailbox.Address(bobDev), id, junk)
		cancel()
		switch {
		case errors.Is(err, mailbox.ErrStrangerQuota) || errors.Is(err, mailbox.ErrRateLimited):
			refused++
		case err != nil:
			t.Fatalf("stranger deposit %d: %v", i, err)
		}
	}
	if refused == 0 {
		t.Fatal("the stranger filled Bob's mailbox without limit")
	}
	var want []string
	for i := range 10 {
		text := fmt.Sprintf("contact message %d", i)
		want = append(want, text)
		if _, err := alice.Send(ctx, "bob", text); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "Alice's messages deposited despite the flood", func() (bool, error) {
		for text, st := range statusOf(t, alice, "bob") {
			if text != "here is my token, inside" && st == chat.StatusPending {
				return false, nil
			}
		}
		return true, nil
	})
	bob = startNode(t, bobHome, relay.addr)
	eventually(t, "Bob gets every contact message", func() (bool, error) {
		got := texts(t, bob, "alice")
		for _, w := range want {
			found := false
			for _, g := range got {
				found = found || g == w
			}
			if !found {
				return false, nil
			}
		}
		return true, nil
	})
}

package node

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/sealed"
	"github.com/peergram/peergram/relay/mailbox"
)

// TestReview9ReplayAfterRingShrink: the session's ring of seen IDs now
// holds 256. A message ID sent again (sealed afresh, so the ratchet takes
// it) after more than 256 newer messages, or its original envelope
// replayed, must not be stored a second time, neither directly nor
// through the mailbox's batch path.
func TestReview9ReplayAfterRingShrink(t *testing.T) {
	relay := startRelayConfig(t, t.TempDir(), nil, func(c *mailbox.Config) {
		c.StrangerPercent = 100
		many := mailbox.Budget{Envelopes: 1 << 20, Bytes: 1 << 30, Window: time.Hour}
		c.StrangerBudgets = mailbox.Budgets{Peer: many, IP: many}
	})
	bobHome, _ := initHome(t, "bob")
	bob := startNode(t, bobHome, relay.addr)
	alice := newFakeDevice(t, relay, nil, "alice")
	alice.publish(t, nil, alice.cert)
	from := alice.acct.ID().String()
	text := func(s string, i int) payload { return payload{Kind: "text", Text: s, Seq: uint64(i)} }

	idX := newMessageID(t)
	orig := alice.seal(t, bob, text("X-orig", 1), idX)
	if got := sendRaw(t, alice, bob, orig); got != int(directOK) {
		t.Fatalf("first message: answer %d", got)
	}
	const newer = sealed.MaxSeenIDs + 50
	for i := range newer {
		if got := alice.send(t, bob, text(fmt.Sprintf("n%04d", i), i+2), newMessageID(t)); got != int(directOK) {
			t.Fatalf("message %d: answer %d", i, got)
		}
	}
	// Directly: the same ID sealed again, and the original envelope.
	alice.send(t, bob, text("X-reseal-direct", newer+2), idX)
	sendRaw(t, alice, bob, orig)
	countX := func() int {
		c := 0
		for _, s := range texts(t, bob, from) {
			if strings.HasPrefix(s, "X-") {
				c++
			}
		}
		return c
	}
	if c := countX(); c != 1 {
		t.Fatalf("direct: message ID X stored %d times after %d newer messages", c, newer)
	}

	// Through the mailbox (receiveBatch): more newer ones, then X again.
	bob.stop()
	var envs [][]byte
	for i := range 20 {
		envs = append(envs, alice.seal(t, bob, text(fmt.Sprintf("m%04d", i), newer+3+i), newMessageID(t)))
	}
	envs = append(envs, alice.seal(t, bob, text("X-reseal-batch", newer+30), idX), orig,
		alice.seal(t, bob, text("last", newer+31), newMessageID(t)))
	items := make([]mailbox.Item, len(envs))
	for i, env := range envs {
		items[i] = mailbox.Item{To: mailbox.Address(bob.keys.device.ID()), Envelope: env}
		sum := sha256.Sum256(env)
		copy(items[i].ID[:], sum[:])
	}
	mbox := mailbox.NewClient(alice.h, nil)
	defer mbox.Close()
	dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	for i, err := range mbox.DepositAll(dctx, relay.h.ID(), items) {
		if err != nil {
			t.Fatalf("deposit %d: %v", i, err)
		}
	}
	cancel()
	bob = startNode(t, bobHome, relay.addr)
	eventually(t, "the last message", func() (bool, error) {
		got := texts(t, bob, from)
		return len(got) > 0 && got[len(got)-1] == "last", nil
	})
	time.Sleep(500 * time.Millisecond)
	if c := countX(); c != 1 {
		t.Fatalf("mailbox: message ID X stored %d times", c)
	}
	if got, want := len(texts(t, bob, from)), 1+newer+20+1; got != want {
		t.Fatalf("Bob holds %d messages, want %d", got, want)
	}
}

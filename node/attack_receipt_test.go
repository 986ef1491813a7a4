package node

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"testing"

	"github.com/peergram/peergram/node/chat"
)

// TestReceiptNamesOnlyOutgoing is the attack of a contact who sends a
// receipt naming a message it sent itself (incoming at the victim, so
// "received"): it does not move. Only the victim's own messages to that
// contact move on its receipts (a receipt is looked up in the chat with
// its sender, so messages of other chats are out of its reach).
func TestReceiptNamesOnlyOutgoing(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, _ := initHome(t, "alice")
	alice := startNode(t, aliceHome, relay.addr)
	bob := newFakeDevice(t, relay, nil, "bob")
	bob.publish(t, nil, bob.cert)
	ctx := context.Background()
	if _, err := alice.AddContact(ctx, bob.acct.ID().String(), "bob"); err != nil {
		t.Fatal(err)
	}
	in := newMessageID(t)
	if got := bob.send(t, alice, payload{Kind: "text", Text: "from bob", Seq: 1}, in); got != int(directOK) {
		t.Fatalf("Bob's message: answer %d", got)
	}
	bob.receive(t) // Alice's delivered receipt
	if _, err := alice.Send(ctx, "bob", "from alice"); err != nil {
		t.Fatal(err)
	}
	var out string
	for out == "" {
		m := bob.receive(t)
		var p payload
		if err := json.Unmarshal(m.Body, &p); err != nil {
			t.Fatal(err)
		}
		if p.Kind == "text" {
			out = hex.EncodeToString(m.ID[:])
		}
	}
	// One receipt names both: Bob's own message and Alice's.
	bob.send(t, alice, payload{Kind: "receipt", Status: string(chat.StatusRead), IDs: []string{hex.EncodeToString(in[:]), out}}, newMessageID(t))
	eventually(t, "Alice's message read", func() (bool, error) {
		return statusOf(t, alice, "bob")["from alice"] == chat.StatusRead, nil
	})
	if st := statusOf(t, alice, "bob")["from bob"]; st != chat.StatusReceived {
		t.Fatalf("Bob's receipt moved his own message at Alice to %q", st)
	}
}

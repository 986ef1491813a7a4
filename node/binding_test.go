package node

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/sealed"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// outboxLen counts the node's outbox jobs.
func outboxLen(t *testing.T, n *testNode) int {
	t.Helper()
	var count int
	if err := n.db.View(func(tx *storage.Txn) (err error) {
		count, err = tx.Count(n.st.outbox, nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return count
}

// TestSenderMustBeListed: a device certified by an account (a valid
// certificate with proof of possession) but not on the account's published
// list — never added, or removed since — cannot speak for the account.
// Before the receiver checked the list, Bob stored such messages as
// Alice's.
func TestSenderMustBeListed(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	bobHome, _ := initHome(t, "bob")
	bob := startNode(t, bobHome, relay.addr)

	alice := newFakeDevice(t, relay, nil, "alice")
	listV1 := alice.publish(t, nil, alice.cert)
	aliceID := alice.acct.ID().String()

	// Control: Alice's listed device is heard.
	if got := alice.send(t, bob, payload{Kind: "text", Text: "from the listed device"}, newMessageID(t)); got != int(directOK) {
		t.Fatalf("listed device: answer %d", got)
	}
	// A second device certified by Alice's account but never listed.
	rogue := newFakeDevice(t, relay, alice.acct, "rogue")
	if got := rogue.send(t, bob, payload{Kind: "text", Text: "from an unlisted device"}, newMessageID(t)); got != int(directRejected) {
		t.Fatalf("unlisted device: answer %d, want rejected", got)
	}
	// Listed, it is heard; removed again, it is refused, also on the
	// session it already has, once Bob re-checks the list.
	listV2 := alice.publish(t, listV1, alice.cert, rogue.cert)
	rogue.publishBundle(t, listV2)
	rogue.out = map[identity.DeviceID]*sealed.Session{}
	if got := rogue.send(t, bob, payload{Kind: "text", Text: "from a newly listed device"}, newMessageID(t)); got != int(directOK) {
		t.Fatalf("newly listed device: answer %d", got)
	}
	// Bob writes to Alice: his node starts a session with each listed
	// device, so the second device now holds an established session with
	// Bob and sends plain message envelopes on it.
	ctx := context.Background()
	if _, err := bob.AddContact(ctx, aliceID, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Send(ctx, "alice", "hi both"); err != nil {
		t.Fatal(err)
	}
	if m := rogue.receive(t); m.Sender != bob.keys.account.ID() {
		t.Fatalf("second device got a message from %s", m.Sender)
	}
	if got := rogue.send(t, bob, payload{Kind: "text", Text: "on an established session"}, newMessageID(t)); got != int(directOK) {
		t.Fatalf("established session: answer %d", got)
	}
	alice.publish(t, listV2, alice.cert)
	// Let Bob's outbox drain first, so only the receive path can notice
	// the new list.
	eventually(t, "Bob's outbox to drain", func() (bool, error) { return outboxLen(t, bob) == 0, nil })
	bob.setClock(25 * time.Hour) // past listRecheck: the next envelope triggers a re-check
	if got := rogue.send(t, bob, payload{Kind: "text", Text: "from a removed device"}, newMessageID(t)); got != int(directRejected) {
		t.Fatalf("removed device: answer %d, want rejected", got)
	}
	var sessions int
	if err := bob.db.View(func(tx *storage.Txn) error {
		peers, err := bob.st.peerSessions(tx, alice.acct.ID())
		for _, p := range peers {
			if p.device == rogue.dev.ID() {
				sessions++
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if sessions != 0 {
		t.Fatal("Bob kept his session with the removed device")
	}
	want := []string{"from the listed device", "from a newly listed device", "on an established session"}
	if got := texts(t, bob, aliceID); !slices.Equal(without(got, "hi both"), want) {
		t.Fatalf("Bob's chat with Alice: %q, want %q", got, want)
	}
	if got := alice.send(t, bob, payload{Kind: "text", Text: "still heard"}, newMessageID(t)); got != int(directOK) {
		t.Fatalf("listed device after the removal: answer %d", got)
	}
}

// TestOwnCopyFromUnlistedDevice: an "outgoing copy" (a message of the
// node's own account, for a chat of its own) from a device certified by
// the account but not on its list is refused: the account key alone must
// not let a stolen key inject history.
func TestOwnCopyFromUnlistedDevice(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	bobHome, _ := initHome(t, "bob")
	bob := startNode(t, bobHome, relay.addr)
	carol := newFakeDevice(t, relay, nil, "carol")
	carol.publish(t, nil, carol.cert)

	rogue := newFakeDevice(t, relay, bob.keys.account, "rogue")
	p := payload{Kind: "text", Text: "injected history", Chat: carol.acct.ID().String()}
	if got := rogue.send(t, bob, p, newMessageID(t)); got != int(directRejected) {
		t.Fatalf("outgoing copy from an unlisted own device: answer %d, want rejected", got)
	}
	if got := texts(t, bob, carol.acct.ID().String()); len(got) != 0 {
		t.Fatalf("Bob stored %q", got)
	}
}

// TestDedupBySender: a message ID is unique per sender only. Mallory
// reusing the ID of Alice's message (she may have learned it as a group
// member or from a forward) must not make Bob drop Alice's message.
func TestDedupBySender(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	bobHome, _ := initHome(t, "bob")
	bob := startNode(t, bobHome, relay.addr)
	alice := newFakeDevice(t, relay, nil, "alice")
	alice.publish(t, nil, alice.cert)
	mallory := newFakeDevice(t, relay, nil, "mallory")
	mallory.publish(t, nil, mallory.cert)

	id := newMessageID(t)
	if got := mallory.send(t, bob, payload{Kind: "text", Text: "first with this ID"}, id); got != int(directOK) {
		t.Fatalf("mallory: answer %d", got)
	}
	if got := alice.send(t, bob, payload{Kind: "text", Text: "alice's message"}, id); got != int(directOK) {
		t.Fatalf("alice: answer %d", got)
	}
	if got := texts(t, bob, alice.acct.ID().String()); !slices.Equal(got, []string{"alice's message"}) {
		t.Fatalf("Bob's chat with Alice: %q", got)
	}
	// The same sender repeating an ID is still a duplicate.
	if got := alice.send(t, bob, payload{Kind: "text", Text: "alice again, same ID"}, id); got != int(directOK) {
		t.Fatalf("alice repeat: answer %d", got)
	}
	if got := texts(t, bob, alice.acct.ID().String()); len(got) != 1 {
		t.Fatalf("a repeated (sender, ID) was stored twice: %q", got)
	}
}

// TestMessageRequests: a stranger's messages wait as a request: no
// receipts, not in the contact list, shown with the stranger's own name;
// accepting sends the delivered receipts; ignoring drops what follows.
func TestMessageRequests(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	bobHome, _ := initHome(t, "bob")
	bob := startNode(t, bobHome, relay.addr)
	ctx := context.Background()
	stranger := newFakeDevice(t, relay, nil, "Stranger Danger")
	stranger.publish(t, nil, stranger.cert)
	sid := stranger.acct.ID().String()
	if got := stranger.send(t, bob, payload{Kind: "text", Text: "hi, buy my coin"}, newMessageID(t)); got != int(directOK) {
		t.Fatalf("answer %d", got)
	}
	reqs, err := bob.Requests(ctx)
	if err != nil || len(reqs) != 1 || reqs[0].AccountID != sid || reqs[0].Display != "Stranger Danger" {
		t.Fatalf("requests: %+v, %v", reqs, err)
	}
	if cs, _ := bob.Contacts(ctx); len(cs) != 0 {
		t.Fatalf("a stranger became a contact: %+v", cs)
	}
	msgs, err := bob.Messages(ctx, sid, true)
	if err != nil || len(msgs) != 1 || msgs[0].FromName != "Stranger Danger" || msgs[0].FromContact {
		t.Fatalf("messages: %+v, %v", msgs, err)
	}
	// Nothing goes back to a stranger: no job, nothing sent (given time
	// to show up if it were).
	time.Sleep(500 * time.Millisecond)
	if n, sent := outboxLen(t, bob), bob.sentDirect.Load()+bob.sentMailbox.Load(); n != 0 || sent != 0 {
		t.Fatalf("%d receipts queued and %d envelopes sent to a stranger", n, sent)
	}
	if err := bob.IgnoreRequest(ctx, sid); err != nil {
		t.Fatal(err)
	}
	if got := stranger.send(t, bob, payload{Kind: "text", Text: "hello??"}, newMessageID(t)); got != int(directOK) {
		t.Fatalf("answer %d", got)
	}
	if got := texts(t, bob, sid); len(got) != 1 {
		t.Fatalf("ignored account's message stored: %q", got)
	}
	c, err := bob.AddContact(ctx, sid, "")
	if err != nil || c.Name != "Stranger Danger" {
		t.Fatalf("accept: %+v, %v", c, err)
	}
	eventually(t, "a delivered receipt after accepting the request", func() (bool, error) {
		return outboxLen(t, bob) > 0 || bob.sentDirect.Load()+bob.sentMailbox.Load() > 0, nil
	})
	msgs, _ = bob.Messages(ctx, sid, false)
	if len(msgs) != 1 || !msgs[0].FromContact || msgs[0].Status != chat.StatusSeen {
		t.Fatalf("after accepting: %+v", msgs)
	}
}

func without(list []string, s string) []string {
	return slices.DeleteFunc(slices.Clone(list), func(x string) bool { return x == s })
}

// TestDefaultAlias: without a name, a contact's alias is the name it gives
// itself, made unique among the contacts; adding it again under another
// name is refused (rename it instead).
func TestDefaultAlias(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, _ := initHome(t, "alice")
	alice := startNode(t, aliceHome, relay.addr)
	ctx := context.Background()
	var ids []string
	for range 3 {
		b := newFakeDevice(t, relay, nil, "Bob")
		b.publish(t, nil, b.cert)
		ids = append(ids, b.acct.ID().String())
	}
	for i, want := range []string{"Bob", "Bob (2)", "Bob (3)"} {
		c, err := alice.AddContact(ctx, ids[i], "")
		if err != nil || c.Name != want || c.Display != "Bob" {
			t.Fatalf("contact %d: %+v, %v; want alias %q", i, c, err, want)
		}
	}
	if _, err := alice.AddContact(ctx, ids[0], "Robert"); !errors.Is(err, chat.ErrExists) {
		t.Fatalf("re-add under another name: %v, want ErrExists", err)
	}
	if c, err := alice.AddContact(ctx, ids[0], ""); err != nil || c.Name != "Bob" {
		t.Fatalf("re-add without a name: %+v, %v", c, err)
	}
	if _, err := alice.RenameContact(ctx, "Bob (2)", "Bob"); !errors.Is(err, chat.ErrExists) {
		t.Fatalf("rename onto another contact's alias: %v, want ErrExists", err)
	}
	if err := alice.RemoveContact(ctx, "Bob"); err != nil {
		t.Fatal(err)
	}
	if c, err := alice.RenameContact(ctx, "Bob (2)", "Bob"); err != nil || c.Name != "Bob" {
		t.Fatalf("rename onto a freed alias: %+v, %v", c, err)
	}
	if cs, _ := alice.Contacts(ctx); len(cs) != 2 {
		t.Fatalf("contacts after removing one: %+v", cs)
	}
}

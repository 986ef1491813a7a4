package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/relay/mailbox"
)

// ready waits up to d for the node's first relay to be ready (keys
// published and mailbox subscribed).
func ready(n *testNode, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if n.relayState[0].ready() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// TestAttackOwnListAdvancedElsewhereLocksMailbox: when another device of
// the account (here a device the account added, holding the account key
// as every device does) publishes the next version of the account's list,
// this node, on its next start, publishes its own older list, the
// directory refuses it (ErrRollback), and keepRelay treats that as a lost
// relay: it never reserves a circuit or subscribes to its mailbox again.
// Nothing re-fetches the own list before publishing (refreshOwnList runs
// only when an envelope arrives from an own device — which now cannot
// arrive through the mailbox).
func TestAttackOwnListAdvancedElsewhereLocksMailbox(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	bobHome, _ := initHome(t, "bob")
	bob := startNode(t, bobHome, relay.addr)
	if !ready(bob, 20*time.Second) {
		t.Fatal("bob never ready")
	}
	laptop := newFakeDevice(t, relay, bob.keys.account, "bob's laptop")
	laptop.publish(t, bob.keys.list, bob.keys.cert, laptop.cert) // v2, from the other device
	bob.stop()
	bob = startNode(t, bobHome, relay.addr)
	if !ready(bob, 10*time.Second) {
		err := bob.publish(context.Background(), relay.h.ID())
		t.Fatalf("after another device published v2 of the list, Bob's node never subscribes to its mailbox again (publish: %v)", err)
	}
}

// TestAttackOwnListResignForks: maintainOwnList re-signs the list it holds
// when it is a week old, without asking the directory first. If another
// device of the account published a newer version meanwhile, the re-signed
// list is a fork of it: the directory refuses it forever (ErrFork), and so
// does refreshOwnList, so the node never publishes keys again and never
// learns the account's real list.
func TestAttackOwnListResignForks(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	bobHome, _ := initHome(t, "bob")
	bob := startNode(t, bobHome, relay.addr)
	if !ready(bob, 20*time.Second) {
		t.Fatal("bob never ready")
	}
	laptop := newFakeDevice(t, relay, bob.keys.account, "bob's laptop")
	laptop.publish(t, bob.keys.list, bob.keys.cert, laptop.cert) // v2, from the other device

	bob.setClock(8 * 24 * time.Hour) // the hourly maintenance now re-signs
	if _, err := bob.maintainOwnList(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := bob.publish(ctx, relay.h.ID()); err != nil {
		t.Errorf("publish after the weekly re-sign: %v", err)
	}
	if _, err := bob.refreshOwnList(ctx); err != nil {
		if errors.Is(err, identity.ErrFork) {
			t.Fatalf("Bob's node forked its own account's list: %v", err)
		}
		t.Fatal(err)
	}
}

// TestAttackRemovedOwnDeviceKeepsCopies: targets() seals a copy of every
// outgoing message to each device on the node's own list as it holds it,
// and nothing re-checks that list before sealing (refreshOwnList runs only
// when an envelope arrives from an own device). A device the account
// removed — say a stolen laptop, removed from the phone — keeps receiving
// a copy of everything this node sends, days later.
func TestAttackRemovedOwnDeviceKeepsCopies(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	bobHome, _ := initHome(t, "bob")
	bob := startNode(t, bobHome, relay.addr)
	if !ready(bob, 20*time.Second) {
		t.Fatal("bob never ready")
	}
	carol := newFakeDevice(t, relay, nil, "carol")
	carol.publish(t, nil, carol.cert)
	ctx := context.Background()
	if _, err := bob.AddContact(ctx, carol.acct.ID().String(), "carol"); err != nil {
		t.Fatal(err)
	}
	laptop := newFakeDevice(t, relay, bob.keys.account, "bob's laptop")
	v2 := laptop.publish(t, bob.keys.list, bob.keys.cert, laptop.cert)
	// Bob's node hears from the laptop once and so learns v2.
	if got := laptop.send(t, bob, payload{Kind: "text", Text: "sent from the laptop", Chat: carol.acct.ID().String()}, newMessageID(t)); got != int(directOK) {
		t.Fatalf("laptop copy: answer %d", got)
	}
	if bob.keys.list.Version != 2 {
		t.Fatalf("bob holds v%d", bob.keys.list.Version)
	}
	// The laptop is stolen; Bob removes it from his phone (v3).
	laptop.publishList(t, v2, bob.keys.cert)
	bob.setClock(3 * 24 * time.Hour)
	if _, err := bob.Send(ctx, "carol", "secret plans"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob's outbox to drain", func() (bool, error) { return outboxLen(t, bob) == 0, nil })
	if n, _, err := relay.mbox.Stats(mailboxAddr(laptop.dev.ID())); err != nil || n != 0 {
		t.Fatalf("Bob's node deposited %d envelope(s) for the laptop removed from his list 3 days earlier (%v)", n, err)
	}
}

func mailboxAddr(d identity.DeviceID) mailbox.Address { return mailbox.Address(d) }

package node

import (
	"context"
	"encoding/hex"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/relay/history"
	"github.com/peergram/peergram/storage"
)

// r19LinkFixture: Alice's group (small: the non-staged keeping path),
// an invite link to it, Bob joined by it and then out of it again (out
// says how: leave or removal). Both nodes share one relay, which holds
// the log up to Bob's going.
func r19LinkFixture(t *testing.T, out string) (alice, bob *testNode, id groupstate.GroupID, link string, relay *testRelay) {
	t.Helper()
	relay = startRelay(t, t.TempDir())
	aliceHome, _ := initHome(t, "alice")
	bobHome, _ := initHome(t, "bob")
	alice = startNode(t, aliceHome, relay.addr)
	bob = startNode(t, bobHome, relay.addr)
	ctx := context.Background()
	id = r12NewGroup(t, alice, "rejoin")
	inv, err := alice.CreateInvite(ctx, hex.EncodeToString(id[:]), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r19AwaitRelay(t, bob, relay, id, alice.reloadGroup(t, id).Head())
	if g, err := bob.JoinGroup(ctx, inv.Link); err != nil || g.Role != "member" {
		t.Fatalf("Bob's first join by link: %v (%+v)", err, g)
	}
	bobJoin := bob.reloadGroup(t, id).Head()
	eventually(t, "Alice holding Bob's join", holdsEntry(alice, id, bobJoin))
	switch out {
	case "leave":
		if _, err := bob.LeaveGroup(ctx, hex.EncodeToString(id[:])); err != nil {
			t.Fatal(err)
		}
	case "removal":
		if _, err := alice.RemoveGroupMember(ctx, hex.EncodeToString(id[:]), bob.keys.account.ID().String()); err != nil {
			t.Fatal(err)
		}
		eventually(t, "Bob holding his removal", holdsEntry(bob, id, alice.reloadGroup(t, id).Head()))
	}
	head := bob.reloadGroup(t, id).Head()
	if bob.reloadGroup(t, id).State().Role(bob.keys.account.ID()) != groupstate.RoleNone {
		t.Fatalf("Bob still a member after his %s: the premise", out)
	}
	r19AwaitRelay(t, bob, relay, id, head)
	return alice, bob, id, inv.Link, relay
}

// r19AwaitRelay waits until the relay's log of id holds head.
func r19AwaitRelay(t *testing.T, n *testNode, relay *testRelay, id groupstate.GroupID, head *groupstate.Entry) {
	t.Helper()
	c := history.NewClient(n.host)
	eventually(t, "the relay holding the log's head", func() (bool, error) {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		entries, _, err := c.Log(fctx, relay.h.ID(), id)
		if err != nil || uint64(len(entries)) <= head.Seq {
			return false, nil
		}
		e, err := groupstate.Parse(entries[head.Seq])
		return err == nil && e.Hash() == head.Hash(), nil
	})
}

// TestReview19LinkRejoinAfterLeaveAndRemoval (held): the new membership
// check of a join by link (notMemberTx in the keeping transaction) does
// not block a user who left the group, nor one who was removed: the held
// log makes them no member, it is replaced, and they are members again.
func TestReview19LinkRejoinAfterLeaveAndRemoval(t *testing.T) {
	for _, out := range []string{"leave", "removal"} {
		t.Run(out, func(t *testing.T) {
			_, bob, id, link, _ := r19LinkFixture(t, out)
			g, err := bob.JoinGroup(context.Background(), link)
			if err != nil {
				t.Fatalf("Bob's rejoin by link after his %s: %v", out, err)
			}
			if g.Role != "member" || bob.reloadGroup(t, id).State().Role(bob.keys.account.ID()) == groupstate.RoleNone {
				t.Fatalf("Bob's rejoin after his %s: role %q", out, g.Role)
			}
			// And a second try now answers "already a member".
			if _, err := bob.JoinGroup(context.Background(), link); err == nil {
				t.Fatal("a join by link of a group Bob is a member of succeeded")
			}
		})
	}
}

// TestReview19LinkJoinWedgedByUnloadableLog (FINDING, low): a join by
// link used to replace whatever log of the group was held (the comment
// still says "a log of the group held from before — this account left
// it — is replaced whole"); since 64d0617 its keeping transaction first
// loads the held log (notMemberTx) and returns the load's error as is.
// A held log that does not load — here Bob's log of a group he left,
// with one entry left behind two past its head (a gap: what a staging
// whose unstage gave up after its conflicts leaves, or a damaged
// store) — now makes every join by link of that group fail, with an
// internal error ("stored log does not verify"), for good: nothing else
// repairs the log (applyWholeLog also returns the load error), and the
// link join was the way back in. Before the commit the same join
// cleared the log and joined.
//
// Fix: in notMemberTx (and clearSome's unlessMember check), treat a held
// log that does not load as not making this account a member (log it and
// let the join replace it, as JoinGroup's invitation path does: "a
// stored log replaced by an invitation's"); refuse only a log that loads
// and makes the account a member.
func TestReview19LinkJoinWedgedByUnloadableLog(t *testing.T) {
	alice, bob, id, link, _ := r19LinkFixture(t, "leave")
	held := bob.reloadGroup(t, id)
	// Two entries past Bob's head; only the second is stored.
	e1, _ := alice.r12Owner(t, held.Head(), groupstate.Change{Kind: groupstate.KindPin, Ref: [32]byte{0x19}})
	_, raw2 := alice.r12Owner(t, e1, groupstate.Change{Kind: groupstate.KindPin, Ref: [32]byte{0x19, 1}})
	bob.r12SetKey(t, groupEntryKey(id, held.Head().Seq+2), raw2)
	if _, err := bob.r12Replayed(id); err == nil {
		t.Fatal("Bob's stored log still loads: the premise")
	}
	var errs []error
	for range 2 {
		_, err := bob.JoinGroup(context.Background(), link)
		errs = append(errs, err)
		if err == nil {
			break
		}
	}
	if errs[len(errs)-1] != nil {
		t.Fatalf("Bob cannot rejoin by link a group whose held log (one he left) does not load: %v", errs)
	}
	var role groupstate.Role
	_ = bob.db.View(func(tx *storage.Txn) error {
		if l, err := bob.loadGroupTx(tx, id); err == nil {
			role = l.State().Role(bob.keys.account.ID())
		}
		return nil
	})
	if role == groupstate.RoleNone {
		t.Fatal("Bob's join succeeded but he is not a member")
	}
}

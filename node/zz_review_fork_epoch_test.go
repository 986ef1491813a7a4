package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// TestReviewForkEpochSurvivesRemoval: an epoch's base (the log length
// when drawn) is compared with the last removal of whatever branch the
// sealer holds now, not the branch the key was drawn on. Carol, a plain
// member, and Dave (her sybil, also a plain member) extend the log on a
// branch that only Bob (an honest admin) sees: Carol pins (L+1), Dave
// leaves (L+2). Bob's pass draws a key of base L+3, wrapped for Alice, Bob
// and Carol. Alice (the owner) concurrently removes Carol at L+1; her
// entry wins the fork (owner beats member) and drops Carol's branch. The
// key of base L+3 is still "fresh" (L+3 > L+1) and the greatest held:
// everyone seals under a key Carol has.
func TestReviewForkEpochSurvivesRemoval(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	names := []string{"alice", "bob", "carol", "dave"}
	infos := map[string]Info{}
	nodes := map[string]*testNode{}
	for _, name := range names {
		var home string
		home, infos[name] = initHome(t, name)
		nodes[name] = startNodeWith(t, home, epochLimit, relay.addr)
	}
	alice, bob, carol, dave := nodes["alice"], nodes["bob"], nodes["carol"], nodes["dave"]
	addEachOther(t, alice, bob, infos["alice"], infos["bob"])
	addEachOther(t, alice, carol, infos["alice"], infos["carol"])
	addEachOther(t, alice, dave, infos["alice"], infos["dave"])
	addEachOther(t, bob, carol, infos["bob"], infos["carol"])
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "big club")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob", "carol", "dave"}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SetGroupRole(ctx, g.ID, "bob", "admin"); err != nil {
		t.Fatal(err)
	}
	gid, _ := hex.DecodeString(g.ID)
	group := [32]byte(gid)
	var L uint64
	for _, n := range []*testNode{alice, bob, carol} {
		eventually(t, "the group with Bob an admin", func() (bool, error) {
			st := n.groupState(group)
			return st != nil && len(st.Members) == 4 && st.Role(bob.keys.account.ID()) == groupstate.RoleAdmin, nil
		})
		eventually(t, "topic peers", func() (bool, error) { return len(n.groups.net.Peers(group)) >= 2, nil })
		L = n.groupState(group).Seq
	}
	time.Sleep(1500 * time.Millisecond)
	if _, err := alice.SendGroup(ctx, g.ID, "hello"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a key at Carol", func() (bool, error) { return len(epochsHeld(t, carol, group)) >= 1, nil })

	// Carol's branch, handed to Bob only.
	var notify []identity.AccountID
	if err := carol.db.Update(func(tx *storage.Txn) error {
		l, err := carol.findGroup(tx, g.ID)
		if err != nil {
			return err
		}
		var ref [32]byte
		rand.Read(ref[:])
		now := time.Now().UnixMilli()
		pin, err := groupstate.Sign(carol.keys.device, carol.keys.cert, l.Head(), now, groupstate.Change{Kind: groupstate.KindPin, Ref: ref})
		if err != nil {
			return err
		}
		if _, err := l.Add(pin); err != nil {
			return err
		}
		leave, err := groupstate.Sign(dave.keys.device, dave.keys.cert, l.Head(), now, groupstate.Change{Kind: groupstate.KindLeave})
		if err != nil {
			return err
		}
		if _, err := l.Add(leave); err != nil {
			return err
		}
		for _, e := range []*groupstate.Entry{pin, leave} {
			raw, err := e.MarshalBinary()
			if err != nil {
				return err
			}
			if err := tx.Set(carol.st.groupLog, groupEntryKey(group, e.Seq), raw); err != nil {
				return err
			}
		}
		notify, err = carol.sendGroupLog(tx, l, []identity.AccountID{bob.keys.account.ID()}, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	carol.notify(notify...)
	eventually(t, "Carol's branch at Bob", func() (bool, error) {
		st := bob.groupState(group)
		return st != nil && st.Seq == L+2, nil
	})
	// Bob's pass draws a key of base L+3; Alice (and Carol) get copies.
	eventually(t, "Bob's key at Alice and Carol", func() (bool, error) {
		for _, n := range []*testNode{alice, carol} {
			if !slices.ContainsFunc(epochsHeld(t, n, group), func(e uint64) bool { return epochBase(e) == L+3 }) {
				return false, nil
			}
		}
		return true, nil
	})
	if st := alice.groupState(group); st.Seq != L {
		t.Fatalf("setup: Alice's log reached %d (want %d: she must not have Carol's branch)", st.Seq, L)
	}

	// Alice removes Carol at L+1: her entry wins the fork.
	if _, err := alice.RemoveGroupMember(ctx, g.ID, "carol"); err != nil {
		t.Fatal(err)
	}
	if st := alice.groupState(group); st.Seq != L+1 {
		t.Fatalf("setup: Alice's removal at %d, want %d", st.Seq, L+1)
	}
	eventually(t, "the fork resolved at Bob", func() (bool, error) {
		st := bob.groupState(group)
		return st != nil && st.Seq == L+1 && st.Role(carol.keys.account.ID()) == groupstate.RoleNone, nil
	})
	// Two more entries on Alice's branch: her log grows past the base of
	// Bob's key, which only the branch hash tells apart now.
	for _, role := range []string{"admin", "member"} {
		if _, err := alice.SetGroupRole(ctx, g.ID, "dave", role); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "Alice's branch at Bob", func() (bool, error) {
		st := bob.groupState(group)
		return st != nil && st.Seq == L+3, nil
	})
	time.Sleep(2 * time.Second) // Alice's and Bob's passes
	if _, err := alice.SendGroup(ctx, g.ID, "alice after removal"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob posts after the removal", func() (bool, error) {
		_, err := bob.SendGroup(ctx, g.ID, "bob after removal")
		if errors.Is(err, chat.ErrUnavailable) {
			return false, nil
		}
		return err == nil, err
	})
	carolHas := epochsHeld(t, carol, group)
	for name, n := range map[string]*testNode{"Alice": alice, "Bob": bob} {
		e, fresh := sealingEpoch(t, n, g.ID)
		if fresh && slices.Contains(carolHas, e) {
			t.Errorf("%s seals under epoch %x (base %d, removal at %d), which removed Carol holds", name, e, epochBase(e), L+1)
		}
	}
}

package node

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// TestInfoKeyForkSmallGroup: in a small group (info keys pairwise) the
// owner removes Dave while Bob, an admin offline, removes Carol: a fork,
// which the owner's branch wins. Bob's node turned a key KB on his
// branch and sends it, with his log, to the members he sees — Dave
// among them. Alice's node takes KB (Bob is an admin) but must not seal
// with it: a title Alice sets after must stay closed to Dave holding KB.
// Before keys named the log entry they were made at, the newest key
// learnt sealed, and Dave read the title.
func TestInfoKeyForkSmallGroup(t *testing.T) {
	nodes, infos, g, gid := smallGroupWithAdmin(t, false)
	alice, bob, dave := nodes["alice"], nodes["bob"], nodes["dave"]
	ctx := context.Background()
	bob = r14Isolated(t, bob, nil)

	if _, err := alice.RemoveGroupMember(ctx, g.ID, "dave"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.RemoveGroupMember(ctx, g.ID, infos["carol"].AccountID); err != nil {
		t.Fatal(err)
	}
	bobKeys := r14InfoKeys(t, bob, gid)
	kb := bobKeys[len(bobKeys)-1]
	// Bob's log and keys reach Alice, as his sendGroupLog would bring them.
	l := bob.reloadGroup(t, gid)
	p := payload{Kind: "group-log", Group: g.ID, Info: bobKeys}
	for _, e := range l.Entries(0) {
		raw, err := e.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		p.Log = append(p.Log, raw)
	}
	if err := alice.db.Update(func(tx *storage.Txn) error { return alice.applyGroupLog(tx, bob.keys.account.ID(), p) }); err != nil {
		t.Fatal(err)
	}
	st := alice.reloadGroup(t, gid).State()
	if st.Role(dave.keys.account.ID()) != groupstate.RoleNone || st.Role(nodes["carol"].keys.account.ID()) == groupstate.RoleNone {
		t.Fatal("the owner's branch did not win at Alice")
	}
	if !slices.ContainsFunc(r14InfoKeys(t, alice, gid), func(k infoKey) bool { return k.ID == kb.ID }) {
		t.Fatal("Alice did not take Bob's key: the test tests nothing")
	}
	title := "after the fork " + testMarker
	if _, err := alice.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: &title}); err != nil {
		t.Fatal(err)
	}
	sealed := alice.reloadGroup(t, gid).State().Title
	daveKeys := append(r14InfoKeys(t, dave, gid), kb)
	if got, err := openInfo(daveKeys, sealed); !errors.Is(err, errSealed) {
		t.Fatalf("Dave, removed, with the key Bob made on the losing branch, opens the title set after: %q (%v)", got, err)
	}
	// The members that remain read it.
	eventually(t, "the title at Carol", func() (bool, error) {
		got, err := nodes["carol"].Group(ctx, g.ID)
		return err == nil && got.Title == title, nil
	})
}

// TestLeaveWhileOwnerOfflineSmallGroup: in a small group Dave leaves
// while Alice, the owner (whose node turns the key on a leave), is
// offline. Bob, an admin, then sets a title: his node turns the key
// itself and sends it with the log; Dave cannot open the title, Carol
// reads it.
func TestLeaveWhileOwnerOfflineSmallGroup(t *testing.T) {
	nodes, _, g, gid := smallGroupWithAdmin(t, true)
	alice, bob, carol, dave := nodes["alice"], nodes["bob"], nodes["carol"], nodes["dave"]
	ctx := context.Background()
	alice.stop()
	if _, err := dave.LeaveGroup(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	left := dave.reloadGroup(t, gid).Head()
	eventually(t, "Dave's leave at Bob", holdsEntry(bob, gid, left))
	eventually(t, "Dave's leave at Carol", holdsEntry(carol, gid, left))
	title := "after Dave left " + testMarker
	if _, err := bob.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: &title}); err != nil {
		t.Fatal(err)
	}
	sealed := bob.reloadGroup(t, gid).State().Title
	if got, err := openInfo(r14InfoKeys(t, dave, gid), sealed); !errors.Is(err, errSealed) {
		t.Fatalf("Dave, who left, opens the title set after: %q (%v)", got, err)
	}
	eventually(t, "the title at Carol", func() (bool, error) {
		got, err := carol.Group(ctx, g.ID)
		return err == nil && got.Title == title, nil
	})
}

// smallGroupWithAdmin starts a relay and Alice, Bob, Carol and Dave, the
// others Alice's contacts (and, with bobsContacts, Carol and Dave Bob's),
// and has Alice make a group of the four with Bob an admin, held by all.
func smallGroupWithAdmin(t *testing.T, bobsContacts bool) (map[string]*testNode, map[string]Info, chat.Group, groupstate.GroupID) {
	t.Helper()
	relay := startRelay(t, t.TempDir())
	names := []string{"alice", "bob", "carol", "dave"}
	nodes, infos := map[string]*testNode{}, map[string]Info{}
	for _, name := range names {
		var home string
		home, infos[name] = initHome(t, name)
		nodes[name] = startNode(t, home, relay.addr)
	}
	alice := nodes["alice"]
	for _, name := range names[1:] {
		addEachOther(t, alice, nodes[name], infos["alice"], infos[name])
	}
	if bobsContacts {
		addEachOther(t, nodes["bob"], nodes["carol"], infos["bob"], infos["carol"])
		addEachOther(t, nodes["bob"], nodes["dave"], infos["bob"], infos["dave"])
	}
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "small")
	if err != nil {
		t.Fatal(err)
	}
	gid := r14Gid(t, g.ID)
	if _, err := alice.AddGroupMembers(ctx, g.ID, names[1:]); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SetGroupRole(ctx, g.ID, "bob", "admin"); err != nil {
		t.Fatal(err)
	}
	head := alice.reloadGroup(t, gid).Head()
	for _, name := range names[1:] {
		eventually(t, "the group at every member", holdsEntry(nodes[name], gid, head))
	}
	return nodes, infos, g, gid
}

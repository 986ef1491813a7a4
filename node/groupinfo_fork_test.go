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

// TestInfoKeyForgedByAdder: Bob, a member allowed to add members but not
// an admin, adds Dave and hands him, with the log, info keys of his own
// making — one carrying a copy of the owner's signature, one signed by
// Bob's own device, one signed by it under a certificate naming the
// owner's account. Dave, a member allowed to change the info, must seal
// his title with a key an admin or the owner made: Alice reads it. Before
// keys were signed by their maker, the newest key a node held sealed
// (the adder's), and no one but Bob and Dave could read Dave's title.
func TestInfoKeyForgedByAdder(t *testing.T) {
	alice, bob, dave, g, gid := adderGroup(t)
	ctx := context.Background()
	// Bob's node, modified, holds three keys of Bob's making, newer than
	// the owner's.
	head := bob.reloadGroup(t, gid).Head()
	h := head.Hash()
	owners := r14InfoKeys(t, bob, gid)
	if len(owners) != 1 || len(owners[0].Sig) == 0 {
		t.Fatalf("Bob holds %d keys, the owner's signed: %v", len(owners), len(owners) > 0 && len(owners[0].Sig) > 0)
	}
	forged := func() infoKey {
		k, err := newInfoKey()
		if err != nil {
			t.Fatal(err)
		}
		k.At, k.AtHash = head.Seq, h[:]
		return k
	}
	copied := forged()
	copied.By, copied.Sig = owners[0].By, owners[0].Sig
	own := forged()
	if err := bob.signInfoKey(gid, &own); err != nil {
		t.Fatal(err)
	}
	posing := forged()
	fake := *bob.keys.cert
	fake.Account = alice.keys.account.ID()
	var err error
	if posing.By, err = fake.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	posing.Sig = bob.keys.device.Sign(infoKeyLabel, infoKeySigned(gid, posing))
	if err := bob.db.Update(func(tx *storage.Txn) error {
		return bob.addInfoKeys(tx, gid, []infoKey{copied, own, posing})
	}); err != nil {
		t.Fatal(err)
	}
	addDave(t, bob, dave, g)
	if held := r14InfoKeys(t, dave, gid); len(held) != 4 {
		t.Fatalf("Dave holds %d info keys, want the 4 Bob sent", len(held))
	}
	if _, err := dave.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: ptr("dave's title")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Dave's title at Alice", func() (bool, error) {
		got, err := alice.Group(ctx, g.ID)
		return err == nil && got.Title == "dave's title", err
	})
}

// TestInfoKeyCopyReplaced: Bob hands Dave the owner's key without its
// signature, or re-signed by Bob's own device (a valid signature, by a
// member), so Dave holds no key that seals (he may not change the info
// until one comes); the owner's signed copy, sent with her next change,
// must not be dropped as a key Dave holds already, and Dave's title then
// reaches Alice. (Outside review 16 found the re-signed copy kept out.)
func TestInfoKeyCopyReplaced(t *testing.T) {
	tests := []struct {
		name  string
		alter func(bob *testNode, gid groupstate.GroupID, k *infoKey) error
	}{
		{"stripped", func(_ *testNode, _ groupstate.GroupID, k *infoKey) error {
			k.By, k.Sig = nil, nil
			return nil
		}},
		{"re-signed by the adder", func(bob *testNode, gid groupstate.GroupID, k *infoKey) error {
			return bob.signInfoKey(gid, k)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alice, bob, dave, g, gid := adderGroup(t)
			ctx := context.Background()
			keys := r14InfoKeys(t, bob, gid)
			for i := range keys {
				if err := tt.alter(bob, gid, &keys[i]); err != nil {
					t.Fatal(err)
				}
			}
			r16SetKeys(t, bob, gid, keys)
			addDave(t, bob, dave, g)
			if _, err := dave.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: ptr("too early")}); !errors.Is(err, chat.ErrUnavailable) {
				t.Fatalf("Dave, holding no key an admin signed, changed the title: %v", err)
			}
			r16OwnerResends(t, alice, g)
			eventually(t, "Dave able to change the title", func() (bool, error) {
				_, err := dave.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: ptr("dave's title")})
				return err == nil, nil
			})
			eventually(t, "Dave's title at Alice", func() (bool, error) {
				got, err := alice.Group(ctx, g.ID)
				return err == nil && got.Title == "dave's title", err
			})
		})
	}
}

// adderGroup: Alice's group, whose members may change the info, with Bob
// (a member, a contact of Dave's) in it.
func adderGroup(t *testing.T) (alice, bob, dave *testNode, g chat.Group, gid groupstate.GroupID) {
	t.Helper()
	relay := startRelay(t, t.TempDir())
	names := []string{"alice", "bob", "dave"}
	nodes, infos := map[string]*testNode{}, map[string]Info{}
	for _, name := range names {
		var home string
		home, infos[name] = initHome(t, name)
		nodes[name] = startNode(t, home, relay.addr)
	}
	alice, bob, dave = nodes["alice"], nodes["bob"], nodes["dave"]
	addEachOther(t, alice, bob, infos["alice"], infos["bob"])
	addEachOther(t, bob, dave, infos["bob"], infos["dave"])
	g, err := alice.CreateGroup(context.Background(), "forged keys")
	if err != nil {
		t.Fatal(err)
	}
	gid = r14Gid(t, g.ID)
	if _, err := alice.AddGroupMembers(context.Background(), g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.changeGroup(g.ID, func(tx *storage.Txn, l *groupstate.Log) ([]groupstate.Change, error) {
		return []groupstate.Change{{Kind: groupstate.KindPermissions, Perms: l.State().Perms | groupstate.PermInfo}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the group at Bob", holdsEntry(bob, gid, alice.reloadGroup(t, gid).Head()))
	return alice, bob, dave, g, gid
}

// addDave has Bob add Dave, who joins (Bob is a contact).
func addDave(t *testing.T, bob, dave *testNode, g chat.Group) {
	t.Helper()
	if _, err := bob.AddGroupMembers(context.Background(), g.ID, []string{"dave"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Dave a member", func() (bool, error) {
		got, err := dave.Group(context.Background(), g.ID)
		return err == nil && got.Role == "member", nil
	})
}

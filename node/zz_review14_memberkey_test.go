package node

import (
	"context"
	"testing"

	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// TestReview14MemberLogKeyNotSealer: Bob, a member and not an admin of a
// large group (its log over gossip), hands Alice (the owner) a "group-log"
// over their pairwise session carrying an info key of his own making.
// Alice's node must not seal her next title with it: were it to, every
// other member (who never got Bob's key: large groups' changes go over
// gossip, without keys) would see no title, and Bob would choose the key
// the owner seals with.
func TestReview14MemberLogKeyNotSealer(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	names := []string{"alice", "bob", "carol"}
	nodes, infos := map[string]*testNode{}, map[string]Info{}
	for _, name := range names {
		var home string
		home, infos[name] = initHome(t, name)
		nodes[name] = startNodeWith(t, home, largeGroups, relay.addr)
	}
	alice, bob, carol := nodes["alice"], nodes["bob"], nodes["carol"]
	addEachOther(t, alice, bob, infos["alice"], infos["bob"])
	addEachOther(t, alice, carol, infos["alice"], infos["carol"])
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "club")
	if err != nil {
		t.Fatal(err)
	}
	gid := r14Gid(t, g.ID)
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob", "carol"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{bob, carol} {
		eventually(t, "the group at the members", func() (bool, error) {
			got, err := n.Group(ctx, g.ID)
			return err == nil && len(got.Members) == 3 && got.Title == "club", nil
		})
	}

	bobs, err := newInfoKey()
	if err != nil {
		t.Fatal(err)
	}
	p := payload{Kind: "group-log", Group: g.ID, Log: r14LogRaws(t, alice, gid), Info: []infoKey{bobs}}
	if err := alice.db.Update(func(tx *storage.Txn) error { return alice.applyGroupLog(tx, bob.keys.account.ID(), p) }); err != nil {
		t.Fatal(err)
	}
	title := "after Bob's key"
	if _, err := alice.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: ptr(title)}); err != nil {
		t.Fatal(err)
	}
	if id := r14SealID(t, alice.reloadGroup(t, gid).State().Title); id == bobs.ID {
		t.Errorf("Alice (the owner) sealed her title with the key Bob, a member, handed her (key %08x)", id)
	}
	ok := false
	for range 300 { // ~15 s
		if got, err := carol.Group(ctx, g.ID); err == nil && got.Title == title {
			ok = true
			break
		}
		sleepMs(50)
	}
	if !ok {
		got, _ := carol.Group(ctx, g.ID)
		t.Errorf("Carol cannot read the title Alice set (she sees %q)", got.Title)
	}
}

// TestReview14MemberLogKeysFlood: Bob, a member, hands Alice a log with
// maxInfoKeys keys of his own. Alice must still read her group's title
// (its key must not be evicted by a member's keys).
func TestReview14MemberLogKeysFlood(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNodeWith(t, aliceHome, largeGroups, relay.addr)
	bob := startNodeWith(t, bobHome, largeGroups, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "club")
	if err != nil {
		t.Fatal(err)
	}
	gid := r14Gid(t, g.ID)
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the group at Bob", func() (bool, error) {
		got, err := bob.Group(ctx, g.ID)
		return err == nil && len(got.Members) == 2, nil
	})
	flood := make([]infoKey, maxInfoKeys)
	for i := range flood {
		if flood[i], err = newInfoKey(); err != nil {
			t.Fatal(err)
		}
	}
	p := payload{Kind: "group-log", Group: g.ID, Log: r14LogRaws(t, alice, gid), Info: flood}
	if err := alice.db.Update(func(tx *storage.Txn) error { return alice.applyGroupLog(tx, bob.keys.account.ID(), p) }); err != nil {
		t.Fatal(err)
	}
	if got, err := alice.Group(ctx, g.ID); err != nil || got.Title != "club" {
		t.Errorf("after a member's flood of keys Alice reads her group's title as %q (%v)", got.Title, err)
	}
}

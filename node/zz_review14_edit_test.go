package node

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// TestReview14EditBounds: titles and descriptions at their bounds in
// multi-byte UTF-8 are taken and read back whole by a member; one byte
// over is refused; text that is not UTF-8 is refused (the log's own rule
// for titles before they were sealed).
func TestReview14EditBounds(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "bounds")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	title := strings.Repeat("€", 42) + "é" // 128 bytes
	descr := strings.Repeat("𝄞", 175)      // 700 bytes
	if len(title) != groupstate.MaxTitle || len(descr) != groupstate.MaxDescription {
		t.Fatal("test lengths")
	}
	if _, err := alice.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: &title, Description: &descr}); err != nil {
		t.Fatalf("at the bounds: %v", err)
	}
	eventually(t, "both at Bob", func() (bool, error) {
		got, err := bob.Group(ctx, g.ID)
		return err == nil && got.Title == title && got.Description == descr, nil
	})
	for name, ch := range map[string]chat.GroupInfoChange{
		"title of 129 bytes":       {Title: ptr(strings.Repeat("€", 43))},
		"description of 701 bytes": {Description: ptr(descr + "a")},
	} {
		if _, err := alice.SetGroupInfo(ctx, g.ID, ch); !errors.Is(err, chat.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, ch := range map[string]chat.GroupInfoChange{
		"title not UTF-8":       {Title: ptr("ab\xff\xfe")},
		"description not UTF-8": {Description: ptr("ab\xc3")},
	} {
		if _, err := alice.SetGroupInfo(ctx, g.ID, ch); !errors.Is(err, chat.ErrInvalid) {
			t.Errorf("%s: taken (%v)", name, err)
		}
	}
}

// TestReview14ChannelSubscriberEdit: in a channel, a subscriber may not
// change the info, even with the group's PermInfo bit set (channels:
// admins only); an entry the subscriber signs and hands the owner anyway
// is not taken.
func TestReview14ChannelSubscriberEdit(t *testing.T) {
	relayDir := t.TempDir()
	relay := startRelay(t, relayDir)
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateChannel(ctx, "news "+testMarker)
	if err != nil {
		t.Fatal(err)
	}
	gid := r14Gid(t, g.ID)
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	// The owner sets PermInfo among the members' permissions.
	if _, err := alice.changeGroup(g.ID, func(tx *storage.Txn, l *groupstate.Log) ([]groupstate.Change, error) {
		return []groupstate.Change{{Kind: groupstate.KindPermissions, Perms: l.State().Perms | groupstate.PermInfo}}, nil
	}); err != nil {
		t.Logf("permissions: %v", err)
	}
	eventually(t, "the channel at Bob", func() (bool, error) {
		got, err := bob.Group(ctx, g.ID)
		return err == nil && len(got.Members) == 2, nil
	})
	time.Sleep(500 * time.Millisecond)
	if _, err := bob.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: ptr("bob's news")}); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("a subscriber changed the channel's info: %v", err)
	}
	l := bob.reloadGroup(t, gid)
	keys := r14InfoKeys(t, bob, gid)
	sealed, err := sealInfo(keys[len(keys)-1], "bob's news")
	if err != nil {
		t.Fatal(err)
	}
	e, err := groupstate.Sign(bob.keys.device, bob.keys.cert, l.Head(), l.Head().Time+1, groupstate.Change{Kind: groupstate.KindTitle, Text: sealed})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := e.MarshalBinary()
	p := payload{Kind: "group-log", Group: g.ID, Log: append(r14LogRaws(t, bob, gid), raw)}
	if err := alice.db.Update(func(tx *storage.Txn) error { return alice.applyGroupLog(tx, bob.keys.account.ID(), p) }); err != nil {
		t.Fatal(err)
	}
	if got, err := alice.Group(ctx, g.ID); err != nil || got.Title != "news "+testMarker {
		t.Fatalf("the channel's title at Alice after a subscriber's entry: %q (%v)", got.Title, err)
	}
	// The admin's edit reaches Bob; the relay never holds the texts.
	descr := "about " + testMarker
	if _, err := alice.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: ptr("renamed " + testMarker), Description: &descr}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the edit at Bob", func() (bool, error) {
		got, err := bob.Group(ctx, g.ID)
		return err == nil && got.Title == "renamed "+testMarker && got.Description == descr, nil
	})
	time.Sleep(2 * time.Second)
	relay.close()
	assertNoMarker(t, relayDir)
}

// TestReview14TitleAfterRemovalSmall: in a small group (log and keys
// pairwise) Alice removes Carol and sets a title; Carol's node, fed the
// whole log afterwards (as a relay or a member could), cannot read it, and
// the marker is in no file of the relay nor of Carol's home.
func TestReview14TitleAfterRemovalSmall(t *testing.T) {
	relayDir := t.TempDir()
	relay := startRelay(t, relayDir)
	names := []string{"alice", "bob", "carol"}
	nodes, homes, infos := map[string]*testNode{}, map[string]string{}, map[string]Info{}
	for _, name := range names {
		homes[name], infos[name] = initHome(t, name)
		nodes[name] = startNode(t, homes[name], relay.addr)
	}
	alice, bob, carol := nodes["alice"], nodes["bob"], nodes["carol"]
	for _, name := range names[1:] {
		addEachOther(t, alice, nodes[name], infos["alice"], infos[name])
	}
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "small "+testMarker)
	if err != nil {
		t.Fatal(err)
	}
	gid := r14Gid(t, g.ID)
	if _, err := alice.AddGroupMembers(ctx, g.ID, names[1:]); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the group at Carol", func() (bool, error) {
		got, err := carol.Group(ctx, g.ID)
		return err == nil && len(got.Members) == 3, nil
	})
	if _, err := alice.RemoveGroupMember(ctx, g.ID, "carol"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Carol out at Carol", func() (bool, error) {
		got, err := carol.Group(ctx, g.ID)
		return err == nil && got.Role == "none", nil
	})
	secret := "after " + testMarker
	if _, err := alice.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: ptr(secret), Description: ptr(secret)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the title at Bob", func() (bool, error) {
		got, err := bob.Group(ctx, g.ID)
		return err == nil && got.Title == secret && got.Description == secret, nil
	})
	// Carol, removed, hands Bob a log with a key of hers: not kept.
	kc, err := newInfoKey()
	if err != nil {
		t.Fatal(err)
	}
	pc := payload{Kind: "group-log", Group: g.ID, Log: r14LogRaws(t, carol, gid), Info: []infoKey{kc}}
	if err := bob.db.Update(func(tx *storage.Txn) error { return bob.applyGroupLog(tx, carol.keys.account.ID(), pc) }); err != nil {
		t.Fatal(err)
	}
	if r14Contains(r14InfoKeys(t, bob, gid), kc.ID) {
		t.Fatal("Bob kept a key from Carol, removed")
	}
	st := alice.reloadGroup(t, gid).State()
	if _, err := openInfo(r14InfoKeys(t, carol, gid), st.Title); err == nil {
		t.Fatal("Carol's keys open the title set after her removal")
	}
	p := payload{Kind: "group-log", Group: g.ID, Log: r14LogRaws(t, alice, gid)}
	_ = carol.db.Update(func(tx *storage.Txn) error { return carol.applyGroupLog(tx, bob.keys.account.ID(), p) })
	if got, err := carol.Group(ctx, g.ID); err == nil && (got.Title == secret || got.Description == secret) {
		t.Fatal("Carol reads the title set after her removal")
	}
	carol.stop()
	relay.close()
	assertNoMarker(t, relayDir)
	assertNoMarker(t, homes["carol"])
}

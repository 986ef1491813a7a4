package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/groupnet"
	"github.com/peergram/peergram/relay/history"
	"github.com/peergram/peergram/storage"
)

// infoKeyIDs lists the IDs of the group info keys n holds.
func infoKeyIDs(t *testing.T, n *testNode, gid groupstate.GroupID) []uint32 {
	t.Helper()
	var ids []uint32
	if err := n.db.View(func(tx *storage.Txn) error {
		keys, err := n.infoKeys(tx, gid)
		for _, k := range keys {
			ids = append(ids, k.ID)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestGroupInfoEdit: the owner renames a group and gives it a
// description; a member sees both; a member without the "change info"
// permission may not; bad input is refused; an empty description removes
// it. The relay that keeps the log never holds the texts.
func TestGroupInfoEdit(t *testing.T) {
	relayDir := t.TempDir()
	relay := startRelay(t, relayDir)
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "Book club")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob in the group", func() (bool, error) {
		got, err := bob.Group(ctx, g.ID)
		return err == nil && got.Role == "member", nil
	})

	title, descr := "Readers "+testMarker, "We read "+testMarker
	got, err := alice.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: ptr("  " + title + " "), Description: ptr(descr)})
	if err != nil {
		t.Fatal(err)
	}
	if got.Title != title || got.Description != descr {
		t.Fatalf("Alice's view after the edit: %q, %q", got.Title, got.Description)
	}
	eventually(t, "the new title and description at Bob", func() (bool, error) {
		got, err := bob.Group(ctx, g.ID)
		return err == nil && got.Title == title && got.Description == descr, nil
	})
	// The title names the group on this node from now on.
	if _, err := alice.Group(ctx, title); err != nil {
		t.Fatalf("the group by its new title: %v", err)
	}

	// Bob is a member; members may not change the info by default.
	if _, err := bob.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: ptr("Bob's club")}); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("a member without the right renamed the group: %v", err)
	}
	for name, ch := range map[string]chat.GroupInfoChange{
		"nothing":          {},
		"empty title":      {Title: ptr("  ")},
		"long title":       {Title: ptr(strings.Repeat("t", groupstate.MaxTitle+1))},
		"long description": {Description: ptr(strings.Repeat("d", groupstate.MaxDescription+1))},
	} {
		if _, err := alice.SetGroupInfo(ctx, g.ID, ch); !errors.Is(err, chat.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The longest description allowed fits a log entry once sealed.
	long := strings.Repeat("é", groupstate.MaxDescription/2)
	if got, err := alice.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Description: ptr(long)}); err != nil || got.Description != long {
		t.Fatalf("the longest description: %v", err)
	}
	if got, err := alice.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Description: ptr("")}); err != nil || got.Description != "" || got.Title != title {
		t.Fatalf("description removed: %+v, %v", got, err)
	}
	eventually(t, "the description gone at Bob", func() (bool, error) {
		got, err := bob.Group(ctx, g.ID)
		return err == nil && got.Title == title && got.Description == "", nil
	})
	relay.close()
	assertNoMarker(t, relayDir)
}

// largeEpochGroups makes every group of two or more members large: its
// changes go over gossip and its messages under epoch keys.
func largeEpochGroups(c *Config) { c.GroupPairwiseLogLimit, c.GroupSenderKeyLimit = 1, 1 }

// TestLargeGroupInfoKeyUnderEpoch: in a large group the info key that a
// removal turns goes to the members that remain as one message under the
// new epoch key, not pairwise to every member. Alice removes Dave: her
// node sends the log pairwise to Dave alone (so that his node knows he is
// out); Bob and Carol get the new key and read the title Alice sets next;
// Dave, fed the key's message as the relay keeps it, does not. Carol
// leaves: Alice's node (the owner's) turns the key again, and Bob gets it.
func TestLargeGroupInfoKeyUnderEpoch(t *testing.T) {
	relayDir := t.TempDir()
	relay := startRelay(t, relayDir)
	names := []string{"alice", "bob", "carol", "dave"}
	nodes, homes, infos := map[string]*testNode{}, map[string]string{}, map[string]Info{}
	for _, name := range names {
		homes[name], infos[name] = initHome(t, name)
		nodes[name] = startNodeWith(t, homes[name], largeEpochGroups, relay.addr)
	}
	alice, bob, carol, dave := nodes["alice"], nodes["bob"], nodes["carol"], nodes["dave"]
	for _, name := range names[1:] {
		addEachOther(t, alice, nodes[name], infos["alice"], infos[name])
	}
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "large")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	gid := groupstate.GroupID(raw)
	if _, err := alice.AddGroupMembers(ctx, g.ID, names[1:]); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{bob, carol, dave} {
		eventually(t, "the group at every member", func() (bool, error) {
			got, err := n.Group(ctx, g.ID)
			return err == nil && len(got.Members) == 4 && got.Title == "large", nil
		})
	}

	sent := alice.logsSent.Load()
	if _, err := alice.RemoveGroupMember(ctx, g.ID, "dave"); err != nil {
		t.Fatal(err)
	}
	if n := alice.logsSent.Load() - sent; n != 1 {
		t.Fatalf("the removal sent the log pairwise %d times; want once (to Dave)", n)
	}
	ids := infoKeyIDs(t, alice, gid)
	newKey := ids[len(ids)-1]
	for _, n := range []*testNode{bob, carol} {
		eventually(t, "the new info key at the members that remain", func() (bool, error) {
			return slices.Contains(infoKeyIDs(t, n, gid), newKey), nil
		})
	}
	title := "renamed " + testMarker
	if _, err := alice.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: ptr(title)}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{bob, carol} {
		eventually(t, "the new title at the members that remain", func() (bool, error) {
			got, err := n.Group(ctx, g.ID)
			return err == nil && got.Title == title, nil
		})
	}

	// A key that comes with a log is never tied to an epoch, whatever
	// its sender says: handed to Alice with the fresh epoch's number (by
	// an account that may hand keys: her own), it does not seal.
	var fresh uint64
	if err := alice.db.View(func(tx *storage.Txn) error {
		k, ok, err := alice.freshEpoch(tx, alice.reloadGroup(t, gid))
		if err == nil && !ok {
			err = errors.New("no fresh epoch at Alice")
		}
		fresh = k.Epoch
		return err
	}); err != nil {
		t.Fatal(err)
	}
	claimed, err := newInfoKey()
	if err != nil {
		t.Fatal(err)
	}
	claimed.Epoch = fresh
	p := payload{Kind: "group-log", Group: g.ID, Log: r14LogRaws(t, alice, gid), Info: []infoKey{claimed}}
	if err := alice.db.Update(func(tx *storage.Txn) error { return alice.applyGroupLog(tx, alice.keys.account.ID(), p) }); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(infoKeyIDs(t, alice, gid), claimed.ID) {
		t.Fatal("the key sent with the log was not kept")
	}
	title2 := "renamed again " + testMarker
	if _, err := alice.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: ptr(title2)}); err != nil {
		t.Fatal(err)
	}
	if id := r14SealID(t, alice.reloadGroup(t, gid).State().Title); id == claimed.ID || id != newKey {
		t.Fatalf("Alice sealed with key %08x (the one posted under the epoch: %08x; the one sent with a log: %08x)", id, newKey, claimed.ID)
	}

	// Dave, fed every epoch message of Alice's the relay holds, gets no
	// key made after his removal.
	var posts []*groupnet.Message
	eventually(t, "Alice's epoch messages at the relay", func() (bool, error) {
		pg, err := history.NewClient(dave.host).Query(ctx, relay.h.ID(), gid, 0, 0, false)
		if err != nil {
			return false, nil
		}
		posts = posts[:0]
		for _, it := range pg.Items {
			if e, err := groupmsg.Open(gid, it.Envelope); err == nil && e.Kind == groupmsg.KindEpoch && e.Device == alice.keys.device.ID() {
				posts = append(posts, &groupnet.Message{Envelope: e, Account: alice.keys.account.ID(), ID: groupmsg.ID(it.Envelope), Raw: it.Envelope})
			}
		}
		return len(posts) > 0, nil
	})
	for _, m := range posts {
		if err := dave.takeEnvelope(gid, m); err != nil {
			t.Logf("Dave took Alice's message: %v", err)
		}
	}
	if slices.Contains(infoKeyIDs(t, dave, gid), newKey) {
		t.Fatal("Dave holds the info key made after his removal")
	}

	// A leave: Carol cannot turn the key for the others; the owner does.
	ids = infoKeyIDs(t, alice, gid)
	sent = alice.logsSent.Load()
	if _, err := carol.LeaveGroup(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Carol's leave at Alice and a key after it", func() (bool, error) {
		got, err := alice.Group(ctx, g.ID)
		if err != nil {
			return false, err
		}
		now := infoKeyIDs(t, alice, gid)
		if len(got.Members) != 2 || len(now) != len(ids)+1 {
			return false, fmt.Errorf("%d members at Alice (want 2); %d info keys (want %d)", len(got.Members), len(now), len(ids)+1)
		}
		return true, nil
	})
	ids = infoKeyIDs(t, alice, gid)
	afterLeave := ids[len(ids)-1]
	eventually(t, "the key made after Carol left at Bob", func() (bool, error) {
		return slices.Contains(infoKeyIDs(t, bob, gid), afterLeave), nil
	})
	if n := alice.logsSent.Load() - sent; n != 0 {
		t.Fatalf("Carol's leave made Alice send the log pairwise %d times", n)
	}
	if slices.Contains(infoKeyIDs(t, carol, gid), afterLeave) {
		t.Fatal("Carol holds the key made after she left")
	}
	for _, n := range nodes {
		n.stop()
	}
	relay.close()
	assertNoMarker(t, relayDir)
	assertNoMarker(t, homes["dave"])
}

// TestInfoKeyFromNonAdmin: an info key that comes as a group message is
// kept only from an admin or the owner of the log as the node holds it
// (a stranger's, a member's, or one from an account removed since, is
// dropped); and a list of keys filled to its bound still takes the key a
// removal turns, which then seals (the oldest key goes).
func TestInfoKeyFromNonAdmin(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "mine")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	gid := groupstate.GroupID(raw)
	var stranger identity.AccountID
	stranger[0] = 7
	for _, c := range []struct {
		name string
		from identity.AccountID
		kept bool
	}{
		{"a stranger", stranger, false},
		{"a member", bob.keys.account.ID(), false},
		{"the owner", alice.keys.account.ID(), true},
	} {
		k, err := newInfoKey()
		if err != nil {
			t.Fatal(err)
		}
		if err := alice.db.Update(func(tx *storage.Txn) error {
			return alice.takeInfoKey(tx, gid, c.from, k, make([]byte, 32), 0)
		}); err != nil {
			t.Fatal(err)
		}
		if got := slices.Contains(infoKeyIDs(t, alice, gid), k.ID); got != c.kept {
			t.Errorf("a key from %s kept: %v", c.name, got)
		}
	}

	// Bob, an admin, fills Alice's list; removed, he is out of it.
	if _, err := alice.SetGroupRole(ctx, g.ID, "bob", "admin"); err != nil {
		t.Fatal(err)
	}
	flood := make([]infoKey, maxInfoKeys)
	for i := range flood {
		if flood[i], err = newInfoKey(); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice.db.Update(func(tx *storage.Txn) error {
		if err := alice.takeInfoKey(tx, gid, bob.keys.account.ID(), flood[0], make([]byte, 32), 0); err != nil {
			return err
		}
		return alice.addInfoKeys(tx, gid, flood[1:]) // (the rest as one list, as with a log)
	}); err != nil {
		t.Fatal(err)
	}
	filled := infoKeyIDs(t, alice, gid)
	if len(filled) != maxInfoKeys {
		t.Fatalf("%d keys after the flood", len(filled))
	}
	if _, err := alice.RemoveGroupMember(ctx, g.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	after := infoKeyIDs(t, alice, gid)
	if len(after) != maxInfoKeys || slices.Contains(filled, after[len(after)-1]) {
		t.Fatalf("the key the removal turned is not the newest held (%d keys)", len(after))
	}
	late, err := newInfoKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.db.Update(func(tx *storage.Txn) error {
		return alice.takeInfoKey(tx, gid, bob.keys.account.ID(), late, make([]byte, 32), 0)
	}); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(infoKeyIDs(t, alice, gid), late.ID) {
		t.Fatal("a key from Bob, removed, was kept")
	}
}

// TestAddInfoKeys: which copies of a key a node keeps. A key is the same
// as a held one only with the same ID, bytes and signature.
func TestAddInfoKeys(t *testing.T) {
	home, _ := initHome(t, "alice")
	n := startNode(t, home)
	var gid groupstate.GroupID
	key := func(id uint32, b byte) infoKey { return infoKey{ID: id, Key: bytes.Repeat([]byte{b}, 32)} }
	signed := func(k infoKey, by string) infoKey { k.By, k.Sig = []byte(by), []byte("sig "+by); return k }
	epoch := func(k infoKey, e uint64) infoKey { k.Epoch = e; return k }
	tests := []struct {
		name      string
		held, add []infoKey
		want      []infoKey
	}{
		{"a new key", []infoKey{key(1, 'a')}, []infoKey{key(2, 'b')}, []infoKey{key(1, 'a'), key(2, 'b')}},
		{"the same again", []infoKey{signed(key(1, 'a'), "x")}, []infoKey{signed(key(1, 'a'), "x")}, []infoKey{signed(key(1, 'a'), "x")}},
		{"other bytes under a held ID", []infoKey{key(1, 'j')}, []infoKey{key(1, 'a')}, []infoKey{key(1, 'j'), key(1, 'a')}},
		{"a signed copy beside an unsigned one", []infoKey{key(1, 'a'), key(2, 'b')}, []infoKey{signed(key(1, 'a'), "x")},
			[]infoKey{key(1, 'a'), signed(key(1, 'a'), "x"), key(2, 'b')}},
		{"another signature beside a held one", []infoKey{signed(key(1, 'a'), "m")}, []infoKey{signed(key(1, 'a'), "x")},
			[]infoKey{signed(key(1, 'a'), "m"), signed(key(1, 'a'), "x")}},
		{"an unsigned copy adds nothing", []infoKey{signed(key(1, 'a'), "x")}, []infoKey{key(1, 'a')}, []infoKey{signed(key(1, 'a'), "x")}},
		{"the epoch a copy came under", []infoKey{key(1, 'a')}, []infoKey{epoch(key(1, 'a'), 7)}, []infoKey{epoch(key(1, 'a'), 7)}},
		{"no epoch for other bytes", []infoKey{key(1, 'j')}, []infoKey{epoch(key(1, 'a'), 7)}, []infoKey{key(1, 'j'), epoch(key(1, 'a'), 7)}},
		{"a short key", nil, []infoKey{{ID: 1, Key: []byte("short")}}, nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gid[0] = byte(i + 1)
			var got []infoKey
			err := n.db.Update(func(tx *storage.Txn) (err error) {
				if tt.held != nil {
					raw, _ := json.Marshal(tt.held)
					if err := tx.Set(n.st.groupKeys, infoKeysKey(gid), raw); err != nil {
						return err
					}
				}
				if err := n.addInfoKeys(tx, gid, tt.add); err != nil {
					return err
				}
				got, err = n.infoKeys(tx, gid)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("held %+v, want %+v", got, tt.want)
			}
		})
	}
}

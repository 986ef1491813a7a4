package node

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// r14ThreeLarge starts Alice, Bob and Carol with largeEpochGroups and a
// group of the three made by Alice, and waits until Bob and Carol hold an
// epoch key.
func r14ThreeLarge(t *testing.T, relay *testRelay) (map[string]*testNode, map[string]string, chat.Group) {
	t.Helper()
	names := []string{"alice", "bob", "carol"}
	nodes, homes, infos := map[string]*testNode{}, map[string]string{}, map[string]Info{}
	for _, name := range names {
		homes[name], infos[name] = initHome(t, name)
		nodes[name] = startNodeWith(t, homes[name], largeEpochGroups, relay.addr)
	}
	for _, name := range names[1:] {
		addEachOther(t, nodes["alice"], nodes[name], infos["alice"], infos[name])
	}
	ctx := context.Background()
	g, err := nodes["alice"].CreateGroup(ctx, "large")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nodes["alice"].AddGroupMembers(ctx, g.ID, names[1:]); err != nil {
		t.Fatal(err)
	}
	gid := r14Gid(t, g.ID)
	for _, name := range names[1:] {
		n := nodes[name]
		eventually(t, "the group and an epoch key", func() (bool, error) {
			got, err := n.Group(ctx, g.ID)
			return err == nil && len(got.Members) == 3 && len(r14EpochKeys(t, n, gid)) > 0, nil
		})
	}
	return nodes, homes, g
}

// r14InfoPosts counts the posts of key id by from's device that the relay
// keeps, opened with viewer's epoch keys.
func r14InfoPosts(t *testing.T, viewer *testNode, relay *testRelay, gid groupstate.GroupID, from *testNode, id uint32) int {
	t.Helper()
	count := 0
	for _, env := range r14RelayEnvelopes(t, viewer, relay, gid, from, groupmsg.KindEpoch) {
		if b, ok := r14OpenEpoch(gid, r14EpochKeys(t, viewer, gid), env); ok && b.Info != nil && b.Info.ID == id {
			count++
		}
	}
	return count
}

// TestReview14InfoPostAfterCrash: Alice's node commits a rotation of the
// info key in a large epoch-tier group (the key marked to post) and
// stops before posting it, as in a crash. Restarted, it posts the key
// once: Bob and Carol get it, the mark is gone, and a later change does
// not post it again.
func TestReview14InfoPostAfterCrash(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	nodes, homes, g := r14ThreeLarge(t, relay)
	alice, bob, carol := nodes["alice"], nodes["bob"], nodes["carol"]
	gid := r14Gid(t, g.ID)
	ctx := context.Background()

	var id uint32
	if err := alice.db.Update(func(tx *storage.Txn) error {
		l, err := alice.loadGroupTx(tx, gid)
		if err != nil {
			return err
		}
		pairwise, err := alice.rotateInfoKey(tx, l)
		if err != nil {
			return err
		}
		if pairwise {
			return fmt.Errorf("a large epoch-tier group's key to go pairwise")
		}
		keys, err := alice.infoKeys(tx, gid)
		id = keys[len(keys)-1].ID
		return err
	}); err != nil {
		t.Fatal(err)
	}
	alice.stop() // the crash: nothing ran after the commit
	alice = startNodeWith(t, homes["alice"], largeEpochGroups, relay.addr)
	for _, n := range []*testNode{bob, carol} {
		eventually(t, "the key at the members after Alice's restart", func() (bool, error) {
			return slices.Contains(infoKeyIDs(t, n, gid), id), nil
		})
	}
	eventually(t, "the mark gone", func() (bool, error) { return !r14HasPost(t, alice, gid), nil })
	eventually(t, "the post at the relay", func() (bool, error) { return r14InfoPosts(t, bob, relay, gid, alice, id) >= 1, nil })
	if _, err := alice.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: ptr("later")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the title at Bob", func() (bool, error) {
		got, err := bob.Group(ctx, g.ID)
		return err == nil && got.Title == "later", nil
	})
	time.Sleep(2 * time.Second)
	if n := r14InfoPosts(t, bob, relay, gid, alice, id); n != 1 {
		t.Fatalf("the key was posted %d times", n)
	}
}

// TestReview14MalformedAndForeignInfoBodies: info bodies no honest node
// sends, from an admin (Alice): a key of 16 or 33 bytes, none, an info
// with a text, a poll or a call, an info that is not an object, an ID
// beyond 32 bits. Bob's node takes none of them (and does not panic). An
// info key from Bob (a member) is not kept by Alice nor Carol. A good
// one from Alice is kept; replayed after a newer one, the newer still
// seals.
func TestReview14MalformedAndForeignInfoBodies(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	nodes, _, g := r14ThreeLarge(t, relay)
	alice, bob, carol := nodes["alice"], nodes["bob"], nodes["carol"]
	gid := r14Gid(t, g.ID)
	ctx := context.Background()
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	k32 := b64(32)
	before := infoKeyIDs(t, bob, gid)
	bad := []string{
		`{"info":{"id":101,"k":"` + b64(16) + `"}}`,
		`{"info":{"id":102,"k":"` + b64(33) + `"}}`,
		`{"info":{"id":103}}`,
		`{"info":{"id":104,"k":null}}`,
		`{"info":{"id":105,"k":"` + k32 + `"},"text":"both"}`,
		`{"info":{"id":106,"k":"` + k32 + `"},"poll":{"question":"q","options":["a","b"]}}`,
		`{"info":{"id":107,"k":"` + k32 + `"},"call":{"id":"x","a":"end"}}`,
		`{"info":{"id":108,"k":"` + k32 + `"},"delfile":"` + fmt.Sprintf("%064x", 1) + `"}`,
		`{"info":"108"}`,
		`{"info":[1,2]}`,
		`{"info":{"id":4294967296,"k":"` + k32 + `"}}`,
		`{"info":{"id":-1,"k":"` + k32 + `"}}`,
		`{"info":{"id":109,"k":"` + k32 + `"},"info":{"id":110,"k":"` + b64(3) + `"}}`,
	}
	for _, raw := range bad {
		if _, err := alice.sealGroup(ctx, g.ID, &groupBody{Text: "x"}, []byte(raw), nil); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
	}
	if _, err := alice.SendGroup(ctx, g.ID, "sync"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Alice's last message at Bob", func() (bool, error) { return slices.Contains(groupTexts(t, bob, g.ID), "sync"), nil })
	if got := infoKeyIDs(t, bob, gid); !slices.Equal(got, before) {
		t.Errorf("Bob's keys changed by malformed bodies: %v → %v", before, got)
	}
	for _, m := range groupTexts(t, bob, g.ID) {
		if m != "sync" {
			t.Errorf("Bob lists %q", m)
		}
	}

	// Bob, a member, posts a key (a sound body).
	kb, err := newInfoKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.sealGroup(ctx, g.ID, &groupBody{Info: &kb}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SendGroup(ctx, g.ID, "bob sync"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{alice, carol} {
		eventually(t, "Bob's message", func() (bool, error) { return slices.Contains(groupTexts(t, n, g.ID), "bob sync"), nil })
		if slices.Contains(infoKeyIDs(t, n, gid), kb.ID) {
			t.Errorf("a member's info key was kept")
		}
	}

	// Alice posts two keys; the first replayed to Bob after the second.
	k1, _ := newInfoKey()
	k2, _ := newInfoKey()
	if _, err := alice.sealGroup(ctx, g.ID, &groupBody{Info: &k1}, nil, nil); err != nil {
		t.Fatal(err)
	}
	var first [][]byte
	eventually(t, "the first key's post at the relay", func() (bool, error) {
		first = first[:0]
		for _, env := range r14RelayEnvelopes(t, bob, relay, gid, alice, groupmsg.KindEpoch) {
			if b, ok := r14OpenEpoch(gid, r14EpochKeys(t, bob, gid), env); ok && b.Info != nil && b.Info.ID == k1.ID {
				first = append(first, env)
			}
		}
		return len(first) == 1, nil
	})
	if _, err := alice.sealGroup(ctx, g.ID, &groupBody{Info: &k2}, nil, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both keys at Bob", func() (bool, error) {
		ids := infoKeyIDs(t, bob, gid)
		return len(ids) > 1 && ids[len(ids)-1] == k2.ID && slices.Contains(ids, k1.ID), nil
	})
	if err := bob.takeEnvelope(gid, r14Message(t, gid, first[0], alice)); err != nil {
		t.Logf("replay: %v", err)
	}
	if ids := infoKeyIDs(t, bob, gid); ids[len(ids)-1] != k2.ID {
		t.Fatalf("a replayed key seals at Bob")
	}
	// Info posts are never listed.
	msgs, err := bob.GroupMessages(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if m.Text != "sync" && m.Text != "bob sync" {
			t.Errorf("Bob lists a message %+v", m)
		}
	}
}

// TestReview14InfoPostConcurrent: a key marked to post, posted by four
// passes at once (connectMembers runs on every change, each in its own
// goroutine): posted once.
func TestReview14InfoPostConcurrent(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	nodes, _, g := r14ThreeLarge(t, relay)
	alice, bob := nodes["alice"], nodes["bob"]
	gid := r14Gid(t, g.ID)
	var id uint32
	if err := alice.db.Update(func(tx *storage.Txn) error {
		l, err := alice.loadGroupTx(tx, gid)
		if err != nil {
			return err
		}
		if _, err := alice.rotateInfoKey(tx, l); err != nil {
			return err
		}
		keys, err := alice.infoKeys(tx, gid)
		id = keys[len(keys)-1].ID
		return err
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	for range 4 {
		go func() { alice.postInfoKey(context.Background(), gid); done <- struct{}{} }()
	}
	for range 4 {
		<-done
	}
	eventually(t, "the key at Bob", func() (bool, error) { return slices.Contains(infoKeyIDs(t, bob, gid), id), nil })
	eventually(t, "the post at the relay", func() (bool, error) { return r14InfoPosts(t, bob, relay, gid, alice, id) >= 1, nil })
	time.Sleep(2 * time.Second)
	if n := r14InfoPosts(t, bob, relay, gid, alice, id); n != 1 {
		t.Fatalf("posted %d times", n)
	}
}

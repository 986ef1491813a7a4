package node

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/epochkey"
	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// TestReview14RemovedAdminKeyAtLaggingAdmin: Dave, an admin, is removed
// by Alice (the owner). After his removal he posts an info key of his own
// (KD) under the epoch key he still holds from before. Carol, an admin
// who was offline, catches up from a relay that hands her Alice's new
// epoch key and the info key KA of the removal first, Dave's post next,
// and the removal entry last (a relay may order what it serves as it
// likes; relays are not trusted with titles). Once Carol knows of the
// removal, the title she sets must not be readable by Dave.
func TestReview14RemovedAdminKeyAtLaggingAdmin(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	names := []string{"alice", "bob", "carol", "dave"}
	nodes, infos := map[string]*testNode{}, map[string]Info{}
	for _, name := range names {
		var home string
		home, infos[name] = initHome(t, name)
		nodes[name] = startNodeWith(t, home, largeEpochGroups, relay.addr)
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
	gid := r14Gid(t, g.ID)
	if _, err := alice.AddGroupMembers(ctx, g.ID, names[1:]); err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"carol", "dave"} {
		if _, err := alice.SetGroupRole(ctx, g.ID, who, "admin"); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []*testNode{carol, dave} {
		eventually(t, "an admin with an epoch key", func() (bool, error) {
			got, err := n.Group(ctx, g.ID)
			return err == nil && len(got.Members) == 4 && got.Role == "admin" && len(r14EpochKeys(t, n, gid)) > 0, nil
		})
	}
	time.Sleep(time.Second)
	old := r14EpochKeys(t, dave, gid)

	carol = r14Isolated(t, carol, largeEpochGroups)
	if _, err := alice.RemoveGroupMember(ctx, g.ID, "dave"); err != nil {
		t.Fatal(err)
	}
	ka := r14InfoKeys(t, alice, gid)
	kaID := ka[len(ka)-1].ID
	var grants, posts, entries [][]byte
	eventually(t, "KA's post at the relay", func() (bool, error) {
		posts = r14RelayEnvelopes(t, bob, relay, gid, alice, groupmsg.KindEpoch)
		for _, env := range posts {
			if b, ok := r14OpenEpoch(gid, r14EpochKeys(t, alice, gid), env); ok && b.Info != nil && b.Info.ID == kaID {
				return true, nil
			}
		}
		return false, nil
	})
	grants = r14RelayEnvelopes(t, bob, relay, gid, alice, groupmsg.KindGrants)
	entries = r14RelayEnvelopes(t, bob, relay, gid, alice, groupmsg.KindState)

	// Dave's post, made after his removal, under the newest key he holds.
	kd, err := newInfoKey()
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := json.Marshal(groupBody{Info: &kd})
	ek := old[len(old)-1]
	ct, err := epochkey.Seal(rand.Reader, ek, dave.keys.device.ID(), plain)
	if err != nil {
		t.Fatal(err)
	}
	denv, err := groupmsg.Seal(dave.keys.device, gid, groupmsg.KindEpoch, time.Now().UnixMilli(), ct)
	if err != nil {
		t.Fatal(err)
	}

	feed := func(envs [][]byte, from *testNode) {
		for _, env := range envs {
			if err := carol.takeEnvelope(gid, r14Message(t, gid, env, from)); err != nil {
				t.Logf("Carol took an envelope: %v", err)
			}
		}
	}
	feed(grants, alice)
	feed(posts, alice)
	if !r14Contains(r14InfoKeys(t, carol, gid), kaID) {
		t.Fatal("Carol did not take KA")
	}
	feed([][]byte{denv}, dave)
	feed(entries, alice)
	if st := carol.reloadGroup(t, gid).State(); st.Role(dave.keys.account.ID()) != 0 {
		t.Fatal("Carol does not know of Dave's removal")
	}
	secret := "set by Carol after Dave's removal"
	if _, err := carol.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: ptr(secret)}); err != nil {
		t.Fatal(err)
	}
	sealed := carol.reloadGroup(t, gid).State().Title
	if got, err := openInfo(append(r14InfoKeys(t, dave, gid), kd), sealed); err == nil && got == secret {
		t.Fatalf("Dave, removed, reads the title Carol set once she knew of his removal (sealed with his key %08x)", r14SealID(t, sealed))
	}
}

// TestReview14LeaveWhileOwnerOffline: in a large epoch-tier group Dave
// leaves while Alice, the owner (whose node alone turns the key on a
// leave), is offline. Carol, an admin, then sets a title: Dave, who left
// before it, must not read it with the keys he held.
func TestReview14LeaveWhileOwnerOffline(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	names := []string{"alice", "bob", "carol", "dave"}
	nodes, infos := map[string]*testNode{}, map[string]Info{}
	for _, name := range names {
		var home string
		home, infos[name] = initHome(t, name)
		nodes[name] = startNodeWith(t, home, largeEpochGroups, relay.addr)
	}
	alice, carol, dave := nodes["alice"], nodes["carol"], nodes["dave"]
	for _, name := range names[1:] {
		addEachOther(t, alice, nodes[name], infos["alice"], infos[name])
	}
	addEachOther(t, carol, dave, infos["carol"], infos["dave"])
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "large")
	if err != nil {
		t.Fatal(err)
	}
	gid := r14Gid(t, g.ID)
	if _, err := alice.AddGroupMembers(ctx, g.ID, names[1:]); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SetGroupRole(ctx, g.ID, "carol", "admin"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Carol an admin, Dave in", func() (bool, error) {
		c, err1 := carol.Group(ctx, g.ID)
		d, err2 := dave.Group(ctx, g.ID)
		return err1 == nil && err2 == nil && c.Role == "admin" && len(d.Members) == 4, nil
	})
	for deadline := time.Now().Add(30 * time.Second); len(dave.groups.net.Peers(gid)) < 2 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	alice.stop()
	held := r14InfoKeys(t, dave, gid)
	if _, err := dave.LeaveGroup(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	// Dave's node tells the members (gossip, a relay); the test hands
	// Carol his log too, so as not to wait on the mesh.
	p := payload{Kind: "group-log", Group: g.ID, Log: r14LogRaws(t, dave, gid)}
	if err := carol.db.Update(func(tx *storage.Txn) error { return carol.applyGroupLog(tx, dave.keys.account.ID(), p) }); err != nil {
		t.Fatal(err)
	}
	carol.refreshTouched()
	eventually(t, "Dave's leave at Carol", func() (bool, error) {
		c, err := carol.Group(ctx, g.ID)
		return err == nil && len(c.Members) == 3, nil
	})
	secret := "set after Dave left"
	if _, err := carol.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: ptr(secret)}); err != nil {
		t.Fatal(err)
	}
	sealed := carol.reloadGroup(t, gid).State().Title
	if got, err := openInfo(held, sealed); err == nil && got == secret {
		t.Fatal("Dave, who left, reads the title an admin set after his leave (the owner was offline: no one turned the key)")
	}
}

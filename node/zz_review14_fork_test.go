package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/epochkey"
	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/node/chat"
)

// TestReview14ConcurrentRemovalsInfoKey: two admins remove at once in a
// large epoch-tier group. Alice (the owner) removes Dave; Bob (an admin),
// offline and not yet aware of it, removes Carol. Bob's node turns the
// info key (KB) and posts it under a new epoch key it draws on its own
// branch, where Dave is still a member: wrapped for Dave's device too.
// Alice's branch wins the fork (the owner's). When Bob's envelopes reach
// Alice (as they do once he is back: his unconfirmed posts go to the
// relay), her node must not take KB as the key it seals with, since
// Dave, removed, can unwrap the epoch KB came under. The attack
// succeeds if Dave reads the title Alice sets after all this.
func TestReview14ConcurrentRemovalsInfoKey(t *testing.T) {
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
	addEachOther(t, bob, dave, infos["bob"], infos["dave"])
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "large")
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
	for _, n := range []*testNode{bob, carol, dave} {
		eventually(t, "the group at every member", func() (bool, error) {
			got, err := n.Group(ctx, g.ID)
			return err == nil && len(got.Members) == 4 && got.Title == "large", nil
		})
	}
	eventually(t, "Bob an admin", func() (bool, error) {
		got, err := bob.Group(ctx, g.ID)
		return err == nil && got.Role == "admin", nil
	})
	time.Sleep(time.Second)

	// Bob goes offline (no one reaches him, he reaches no one).
	bob = r14Isolated(t, bob, largeEpochGroups)

	// Alice removes Dave: a new info key KA, posted under a new epoch.
	if _, err := alice.RemoveGroupMember(ctx, g.ID, "dave"); err != nil {
		t.Fatal(err)
	}
	ka := r14InfoKeys(t, alice, gid)
	kaID := ka[len(ka)-1].ID
	eventually(t, "Alice's post of KA", func() (bool, error) { return !r14HasPost(t, alice, gid), nil })

	// Bob, offline, removes Carol: a fork at the same height.
	if _, err := bob.RemoveGroupMember(ctx, g.ID, infos["carol"].AccountID); err != nil {
		t.Fatal(err)
	}
	kb := r14InfoKeys(t, bob, gid)
	kbID := kb[len(kb)-1].ID
	eventually(t, "Bob's post of KB", func() (bool, error) { return !r14HasPost(t, bob, gid), nil })
	envs := r14Unconf(t, bob, gid)
	if len(envs) == 0 {
		t.Fatal("no envelope of Bob's kept")
	}
	// Alice takes Bob's envelopes: his entry first (the fork), then his
	// key's copies, then his posts.
	for _, kind := range []groupmsg.Kind{groupmsg.KindState, groupmsg.KindGrants, groupmsg.KindEpoch} {
		for _, env := range envs {
			m := r14Message(t, gid, env, bob)
			if m.Kind != kind {
				continue
			}
			if err := alice.takeEnvelope(gid, m); err != nil {
				t.Logf("Alice took Bob's envelope of kind %d: %v", kind, err)
			}
		}
	}
	// The fork's tie is decided by the entries' hashes, so either branch
	// may win. If Bob's did, the member out is Carol, who holds KA (Alice
	// posted it under an epoch of Alice's branch, where Carol stayed):
	// the same attack the other way round.
	st := alice.reloadGroup(t, gid).State()
	bobWon := st.Role(carol.keys.account.ID()) == 0
	if bobWon == (st.Role(dave.keys.account.ID()) == 0) {
		t.Fatalf("after the fork at Alice: Dave %v, Carol %v", st.Role(dave.keys.account.ID()), st.Role(carol.keys.account.ID()))
	}
	keys := r14InfoKeys(t, alice, gid)
	t.Logf("Alice's keys end %08x (KA %08x, KB %08x)", keys[len(keys)-1].ID, kaID, kbID)

	// Dave's device, with the copies Bob's node wrapped for it (the relay
	// keeps them once Bob is back), gets every info key Bob posted.
	var daveKeys []infoKey
	var epochs []epochkey.Key
	for _, env := range envs {
		m := r14Message(t, gid, env, bob)
		if m.Kind != groupmsg.KindGrants {
			continue
		}
		p, err := epochkey.ParseGrants(m.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if k, err := p.Unwrap(dave.keys.device); err == nil {
			epochs = append(epochs, k)
		} else if !errors.Is(err, epochkey.ErrNoGrant) {
			t.Fatal(err)
		}
	}
	for _, env := range envs {
		if b, ok := r14OpenEpoch(gid, epochs, env); ok && b.Info != nil {
			daveKeys = append(daveKeys, *b.Info)
		}
	}
	t.Logf("Dave unwrapped %d epoch keys of Bob's and %d info keys", len(epochs), len(daveKeys))

	out, outKeys := "Dave", append(r14InfoKeys(t, dave, gid), daveKeys...)
	if bobWon {
		out, outKeys = "Carol", r14InfoKeys(t, carol, gid)
		if !r14Contains(outKeys, kaID) {
			t.Fatalf("Carol does not hold KA %08x: the case is not set up", kaID)
		}
	}
	secret := "after the removal"
	if _, err := alice.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: ptr(secret)}); err != nil {
		t.Fatal(err)
	}
	sealed := alice.reloadGroup(t, gid).State().Title
	if got, err := openInfo(outKeys, sealed); err == nil && got == secret {
		t.Fatalf("%s, removed, reads the title Alice set after the removal (sealed with key %08x; KA %08x, KB %08x)", out, r14SealID(t, sealed), kaID, kbID)
	}
	if r14Contains(outKeys, r14SealID(t, sealed)) {
		t.Fatalf("Alice sealed with a key %s holds", out)
	}
}

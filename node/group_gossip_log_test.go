package node

import (
	"context"
	"encoding/hex"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/storage"
)

// largeGroups makes every group of two members or more a large one:
// its changes reach members over gossip and relays' history.
func largeGroups(c *Config) { c.GroupPairwiseLogLimit = 1 }

// holdsEntry reports whether n holds e at its place in group's log.
func holdsEntry(n *testNode, group groupstate.GroupID, e *groupstate.Entry) func() (bool, error) {
	return func() (bool, error) {
		var l *groupstate.Log
		_ = n.db.View(func(tx *storage.Txn) (err error) {
			l, err = n.loadGroupTx(tx, group)
			return err
		})
		return l != nil && l.Head().Seq >= e.Seq && l.Entries(e.Seq)[0].Hash() == e.Hash(), nil
	}
}

// TestLargeGroupChangesOverGossip: in a group over the pairwise limit,
// a change reaches the members as an entry over gossip — Alice adds
// Carol and Bob learns of it with no log sent to him; Alice promotes
// Bob; Dave, a stranger, joins by a link and every member learns his
// join from gossip or the relay; Bob, offline meanwhile, takes Alice's
// next change from the relay's history when he is back; and Dave posts
// to the group.
func TestLargeGroupChangesOverGossip(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	carolHome, carolInfo := initHome(t, "carol")
	daveHome, _ := initHome(t, "dave")
	alice := startNodeWith(t, aliceHome, largeGroups, relay.addr)
	bob := startNodeWith(t, bobHome, largeGroups, relay.addr)
	carol := startNodeWith(t, carolHome, largeGroups, relay.addr)
	dave := startNodeWith(t, daveHome, largeGroups, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	addEachOther(t, alice, carol, aliceInfo, carolInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "large")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob in the group", holdsEntry(bob, group, alice.reloadGroup(t, group).Head()))
	// Bob and Alice in each other's topic first: the change below goes
	// by gossip alone.
	eventually(t, "Alice and Bob in the group's topic", func() (bool, error) {
		return len(alice.groups.net.Peers(group)) > 0 && len(bob.groups.net.Peers(group)) > 0, nil
	})
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	head := alice.reloadGroup(t, group).Head()
	eventually(t, "Carol's add at Bob", holdsEntry(bob, group, head))
	eventually(t, "Carol in the group", holdsEntry(carol, group, head))
	if _, err := alice.SetGroupRole(ctx, g.ID, "bob", "admin"); err != nil {
		t.Fatal(err)
	}
	head = alice.reloadGroup(t, group).Head()
	eventually(t, "Bob's promotion at Carol", holdsEntry(carol, group, head))

	inv, err := alice.CreateInvite(ctx, g.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "Dave joins by the link", func() (bool, error) {
		_, err := dave.JoinGroup(ctx, inv.Link)
		return err == nil, err
	})
	join := dave.reloadGroup(t, group).Head()
	if join.Change.Kind != groupstate.KindJoin {
		t.Fatalf("Dave's last entry is a %s", join.Change.Kind)
	}
	for _, m := range []*testNode{alice, bob, carol} {
		eventually(t, "Dave's join at every member", holdsEntry(m, group, join))
	}

	// Bob away: Alice's next change reaches him from the relay.
	bob.stop()
	if _, err := alice.SetGroupRole(ctx, g.ID, "bob", "member"); err != nil {
		t.Fatal(err)
	}
	head = alice.reloadGroup(t, group).Head()
	eventually(t, "Bob's demotion at Carol", holdsEntry(carol, group, head))
	bob = startNodeWith(t, bobHome, largeGroups, relay.addr)
	eventually(t, "Bob's demotion at Bob, back", holdsEntry(bob, group, head))

	if _, err := dave.SendGroup(ctx, g.ID, "dave in the large group"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Dave's post at Carol", func() (bool, error) {
		ms, err := carol.GroupMessages(ctx, g.ID)
		if err != nil {
			return false, err
		}
		for _, m := range ms {
			if m.Text == "dave in the large group" {
				return true, nil
			}
		}
		return false, nil
	})
}

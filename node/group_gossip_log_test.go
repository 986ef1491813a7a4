package node

import (
	"errors"
	"slices"

	"bytes"
	"github.com/peergram/peergram/node/chat"

	"context"
	"encoding/hex"
	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/relay/groupnet"
	"github.com/peergram/peergram/relay/history"
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

// TestRemovedMemberLearnsWinningFork: in a large group Bob, an admin,
// removes Carol while Alice, the owner, demotes Bob; Carol takes Bob's
// removal first and leaves the topic. Alice's demotion wins the fork
// (the higher role), so Carol was never removed: she must learn it from
// the relay's history, off the topic, and be a member again everywhere
// (CI saw her stay out when the removal reached her first).
func TestRemovedMemberLearnsWinningFork(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	carolHome, carolInfo := initHome(t, "carol")
	alice := startNodeWith(t, aliceHome, largeGroups, relay.addr)
	bob := startNodeWith(t, bobHome, largeGroups, relay.addr)
	carol := startNodeWith(t, carolHome, largeGroups, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	addEachOther(t, alice, carol, aliceInfo, carolInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "fork")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob", "carol"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "everyone in the topic", func() (bool, error) {
		return len(alice.groups.net.Peers(group)) >= 2 && len(bob.groups.net.Peers(group)) >= 2 && len(carol.groups.net.Peers(group)) >= 2, nil
	})
	if _, err := alice.SetGroupRole(ctx, g.ID, "bob", "admin"); err != nil {
		t.Fatal(err)
	}
	promoted := alice.reloadGroup(t, group).Head()
	eventually(t, "Bob an admin at Bob", holdsEntry(bob, group, promoted))
	eventually(t, "Bob an admin at Carol", holdsEntry(carol, group, promoted))

	// Alice's demotion, signed now on the promotion: concurrent with
	// the removal that follows, and published only after it.
	demote, err := groupstate.Sign(alice.keys.device, alice.keys.cert, promoted, entryTime(alice.cfg.Now().UnixMilli(), promoted),
		groupstate.Change{Kind: groupstate.KindDemote, Account: bob.keys.account.ID()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.RemoveGroupMember(ctx, g.ID, carolInfo.AccountID); err != nil {
		t.Fatal(err)
	}
	removal := bob.reloadGroup(t, group).Head()
	eventually(t, "Carol out, off the topic", func() (bool, error) {
		carol.groups.mu.Lock()
		_, running := carol.groups.loops[group]
		carol.groups.mu.Unlock()
		return !running && carol.reloadGroup(t, group).State().Role(carol.keys.account.ID()) == groupstate.RoleNone, nil
	})
	eventually(t, "the removal at Alice", holdsEntry(alice, group, removal))
	// Carol's history loop has taken what the relay holds, and starts a
	// round after the removal (any change to another group of hers does
	// so): a round started before, still asking for this group's head,
	// would bring the entry by chance.
	hc := history.NewClient(carol.host)
	var relayHead uint64
	caughtUp := func() (bool, error) {
		heads, err := hc.Heads(ctx, relay.h.ID(), []history.Head{{Group: group}}, 0)
		if err != nil || len(heads) != 1 || heads[0].Seq <= relayHead {
			return false, nil
		}
		if carol.cursor(group, relay.h.ID()) < heads[0].Seq {
			return false, nil
		}
		relayHead = heads[0].Seq
		return true, nil
	}
	eventually(t, "Carol's history cursor at the relay's head", caughtUp)
	carol.wakeHistory()
	time.Sleep(historySettle)
	// Alice posts while Carol is out on her branch: Carol, watching the
	// group's log, neither reads the post nor holds it for later.
	if _, err := alice.SendGroup(ctx, g.ID, "while Carol is out"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the post at the relay, taken by Carol's history loop", caughtUp)
	if err := carol.db.View(func(tx *storage.Txn) error {
		n, err := tx.Count(carol.st.groupPend, group[:])
		if err == nil && n > 0 {
			t.Errorf("Carol, out of the group, holds %d of its posts", n)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}

	rawDemote, err := demote.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	envs := takeOwnEntry(t, alice, group, demote)
	if !bytes.Equal(mustEntryBytes(t, alice.reloadGroup(t, group).Head()), rawDemote) {
		t.Fatal("Alice's demotion did not win the fork at Alice")
	}
	alice.publishEnvelopes(ctx, group, envs)

	eventually(t, "Alice's demotion at Bob", holdsEntry(bob, group, demote))
	eventually(t, "Carol a member again, on the topic", func() (bool, error) {
		carol.groups.mu.Lock()
		_, running := carol.groups.loops[group]
		carol.groups.mu.Unlock()
		ok, err := holdsEntry(carol, group, demote)()
		return ok && running && carol.reloadGroup(t, group).State().Role(carol.keys.account.ID()) == groupstate.RoleMember, err
	})

	// Back in, Carol reads what Alice sends from now on (her chain, turned
	// on the removal, reaches Carol) and the title Alice sets (under the
	// info key the removal turned).
	eventually(t, "Carol and Alice in each other's topic", func() (bool, error) {
		return len(carol.groups.net.Peers(group)) > 0, nil
	})
	if _, err := alice.SendGroup(ctx, g.ID, "welcome back"); err != nil {
		t.Fatal(err)
	}
	title := "after the fork"
	if _, err := alice.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: &title}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Carol reads Alice's post and title", func() (bool, error) {
		msgs, err := carol.GroupMessages(ctx, g.ID)
		if err != nil {
			return false, err
		}
		for _, m := range msgs {
			if m.Text == "while Carol is out" {
				return false, errors.New("Carol reads the post sent while she was out")
			}
		}
		info, err := carol.Group(ctx, g.ID)
		return err == nil && slices.ContainsFunc(msgs, func(m chat.GroupMessage) bool { return m.Text == "welcome back" }) && info.Title == title, nil
	})
}

func mustEntryBytes(t *testing.T, e *groupstate.Entry) []byte {
	t.Helper()
	b, err := e.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// takeOwnEntry has n's node take e, an entry of its own device signed
// outside changeGroup (a test's concurrent change), as its node takes
// its own changes: sealed as its envelope (kept until a relay shows
// it), taken into its log. It returns the envelopes, for the caller to
// publish when the test is ready.
func takeOwnEntry(t *testing.T, n *testNode, group groupstate.GroupID, e *groupstate.Entry) [][]byte {
	t.Helper()
	var envs [][]byte
	if err := n.db.Update(func(tx *storage.Txn) (err error) {
		envs, err = n.sealEntries(tx, group, []*groupstate.Entry{e})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	env, err := groupmsg.Open(group, envs[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := n.takeStateEntry(group, &groupnet.Message{Envelope: env, Account: n.keys.account.ID(), ID: groupmsg.ID(envs[0]), Raw: envs[0], Entry: e}); err != nil {
		t.Fatal(err)
	}
	return envs
}

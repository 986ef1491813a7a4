package node

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/storage"
)

// TestConcurrentAppendsConflict: a member's own change and an entry taken
// from gossip, both appended at the same place of the log by two
// transactions that overlap, must not overwrite each other. Carol leaves
// a large group while her node is taking the owner's change signed on
// the same head (a new title): the later commit used to win silently,
// so her leave vanished from her own log after it had been published —
// the owner's entry then beat it at every other member, her node never
// learnt that its leave had lost, and she stayed a member everywhere
// (seen as a flake of TestLargeGroupInfoKeyUnderEpoch under load). Now
// the two transactions conflict, the loser is run again on the winner's
// log, and the fork rule applies: the owner's entry stays, Carol's node
// sees its leave dropped and leaves again after it.
func TestConcurrentAppendsConflict(t *testing.T) {
	tr := newLargeTrio(t, "race")
	alice, bob, carol, group := tr.alice, tr.bob, tr.carol, tr.group
	ctx := context.Background()
	head := alice.reloadGroup(t, group).Head()

	title := "concurrent"
	change, err := groupstate.Sign(alice.keys.device, alice.keys.cert, head, entryTime(alice.cfg.Now().UnixMilli(), head),
		groupstate.Change{Kind: groupstate.KindTitle, Text: title})
	if err != nil {
		t.Fatal(err)
	}
	changeRaw := mustEntryBytes(t, change)
	// Carol's node takes the owner's entry in one transaction; her leave
	// commits while that transaction is open (first attempt only: a
	// transaction run again sees the leave).
	attempts := 0
	if err := carol.db.Update(func(tx *storage.Txn) error {
		attempts++
		p := payload{Kind: "group-log", Group: tr.id, Log: [][]byte{changeRaw}, From: change.Seq, viaGroup: true}
		if err := carol.applyGroupLog(tx, alice.keys.account.ID(), p); err != nil {
			return err
		}
		if attempts == 1 {
			if _, err := carol.LeaveGroup(ctx, tr.id); err != nil {
				t.Errorf("Carol's leave: %v", err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("Carol's node took the owner's entry in %d attempts", attempts)
	// The owner's node holds its own entry and sends it to the group.
	envs := takeOwnEntry(t, alice, group, change)
	alice.publishEnvelopes(ctx, group, envs)
	carol.refreshTouched()

	left := func(n *testNode) func() (bool, error) {
		return func() (bool, error) {
			l := n.reloadGroup(t, group)
			if l.State().Role(carol.keys.account.ID()) == groupstate.RoleNone && l.State().Title == title {
				return true, nil
			}
			var b strings.Builder
			for _, e := range l.Entries(0) {
				fmt.Fprintf(&b, " %d:%s", e.Seq, e.Change.Kind)
			}
			return false, fmt.Errorf("log%s", b.String())
		}
	}
	eventually(t, "Carol out at Carol, with the owner's title", left(carol))
	eventually(t, "Carol out at Alice, with the owner's title", left(alice))
	eventually(t, "Carol out at Bob, with the owner's title", left(bob))
}

// largeTrio is a large group (its log over gossip and a relay's history)
// of Alice (owner), Bob and Carol, each a contact of Alice, on one
// relay, created with title and held by all three.
type largeTrio struct {
	relay             *testRelay
	alice, bob, carol *testNode
	id                string // the group's ID as the API takes it
	group             groupstate.GroupID
}

func newLargeTrio(t *testing.T, title string) largeTrio {
	t.Helper()
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
	g, err := alice.CreateGroup(ctx, title)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob", "carol"}); err != nil {
		t.Fatal(err)
	}
	head := alice.reloadGroup(t, group).Head()
	eventually(t, "Bob in", holdsEntry(bob, group, head))
	eventually(t, "Carol in", holdsEntry(carol, group, head))
	return largeTrio{relay: relay, alice: alice, bob: bob, carol: carol, id: g.ID, group: group}
}

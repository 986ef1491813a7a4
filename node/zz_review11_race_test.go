package node

import (
	"context"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/storage"
)

func rv11Head(n *testNode, group groupstate.GroupID) *groupstate.Entry {
	var l *groupstate.Log
	_ = n.db.View(func(tx *storage.Txn) (err error) {
		l, err = n.loadGroupTx(tx, group)
		return err
	})
	if l == nil {
		return nil
	}
	return l.Head()
}

// TestReview11RemovalRace (held if it passes): in a large group the
// owner demotes Bob, an admin, while Bob removes Carol; both entries
// compete for the same place over gossip. Every member must end with the
// same log: the owner's entry wins (higher role), Carol stays.
func TestReview11RemovalRace(t *testing.T) {
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
	g, err := alice.CreateGroup(ctx, "race")
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
	head := alice.reloadGroup(t, group).Head()
	eventually(t, "Bob an admin at Bob", holdsEntry(bob, group, head))
	eventually(t, "Bob an admin at Carol", holdsEntry(carol, group, head))
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if _, err := alice.SetGroupRole(ctx, g.ID, "bob", "member"); err != nil {
			t.Error(err)
		}
	}()
	go func() {
		defer wg.Done()
		if _, err := bob.RemoveGroupMember(ctx, g.ID, carolInfo.AccountID); err != nil {
			t.Logf("Bob's removal: %v", err)
		}
	}()
	wg.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for {
		a, b, c := rv11Head(alice, group), rv11Head(bob, group), rv11Head(carol, group)
		same := a != nil && b != nil && c != nil && a.Hash() == b.Hash() && b.Hash() == c.Hash()
		if same && a.Change.Kind == groupstate.KindDemote {
			return
		}
		if time.Now().After(deadline) {
			desc := func(e *groupstate.Entry) string {
				if e == nil {
					return "no group"
				}
				return e.Change.Kind.String() + " at " + string(rune('0'+e.Seq))
			}
			t.Fatalf("members differ: Alice %s, Bob %s, Carol %s", desc(a), desc(b), desc(c))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

package node

import (
	"context"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	"github.com/peergram/peergram/storage"
)

// TestHistoryWaitsForUnknownSender: Bob holds no device list of Carol, a
// member who is not his contact (as while its fetch is still to come),
// when her post arrives. Gossip's validator ignores it; the relay's
// history brings it, and the history loop's cursor stops before it until
// Bob's node knows Carol's devices again, then takes it. Before, the
// loop passed it and the post was lost for Bob (a CI run of
// TestGroupNonContacts under load).
func TestHistoryWaitsForUnknownSender(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	homes := map[string]string{}
	infos := map[string]Info{}
	nodes := map[string]*testNode{}
	for _, name := range []string{"alice", "bob", "carol"} {
		homes[name], infos[name] = initHome(t, name)
		nodes[name] = startNode(t, homes[name], relay.addr)
	}
	alice, bob, carol := nodes["alice"], nodes["bob"], nodes["carol"]
	addEachOther(t, alice, bob, infos["alice"], infos["bob"])
	addEachOther(t, alice, carol, infos["alice"], infos["carol"])
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "Strangers again")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob", "carol"}); err != nil {
		t.Fatal(err)
	}
	gid, _ := hex.DecodeString(g.ID)
	group := [32]byte(gid)
	for _, n := range []*testNode{bob, carol} {
		eventually(t, "the group", func() (bool, error) {
			st := n.groupState(group)
			return st != nil && len(st.Members) == 3, nil
		})
	}
	// Bob's node forgets Carol's devices.
	eventually(t, "Carol's list at Bob", func() (bool, error) {
		var has bool
		err := bob.db.View(func(tx *storage.Txn) error {
			c, err := bob.st.getContact(tx, carol.keys.account.ID())
			has = err == nil && len(c.List) > 0
			return nil
		})
		return has, err
	})
	if err := bob.db.Update(func(tx *storage.Txn) error {
		c, err := bob.st.getContact(tx, carol.keys.account.ID())
		if err != nil {
			return err
		}
		c.List = nil
		return bob.st.putContact(tx, c)
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the device map is refreshed at most once a second
	bob.refreshDevices()
	if _, err := (*groupMembers)(bob.Node).MayPublish(group, carol.keys.device.ID(), 1); err == nil {
		t.Fatal("setup: Bob still knows Carol's device")
	}
	if _, err := carol.SendGroup(ctx, g.ID, "from a stranger"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Carol's post at Bob", func() (bool, error) {
		return slices.Contains(groupTexts(t, bob, g.ID), "from a stranger"), nil
	})
}

package node

import (
	"context"
	"encoding/hex"
	"testing"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/storage"
)

// TestInvitationReplacesLeftLogWhole: a node that was removed from a group
// still holds the group's log, up to its removal. An invitation to the
// same group whose log is shorter replaces that log whole: no entry of
// the old one may stay behind past the new head (left there, the stale
// removal would come back on the next load and undo the join).
func TestInvitationReplacesLeftLogWhole(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := bob.CreateGroup(ctx, "held log")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.AddGroupMembers(ctx, g.ID, []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	gid, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(gid)
	eventually(t, "Alice in the group", func() (bool, error) {
		got, err := alice.Group(ctx, g.ID)
		return err == nil && len(got.Members) == 2, nil
	})
	if _, err := bob.RemoveGroupMember(ctx, g.ID, "alice"); err != nil {
		t.Fatal(err)
	}
	self := alice.keys.account.ID()
	eventually(t, "Alice's removal at Alice", func() (bool, error) {
		return alice.reloadGroup(t, group).State().Role(self) == groupstate.RoleNone, nil
	})
	held := alice.reloadGroup(t, group)
	removal := held.Head().Seq
	// Bob stops: nothing should bring the removal back to Alice now but
	// her own store.
	bob.stop()

	// An invitation whose log stops before the removal (Alice a member).
	if err := alice.db.Update(func(tx *storage.Txn) error {
		p := payload{Kind: "group-log", Group: g.ID}
		for _, e := range held.Entries(0)[:removal] {
			raw, err := e.MarshalBinary()
			if err != nil {
				return err
			}
			p.Log = append(p.Log, raw)
		}
		return alice.storeInvitation(tx, group, bob.keys.account.ID(), bob.keys.account.ID(), p)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.JoinGroup(ctx, g.ID); err != nil {
		t.Fatalf("accepting the invitation: %v", err)
	}
	var stale bool
	if err := alice.db.View(func(tx *storage.Txn) error {
		var err error
		stale, err = tx.Has(alice.st.groupLog, groupEntryKey(group, removal))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if stale {
		t.Fatalf("entry %d of the replaced log (the removal) is still stored after the invitation's shorter log replaced it", removal)
	}
}

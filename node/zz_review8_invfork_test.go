package node

import (
	"context"
	"encoding/hex"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/storage"
)

// TestReview8InvitationOverwritesLog: JoinGroup from an invitation writes
// the invitation's entries into groups.log without looking at what the
// node holds of that group already. Mallory, a member Bob does not know,
// sends Bob a fork of the group's log in which she adds him: it is kept
// as an invitation. Alice, Bob's contact, then makes an invite link and adds Bob in the
// real log; Bob joins at once (the invitation stays, listed beside the
// group). Bob accepts the listed invitation: Mallory's fork overwrites
// the start of his log, whose stored entries no longer chain; the group
// disappears from his node (HEAD~2 leaves such a group out) and every
// later log of it fails to apply.
func TestReview8InvitationOverwritesLog(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	homes := map[string]string{}
	infos := map[string]Info{}
	nodes := map[string]*testNode{}
	for _, name := range []string{"alice", "bob", "mallory"} {
		homes[name], infos[name] = initHome(t, name)
		nodes[name] = startNode(t, homes[name], relay.addr)
	}
	alice, bob, mallory := nodes["alice"], nodes["bob"], nodes["mallory"]
	addEachOther(t, alice, bob, infos["alice"], infos["bob"])
	addEachOther(t, alice, mallory, infos["alice"], infos["mallory"])
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "Overwrite")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"mallory"}); err != nil {
		t.Fatal(err)
	}
	gid, _ := hex.DecodeString(g.ID)
	group := [32]byte(gid)
	eventually(t, "the group at Mallory", func() (bool, error) {
		st := mallory.groupState(group)
		return st != nil && st.Seq == alice.groupState(group).Seq, nil
	})

	// Mallory's fork: she adds Bob on the current head, and hands it to
	// Bob only.
	var fork payload
	if err := mallory.db.View(func(tx *storage.Txn) error {
		l, err := mallory.findGroup(tx, g.ID)
		if err != nil {
			return err
		}
		e, err := groupstate.Sign(mallory.keys.device, mallory.keys.cert, l.Head(), time.Now().UnixMilli(), groupstate.Change{Kind: groupstate.KindAdd, Account: bob.keys.account.ID()})
		if err != nil {
			return err
		}
		if _, err := l.Add(e); err != nil {
			return err
		}
		fork = payload{Kind: "group-log", Group: g.ID}
		for _, e := range l.Entries(0) {
			raw, _ := e.MarshalBinary()
			fork.Log = append(fork.Log, raw)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := bob.db.Update(func(tx *storage.Txn) error {
		return bob.applyGroupLog(tx, mallory.keys.account.ID(), fork)
	}); err != nil {
		t.Fatal(err)
	}

	// The real log: Alice makes a link, then adds Bob, her contact.
	if _, err := alice.CreateInvite(ctx, g.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob in the group", func() (bool, error) {
		st := bob.groupState(group)
		return st != nil && st.Seq == alice.groupState(group).Seq, nil
	})
	gs, _ := bob.Groups(ctx)
	for _, x := range gs {
		t.Logf("Bob lists %s %q as %s", x.ID[:8], x.Title, x.Role)
	}
	// Fixed: joined through a contact, the earlier invitation to the
	// same group is dropped; the group is listed once.
	if len(gs) != 1 || gs[0].Role != "member" {
		t.Fatalf("Bob lists %d groups (want the group once, as a member)", len(gs))
	}

	// Bob accepts what his node lists as an invitation.
	_, jerr := bob.JoinGroup(ctx, g.ID)
	t.Logf("JoinGroup: %v", jerr)
	var lerr error
	_ = bob.db.View(func(tx *storage.Txn) error {
		_, lerr = bob.loadGroupTx(tx, groupstate.GroupID(group))
		return nil
	})
	gs, _ = bob.Groups(ctx)
	if lerr != nil || len(gs) == 0 {
		t.Fatalf("accepting the invitation broke Bob's stored log of the group: load: %v; Bob's groups now: %d", lerr, len(gs))
	}
}

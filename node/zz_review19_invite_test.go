package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/storage"
)

// r19Notes lists groups.invfrom's keys (the claim key left out), and
// how many of them are under from whose invitation is held.
func r19Notes(t *testing.T, n *testNode, from identity.AccountID) (all int, live int) {
	t.Helper()
	if err := n.db.View(func(tx *storage.Txn) error {
		return tx.Iterate(n.st.groupInvFrom, nil, func(k, _ []byte) error {
			if string(k) == string(invClaimKey) {
				return nil
			}
			all++
			if len(k) < 64 {
				t.Errorf("a note of %d bytes", len(k))
				return nil
			}
			if string(k[:32]) == string(from[:]) {
				if ok, err := tx.Has(n.st.groupInv, k[32:]); err != nil {
					return err
				} else if ok {
					live++
				}
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return all, live
}

// TestReview19InvitationIndexFollowsAcceptAndJoin (held): the per-sender
// index stays exact through every way an invitation goes — accepted by
// JoinGroup (whole log), made moot by a contact's log (applyWholeLog's
// join: dropInvitations), an end dropped and its key (group ‖ adder)
// taken again by another sender. After each, the sender's live notes
// equal its held invitations, no note outlives its invitation, and a
// sender that had 5 gets a place back once one is gone; another
// sender's count never moves.
func TestReview19InvitationIndexFollowsAcceptAndJoin(t *testing.T) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	self := alice.keys.account.ID()
	mallory, victor := r12NewUser(t, "mallory"), r12NewUser(t, "victor")
	deliver := func(from *r12User) (groupstate.GroupID, [][]byte) {
		g, raws, _ := r18Group(t, from, nil, self)
		r18Deliver(t, alice, from.id(), payload{Kind: "group-log", Group: hex.EncodeToString(g[:]), Log: raws})
		return g, raws
	}
	var mine []groupstate.GroupID
	var mineLogs [][][]byte
	for range maxInvitationsBy {
		g, raws := deliver(mallory)
		mine, mineLogs = append(mine, g), append(mineLogs, raws)
	}
	vg, _ := deliver(victor)
	over, _ := deliver(mallory)
	if r18HasInvitation(t, alice, over) || !r18HasInvitation(t, alice, vg) {
		t.Fatal("the bound per sender does not hold: the premise")
	}
	check := func(when string, wantMallory int) {
		t.Helper()
		all, live := r19Notes(t, alice, mallory.id())
		_, vlive := r19Notes(t, alice, victor.id())
		if total := r18Invitations(t, alice); all != total {
			t.Errorf("%s: %d notes for %d invitations (stale notes)", when, all, total)
		}
		if live != wantMallory || vlive != 1 {
			t.Errorf("%s: mallory's live notes %d (want %d), victor's %d (want 1)", when, live, wantMallory, vlive)
		}
	}
	check("5 held", maxInvitationsBy)

	// Accepted by the user.
	if _, err := alice.JoinGroup(context.Background(), hex.EncodeToString(mine[0][:])); err != nil {
		t.Fatal(err)
	}
	check("one accepted", maxInvitationsBy-1)
	g6, _ := deliver(mallory)
	if !r18HasInvitation(t, alice, g6) {
		t.Fatal("a place freed by an accepted invitation was not given back")
	}
	check("one accepted, one more", maxInvitationsBy)

	// Made moot: the group's log joined another way (the contact path
	// writes it: here applyWholeLog with accepted, as an accept does).
	p := payload{Kind: "group-log", Group: hex.EncodeToString(mine[1][:]), Log: mineLogs[1], accepted: true}
	if err := alice.db.Update(func(tx *storage.Txn) error { return alice.applyWholeLog(tx, mallory.id(), p) }); err != nil {
		t.Fatal(err)
	}
	if r18HasInvitation(t, alice, mine[1]) {
		t.Fatal("the invitation to a group joined stays")
	}
	check("one joined another way", maxInvitationsBy-1)

	// An end kept under group ‖ adder; dropped; the same key delivered
	// by another sender (victor replays the same end).
	_, _, add := r18Group(t, victor, nil, self)
	raw, _ := add.MarshalBinary()
	var fake groupstate.GroupID
	_, _ = rand.Read(fake[:])
	end := payload{Kind: "group-log", Group: hex.EncodeToString(fake[:]), From: add.Seq, Log: [][]byte{raw}}
	r18Deliver(t, alice, mallory.id(), end)
	check("mallory's end", maxInvitationsBy)
	if err := alice.db.Update(func(tx *storage.Txn) error { return alice.dropInvitations(tx, fake[:]) }); err != nil {
		t.Fatal(err)
	}
	check("mallory's end dropped", maxInvitationsBy-1)
	r18Deliver(t, alice, victor.id(), end)
	all, live := r19Notes(t, alice, mallory.id())
	_, vlive := r19Notes(t, alice, victor.id())
	if all != r18Invitations(t, alice) || live != maxInvitationsBy-1 || vlive != 2 {
		t.Errorf("the same end key, taken by victor after mallory's was dropped: notes %d for %d invitations, mallory %d, victor %d",
			all, r18Invitations(t, alice), live, vlive)
	}
}

package node

import (
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/storage"
)

// TestInvitationPlacesPerAccount: invitations from accounts that are not
// contacts are held in at most maxInvitations places. Before, one
// stranger could take all of them with as many groups, for 30 days, and
// every real invitation after was dropped; now one account holds at most
// maxInvitationsBy, and the others' still find room until the places
// are all taken.
func TestInvitationPlacesPerAccount(t *testing.T) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	invite := func(by identity.AccountID) {
		t.Helper()
		var g groupstate.GroupID
		_, _ = rand.Read(g[:])
		p := payload{Kind: "group-log", Group: hex.EncodeToString(g[:]), Log: [][]byte{[]byte("creation")}}
		if err := alice.db.Update(func(tx *storage.Txn) error { return alice.storeInvitation(tx, g, by, by, p) }); err != nil {
			t.Fatal(err)
		}
	}
	held := func() int {
		t.Helper()
		var c int
		if err := alice.db.View(func(tx *storage.Txn) (err error) {
			c, err = tx.Count(alice.st.groupInv, nil)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	stranger := func() identity.AccountID {
		var a identity.AccountID
		_, _ = rand.Read(a[:])
		return a
	}
	mallory := stranger()
	for range maxInvitations {
		invite(mallory)
	}
	if got := held(); got != maxInvitationsBy {
		t.Fatalf("one account's %d invitations take %d places, want %d", maxInvitations, got, maxInvitationsBy)
	}
	invite(stranger())
	if got := held(); got != maxInvitationsBy+1 {
		t.Fatalf("another account's invitation: %d held, want %d", got, maxInvitationsBy+1)
	}
	for held() < maxInvitations {
		a := stranger()
		for range maxInvitationsBy {
			invite(a)
		}
	}
	if got := held(); got != maxInvitations {
		t.Fatalf("%d held, want at most %d", got, maxInvitations)
	}
}

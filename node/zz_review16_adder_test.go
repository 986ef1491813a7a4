package node

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"testing"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// r16SetKeys overwrites n's stored info keys of gid (a modified node).
func r16SetKeys(t *testing.T, n *testNode, gid groupstate.GroupID, keys []infoKey) {
	t.Helper()
	raw, err := json.Marshal(keys)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.db.Update(func(tx *storage.Txn) error { return tx.Set(n.st.groupKeys, infoKeysKey(gid), raw) }); err != nil {
		t.Fatal(err)
	}
}

// r16OwnerResends has Alice make a change, which sends the log and its
// keys (signed by her) to every member of the small group.
func r16OwnerResends(t *testing.T, alice *testNode, g chat.Group) {
	t.Helper()
	if _, err := alice.changeGroup(g.ID, func(tx *storage.Txn, l *groupstate.Log) ([]groupstate.Change, error) {
		return []groupstate.Change{{Kind: groupstate.KindPermissions, Perms: l.State().Perms &^ groupstate.PermPin}}, nil
	}); err != nil {
		t.Fatal(err)
	}
}

// (TestReview16ResignedKeyBlocksUpgrade, a finding — the newcomer's adder
// re-signing the owner's key with its own device kept the owner's copy
// out — is now a case of TestInfoKeyCopyReplaced.)

// TestReview16CollidingKeyID (FINDING, fixed: other bytes under a held
// ID are another key, and openInfo tries each). Attack: Bob hands the newcomer
// Dave, instead of the owner's key, a key of random bytes under the same
// ID. addInfoKeys keeps keys by ID, so the owner's genuine key, sent by
// Alice's node with her next change, is dropped as one Dave has already;
// openInfo stops at the first key of that ID. Dave never reads the
// group's title, description or photo reference sealed with it, and
// cannot seal (no key an admin signed), for as long as no removal turns a
// new key. Expected: a key from an admin (signed by one) is kept beside
// or in place of an unsigned or non-admin copy of the same ID; Dave reads
// the title once Alice's node sends the log.
func TestReview16CollidingKeyID(t *testing.T) {
	alice, bob, dave, g, gid := adderGroup(t)
	ctx := context.Background()
	keys := r14InfoKeys(t, bob, gid)
	for i := range keys {
		if _, err := rand.Read(keys[i].Key); err != nil {
			t.Fatal(err)
		}
		keys[i].By, keys[i].Sig = nil, nil
	}
	r16SetKeys(t, bob, gid, keys)
	addDave(t, bob, dave, g)
	r16OwnerResends(t, alice, g)
	head := alice.reloadGroup(t, gid).Head()
	eventually(t, "Alice's change at Dave", holdsEntry(dave, gid, head))
	eventually(t, "the title at Dave", func() (bool, error) {
		got, err := dave.Group(ctx, g.ID)
		return err == nil && got.Title == "forged keys", err
	})
	eventually(t, "Dave able to change the title", func() (bool, error) {
		_, err := dave.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: ptr("dave's title")})
		return err == nil, err
	})
}

// TestReview16DemotedAdminKey (HELD, passes). Attack: Carol, an admin,
// signs a key of Bob's making at the head; Alice then demotes her; Bob
// (a member) adds Dave and hands him that key as the newest. Dave must
// not seal with it (Carol is no longer an admin): he seals with the
// owner's, and Alice reads his title. Also: a key Alice signed for this
// group does not verify for another group (the signature binds it).
func TestReview16DemotedAdminKey(t *testing.T) {
	alice, bob, dave, g, gid := adderGroup(t)
	ctx := context.Background()
	if _, err := alice.SetGroupRole(ctx, g.ID, "bob", "admin"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob an admin at Bob", func() (bool, error) {
		got, err := bob.Group(ctx, g.ID)
		return err == nil && got.Role == "admin", err
	})
	// Bob, an admin, signs a key of his own (not sent to anyone).
	head := bob.reloadGroup(t, gid).Head()
	h := head.Hash()
	k, err := newInfoKey()
	if err != nil {
		t.Fatal(err)
	}
	k.At, k.AtHash = head.Seq, h[:]
	if err := bob.signInfoKey(gid, &k); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SetGroupRole(ctx, g.ID, "bob", "member"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob a member again at Bob", func() (bool, error) {
		got, err := bob.Group(ctx, g.ID)
		return err == nil && got.Role == "member", err
	})
	if err := bob.db.Update(func(tx *storage.Txn) error { return bob.addInfoKeys(tx, gid, []infoKey{k}) }); err != nil {
		t.Fatal(err)
	}
	addDave(t, bob, dave, g)
	if _, err := dave.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: ptr("dave's title")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Dave's title at Alice", func() (bool, error) {
		got, err := alice.Group(ctx, g.ID)
		return err == nil && got.Title == "dave's title", err
	})
	var other groupstate.GroupID
	other[0] = 1
	for _, k := range r14InfoKeys(t, alice, gid) {
		if _, ok := infoKeyMaker(gid, k); !ok {
			t.Fatal("Alice's key does not verify")
		}
		if _, ok := infoKeyMaker(other, k); ok {
			t.Fatal("Alice's key verifies for another group")
		}
	}
}

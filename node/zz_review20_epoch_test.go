package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/epochkey"
	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/history"
	"github.com/peergram/peergram/storage"
)

// review20PostEpoch returns the epoch n sealed its post id under (from
// the envelope n keeps until a relay shows it).
func review20PostEpoch(t *testing.T, n *testNode, gid [32]byte, id string) uint64 {
	t.Helper()
	raw, _ := hex.DecodeString(id)
	var env []byte
	if err := n.db.View(func(tx *storage.Txn) error {
		v, err := tx.Get(n.st.groupUnconf, groupSeenKey(gid, raw))
		if err == nil {
			env = append([]byte(nil), v[8:]...)
		}
		return err
	}); err != nil {
		t.Fatalf("the post's envelope: %v", err)
	}
	e, err := groupmsg.Open(gid, env)
	if err != nil {
		t.Fatal(err)
	}
	h, err := epochkey.PeekHeader(e.Payload)
	if err != nil {
		t.Fatal(err)
	}
	return h.Epoch
}

// TestReview20EpochMemberGrantsAndRace: in an epoch-tier group (Alice
// admin; Bob and Carol members):
//   - Carol, not an admin, draws a key of her own with the number an
//     admin's next key would have on the log, wraps it for Alice and
//     Bob and hands the page over through history (a relay is not
//     trusted): neither takes it, nor seals under it.
//   - Alice removes Carol; Bob posts as soon as his node knows: it is
//     refused until Alice's new key arrives, never sealed under the key
//     Carol holds; Alice's own post right after the removal too.
//   - The old key's copies replayed to Bob from the relay change
//     nothing: his next post goes under the new key.
func TestReview20EpochMemberGrantsAndRace(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	nodes, _, g := threeInEpochGroup(t, relay)
	alice, bob, carol := nodes["alice"], nodes["bob"], nodes["carol"]
	ctx := context.Background()
	raw, _ := hex.DecodeString(g.ID)
	gid := [32]byte(raw)
	first, err := alice.SendGroup(ctx, g.ID, "first")
	if err != nil {
		t.Fatal(err)
	}
	old := review20PostEpoch(t, alice, gid, first.ID)
	for _, n := range nodes {
		eventually(t, "the first key everywhere", func() (bool, error) {
			return slices.Equal(epochsHeld(t, n, gid), []uint64{old}), nil
		})
	}

	// Carol's own key, numbered as the next draw on the log would be.
	var l *groupstate.Log
	if err := carol.db.View(func(tx *storage.Txn) error {
		var err error
		l, err = carol.findGroup(tx, g.ID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	k, err := epochkey.NewKey(rand.Reader, gid, epochNumber(l, 7))
	if err != nil {
		t.Fatal(err)
	}
	pages, err := epochkey.Wrap(carol.keys.device, carol.keys.cert, k, []identity.DeviceCert{*alice.keys.cert, *bob.keys.cert})
	if err != nil {
		t.Fatal(err)
	}
	pageRaw, err := pages[0].MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	env, err := groupmsg.Seal(carol.keys.device, gid, groupmsg.KindGrants, time.Now().UnixMilli(), pageRaw)
	if err != nil {
		t.Fatal(err)
	}
	for name, n := range map[string]*testNode{"alice": alice, "bob": bob} {
		_ = n.takeHistory(gid, env)
		if got := epochsHeld(t, n, gid); !slices.Equal(got, []uint64{old}) {
			t.Fatalf("%s took a member's epoch key from history: %x", name, got)
		}
	}
	if err := history.NewClient(carol.host).Store(ctx, relay.h.ID(), gid, env, carol.keys.device); err == nil {
		t.Fatal("the relay kept a member's page of epoch-key copies")
	}
	if m, err := bob.SendGroup(ctx, g.ID, "bob under the admin's key"); err != nil || review20PostEpoch(t, bob, gid, m.ID) != old {
		t.Fatalf("Bob's post after Carol's page: %v", err)
	}

	// The removal, and posts racing the new key.
	if _, err := alice.RemoveGroupMember(ctx, g.ID, "carol"); err != nil {
		t.Fatal(err)
	}
	am, err := alice.SendGroup(ctx, g.ID, "alice right after")
	if err != nil {
		t.Fatal(err)
	}
	if e := review20PostEpoch(t, alice, gid, am.ID); e == old {
		t.Fatal("Alice's post right after the removal went under the key Carol holds")
	}
	eventually(t, "Carol out at Bob", func() (bool, error) {
		bg, err := bob.Group(ctx, g.ID)
		return err == nil && len(bg.Members) == 2, nil
	})
	var bm chat.GroupMessage
	eventually(t, "Bob posts once the new key reached him", func() (bool, error) {
		var err error
		bm, err = bob.SendGroup(ctx, g.ID, "bob right after")
		if errors.Is(err, chat.ErrUnavailable) {
			return false, nil
		}
		return err == nil, err
	})
	newEpoch := review20PostEpoch(t, bob, gid, bm.ID)
	if newEpoch == old {
		t.Fatal("Bob's post after the removal went under the key Carol holds")
	}

	// The old key's copies, replayed from the relay.
	pg, err := history.NewClient(bob.host).Query(ctx, relay.h.ID(), gid, 0, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range pg.Items {
		if e, err := groupmsg.Open(gid, it.Envelope); err == nil && e.Kind == groupmsg.KindGrants {
			if p, err := epochkey.ParseGrants(e.Payload); err == nil && p.Epoch == old {
				bob.markUnseenForTest(gid, it.ID[:])
				_ = bob.takeHistory(gid, it.Envelope)
			}
		}
	}
	bm2, err := bob.SendGroup(ctx, g.ID, "bob after the replay")
	if err != nil {
		t.Fatal(err)
	}
	if e := review20PostEpoch(t, bob, gid, bm2.ID); e == old || epochBase(e) < epochBase(newEpoch) {
		t.Fatalf("after the old copies were replayed Bob sealed under epoch %x (old %x, new %x)", e, old, newEpoch)
	}
}

// markUnseenForTest forgets that n saw an envelope, so that a replay of
// it is taken as new (the worst case: a seen set that lost it).
func (n *testNode) markUnseenForTest(gid [32]byte, id []byte) {
	_ = n.db.Update(func(tx *storage.Txn) error { return tx.Delete(n.st.groupSeen, groupSeenKey(gid, id)) })
}

package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"testing"

	"github.com/peergram/peergram/crypto/epochkey"
	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// sealingEpoch returns the epoch n would seal under in group now (and
// whether it is fresh).
func sealingEpoch(t *testing.T, n *testNode, group string) (uint64, bool) {
	t.Helper()
	var k epochkey.Key
	var fresh bool
	if err := n.db.View(func(tx *storage.Txn) error {
		l, err := n.findGroup(tx, group)
		if err != nil {
			return err
		}
		k, fresh, err = n.freshEpoch(tx, l)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return k.Epoch, fresh
}

// TestReviewFutureEpochSurvivesRemoval: Carol, an admin, hands out (while
// still an admin) a key whose epoch claims a base far in the future
// (1<<62). The owner then removes Carol. Every later message must go
// under a key Carol has no copy of. The rule "seal with the greatest epoch
// held, if its base > last removal" keeps Carol's key fresh forever: the
// owner's pass after the removal draws nothing, and even a key drawn later
// has a smaller epoch than Carol's.
func TestReviewFutureEpochSurvivesRemoval(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	nodes, _, g := threeInEpochGroup(t, relay)
	alice, bob, carol := nodes["alice"], nodes["bob"], nodes["carol"]
	ctx := context.Background()
	gid, _ := hex.DecodeString(g.ID)
	group := [32]byte(gid)

	if _, err := alice.SetGroupRole(ctx, g.ID, "carol", "admin"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{bob, carol} {
		eventually(t, "Carol an admin", func() (bool, error) {
			st := n.groupState(group)
			return st != nil && st.Role(carol.keys.account.ID()) == groupstate.RoleAdmin, nil
		})
	}
	if _, err := alice.SendGroup(ctx, g.ID, "hello"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a key at Bob", func() (bool, error) { return len(epochsHeld(t, bob, group)) >= 1, nil })

	// Carol, a legitimate but malicious admin, draws a key of her own with
	// a far-future base and wraps it for every member's device.
	evil, err := epochkey.NewKey(rand.Reader, group, 1<<62|12345)
	if err != nil {
		t.Fatal(err)
	}
	var envs [][]byte
	if err := carol.db.Update(func(tx *storage.Txn) error {
		l, err := carol.findGroup(tx, g.ID)
		if err != nil {
			return err
		}
		if err := tx.Set(carol.st.groupEpoch, epochKeyKey(group, evil.Epoch), evil.Secret[:]); err != nil {
			return err
		}
		certs, err := carol.memberCerts(tx, l.State())
		if err != nil {
			return err
		}
		envs, err = carol.grantEpoch(tx, evil, certs)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	carol.publishEnvelopes(ctx, group, envs)
	eventually(t, "Carol's key at Bob", func() (bool, error) {
		return slices.Contains(epochsHeld(t, bob, group), evil.Epoch), nil
	})

	// The owner removes Carol.
	if _, err := alice.RemoveGroupMember(ctx, g.ID, "carol"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Carol out at Bob", func() (bool, error) {
		st := bob.groupState(group)
		return st != nil && st.Role(carol.keys.account.ID()) == groupstate.RoleNone, nil
	})
	if _, err := alice.SendGroup(ctx, g.ID, "alice after removal"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob posts after the removal", func() (bool, error) {
		_, err := bob.SendGroup(ctx, g.ID, "bob after removal")
		if errors.Is(err, chat.ErrUnavailable) {
			return false, nil
		}
		return err == nil, err
	})
	for name, n := range map[string]*testNode{"Alice": alice, "Bob": bob} {
		e, fresh := sealingEpoch(t, n, g.ID)
		if fresh && e == evil.Epoch {
			t.Errorf("%s seals under the key of removed admin Carol (epoch %x) after her removal", name, e)
		}
	}
}

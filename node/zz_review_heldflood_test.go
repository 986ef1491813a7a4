package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/epochkey"
	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/relay/groupnet"
	"github.com/peergram/peergram/relay/history"
	"github.com/peergram/peergram/storage"
)

// TestReviewHeldFloodLosesMessages: the epoch tier holds a message whose
// key has not come yet (the normal case right after every rotation when
// gossip or history brings the message before its grants, and for a
// member that joined while no admin was online). The group-wide bound
// (maxPendingGroup = 2000) is shared by all senders, and a single plain
// member may have up to 64 devices (identity.MaxDevices), 200 held each:
// Bob, with 10 devices, posts 2000 messages under epochs no admin ever
// drew (his validators pass them: he may post). Every member then refuses
// to hold anything for 7 days, and a message of Alice's that comes before
// its key is dropped for good (history's cursor moves past it).
//
// The envelopes of Bob's extra devices are handed to takeEnvelope as the
// validators would hand them (as in TestEpochHeldBounded).
func TestReviewHeldFloodLosesMessages(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	nodes, _, g := threeInEpochGroup(t, relay)
	alice, bob, carol := nodes["alice"], nodes["bob"], nodes["carol"]
	ctx := context.Background()
	gid, _ := hex.DecodeString(g.ID)
	group := [32]byte(gid)
	if _, err := alice.SendGroup(ctx, g.ID, "hello"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "hello at Carol", func() (bool, error) { return slices.Contains(groupTexts(t, carol, g.ID), "hello"), nil })

	// Bob's flood: 10 devices × 200 messages under bogus epochs.
	for d := range 10 {
		var dev identity.DeviceID
		rand.Read(dev[:])
		for i := range maxPendingDevice {
			p := make([]byte, 100)
			p[0] = 1
			binary.BigEndian.PutUint64(p[1:], uint64(d*1000+i+1)<<32|7)
			var id [32]byte
			rand.Read(id[:])
			m := &groupnet.Message{Envelope: &groupmsg.Envelope{Group: group, Kind: groupmsg.KindEpoch, Time: time.Now().UnixMilli(), Device: dev, Payload: p},
				Account: bob.keys.account.ID(), ID: string(id[:])}
			_ = carol.takeEnvelope(group, m)
		}
	}

	// Alice draws a new key (as on any rotation) and posts under it; its
	// copies reach Carol after the message.
	var grants [][]byte
	if err := alice.db.Update(func(tx *storage.Txn) error {
		l, err := alice.findGroup(tx, g.ID)
		if err != nil {
			return err
		}
		old := epochsHeld(t, alice, group)
		for { // (same base as the current key: the greater random part must be the new one's)
			k, envs, err := alice.drawEpoch(tx, l)
			if err != nil {
				return err
			}
			grants = append(grants, envs...)
			if k.Epoch > slices.Max(old) {
				return nil
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	secret := "after the new key"
	if _, err := alice.SendGroup(ctx, g.ID, secret); err != nil {
		t.Fatal(err)
	}
	// Carol catches up from the relay before the copies exist anywhere
	// she can get them (as a member does whose grant comes with an
	// admin's later pass): the message must wait for its key.
	hc := history.NewClient(carol.host)
	eventually(t, "the message at the relay", func() (bool, error) {
		pg, err := hc.Query(ctx, relay.h.ID(), group, 0, 0, false)
		if err != nil {
			return false, nil
		}
		for _, it := range pg.Items {
			if e, err := groupmsg.Open(group, it.Envelope); err == nil && e.Kind == groupmsg.KindEpoch && e.Device == alice.keys.device.ID() {
				if h, err := epochkey.PeekHeader(e.Payload); err == nil && epochBase(h.Epoch) > 0 && !slices.Contains(epochsHeld(t, carol, group), h.Epoch) {
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err := carol.catchUp(ctx, hc, relay.h.ID(), group); err != nil {
		t.Fatal(err)
	}
	alice.publishEnvelopes(ctx, group, grants)
	eventually(t, "the new key at Carol", func() (bool, error) { return len(epochsHeld(t, carol, group)) >= 2, nil })
	deadline := time.Now().Add(20 * time.Second)
	for !slices.Contains(groupTexts(t, carol, g.ID), secret) {
		if time.Now().After(deadline) {
			t.Fatal("Alice's message that came before its key was dropped (the group's hold quota was full of Bob's junk)")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

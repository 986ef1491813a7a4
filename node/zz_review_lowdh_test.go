package node

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/node/chat"
)

// poisonedCert returns a valid certificate of f's device whose X25519
// key is the all-zero (low-order) point: HPKE refuses to wrap to it.
func poisonedCert(t *testing.T, f *fakeDevice) *identity.DeviceCert {
	t.Helper()
	p, err := f.dev.Propose(f.acct.ID(), "poison", time.Now().Unix())
	if err != nil {
		t.Fatal(err)
	}
	p.DH = [32]byte{}
	msg := []byte{0x02}
	msg = append(msg, p.Account[:]...)
	msg = append(msg, p.Device[:]...)
	msg = append(msg, p.DH[:]...)
	msg = binary.BigEndian.AppendUint64(msg, uint64(p.Created))
	p.Proof = f.dev.Sign("peergram/device-proof/v1", msg)
	c, err := f.acct.Certify(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Verify(); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestReviewLowOrderDeviceBlocksRotation: Mallory publishes a device list
// whose (validly signed) device has an all-zero X25519 key. Once Mallory
// is in an epoch-tier group (added by any member with PermAdd, or by an
// invite link; in a channel, by subscribing), every admin pass wraps for
// her device, epochkey.Wrap fails, and the whole pass (the draw of a new
// key included) is rolled back. After the next removal nobody can post
// again: the admin's send fails drawing the key, members get
// ErrUnavailable forever.
func TestReviewLowOrderDeviceBlocksRotation(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	nodes, _, g := threeInEpochGroup(t, relay)
	alice, bob := nodes["alice"], nodes["bob"]
	ctx := context.Background()
	if _, err := alice.SendGroup(ctx, g.ID, "hello"); err != nil {
		t.Fatal(err)
	}

	mallory := newFakeDevice(t, relay, nil, "mallory")
	mallory.publishList(t, nil, poisonedCert(t, mallory))
	eventually(t, "Mallory a contact of Bob", func() (bool, error) {
		c, err := bob.AddContact(ctx, mallory.acct.ID().String(), "mallory")
		return err == nil && c.Devices == 1, err
	})
	// Bob, a plain member (members may add by default), adds Mallory.
	if _, err := bob.AddGroupMembers(ctx, g.ID, []string{"mallory"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Mallory in at Alice", func() (bool, error) {
		got, err := alice.Group(ctx, g.ID)
		return err == nil && len(got.Members) == 4, nil
	})
	time.Sleep(time.Second)

	// Any removal now: Carol leaves.
	if _, err := alice.RemoveGroupMember(ctx, g.ID, "carol"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Carol out at Bob", func() (bool, error) {
		got, err := bob.Group(ctx, g.ID)
		return err == nil && len(got.Members) == 3, nil
	})
	if _, err := alice.SendGroup(ctx, g.ID, "alice after the removal"); err != nil {
		t.Errorf("the owner cannot post after a removal: %v", err)
	}
	var last error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if _, last = bob.SendGroup(ctx, g.ID, "bob after the removal"); last == nil {
			return
		}
		if !errors.Is(last, chat.ErrUnavailable) {
			break
		}
	}
	t.Fatalf("Bob cannot post after the removal: %v", last)
}

package node

import (
	"context"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peergram/peergram/calls"
	"github.com/peergram/peergram/crypto/sframe"
)

// TestReview4RemovedMemberKeyStaysValid: call keys are posted to the
// whole group (postCallKey → postGroup), so every member — in the call
// or not — reads every participant's key. Participants draw new keys
// only when the SFU's roster loses someone (groupRoster). A member who
// never joined the call, or joined and left, is removed from the group:
// the roster does not change, nobody draws a new key, and the frames
// sent after the removal still open with the key that member read while
// it was one. Whoever forwards or can capture the media (the relay
// running the SFU, here its Tap) together with the removed member reads
// the rest of the call — what SFrame end-to-end keys are there to
// prevent ("a member removed from the group ... gets no key drawn after
// its removal", groupcalls.go: but none is drawn).
// Expected: a change of the group's membership (a removal) makes the
// participants draw and post new keys, so frames sent after it do not
// open with any key posted before it.
func TestReview4RemovedMemberKeyStaysValid(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	var alicesDev atomic.Value
	alicesDev.Store("")
	var mu sync.Mutex
	var keyOfCarol *sframe.Receiver // what Carol read, in the relay's hands
	var afterRemoval atomic.Bool
	var opened, tapped atomic.Int64
	startSFU(t, relay, func(_, device, kind string, payload []byte) {
		if kind != "audio" || device != alicesDev.Load().(string) || !afterRemoval.Load() {
			return
		}
		tapped.Add(1)
		mu.Lock()
		r := keyOfCarol
		mu.Unlock()
		if r != nil {
			if _, _, err := r.Open(nil, nil, payload); err == nil {
				opened.Add(1)
			}
		}
	})
	names := []string{"alice", "bob", "carol"}
	nodes := map[string]*testNode{}
	infos := map[string]Info{}
	for _, name := range names {
		var home string
		home, infos[name] = initHome(t, name)
		nodes[name] = startNodeWith(t, home, callNode, relay.addr)
	}
	for i, a := range names {
		for _, b := range names[i+1:] {
			addEachOther(t, nodes[a], nodes[b], infos[a], infos[b])
		}
	}
	alice, bob, carol := nodes["alice"], nodes["bob"], nodes["carol"]
	alicesDev.Store(alice.keys.device.ID().String())
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "choir")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob", "carol"}); err != nil {
		t.Fatal(err)
	}
	gidb, _ := hex.DecodeString(g.ID)
	gid := [32]byte(gidb)
	for _, n := range nodes {
		eventually(t, "the group with three members", func() (bool, error) {
			got, err := n.Group(ctx, g.ID)
			return err == nil && len(got.Members) == 3, nil
		})
		eventually(t, "topic peers", func() (bool, error) { return len(n.groups.net.Peers(gid)) >= 1, nil })
		eventually(t, "the relay to know the member", func() (bool, error) {
			_, err := relay.hist.Member(gid, n.keys.device.ID())
			return err == nil, nil
		})
	}
	audio := patternAudio(t, 1500) // 30 s
	started, err := alice.StartGroupCall(ctx, g.ID, calls.Media{Audio: audio})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob to know the call", func() (bool, error) {
		c, err := bob.GroupCall(ctx, g.ID)
		return err == nil && c.ID == started.ID, nil
	})
	eventually(t, "Carol to know the call", func() (bool, error) {
		c, err := carol.GroupCall(ctx, g.ID)
		return err == nil && c.ID == started.ID, nil
	})
	if _, err := bob.JoinGroupCall(ctx, g.ID, calls.Media{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob to hear Alice", func() (bool, error) {
		c, err := bob.GroupCall(ctx, g.ID)
		f, _ := heard(c, alice.keys.device.ID().String())
		return err == nil && f > 20, nil
	})
	// Alice's current key: the one her node posted to the group (at the
	// start and again for Bob) while Carol was a member.
	kid, base, err := alice.calls.GroupKey(started.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !alice.gcallsPosted(started.ID, kid) {
		t.Fatalf("Alice's current key %d was not posted", kid)
	}
	ak, _ := sframe.NewKey(base, kid)
	r := sframe.NewReceiver()
	r.Add(ak)
	mu.Lock()
	keyOfCarol = r
	mu.Unlock()

	if _, err := alice.RemoveGroupMember(ctx, g.ID, "carol"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the relay to drop Carol", func() (bool, error) {
		_, err := relay.hist.Member(gid, carol.keys.device.ID())
		return err != nil, nil
	})
	time.Sleep(3 * time.Second) // time for any rekey to be drawn and posted
	afterRemoval.Store(true)
	time.Sleep(2 * time.Second)
	if opened.Load() > 0 {
		c, _ := alice.GroupCall(ctx, g.ID)
		t.Fatalf("after Carol's removal, %d of %d frames Alice sent opened with the key posted to the group while Carol was a member (Alice's key ID still %d, was %d)",
			opened.Load(), tapped.Load(), c.KeyID, kid)
	}
	if tapped.Load() == 0 {
		t.Fatal("no frames of Alice seen after the removal")
	}
}

// gcallsPosted reports whether n posted key kid for call.
func (n *testNode) gcallsPosted(call string, kid uint64) bool {
	n.gcalls.mu.Lock()
	defer n.gcalls.mu.Unlock()
	return n.gcalls.posted[call] == kid
}

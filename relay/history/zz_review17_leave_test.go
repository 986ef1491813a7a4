package history

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/crypto/groupmsg"
)

// TestReview17BannedLeaverDrivesRelayPublish: Bob left, then the owner
// banned him. Since 417814e a held leave passes MayChange whoever its
// author is now, and store() publishes every Store'd state envelope the
// log holds (From == "") before the history's once-per-entry dedupe.
// So Bob — no member, banned — wraps his old leave in new envelopes
// (new times, new gossip IDs) and hands each over: the relay accepts
// every one and publishes every one to the group's topic, where each
// member's node must check its signature (and then ignores it, so the
// relay is never scored down). The history keeps one copy; the topic
// gets them all. Expected: a leave the relay already holds (and
// already published) is not published again for each new wrapping.
func TestReview17BannedLeaverDrivesRelayPublish(t *testing.T) {
	hl := newHeldLeave(t, true)
	r, c, rh, gid, bob, leave := hl.r, hl.c, hl.rh, hl.gid, hl.bob, hl.leave
	ctx := context.Background()

	// An observer on the topic (what a member's node receives before its
	// validator runs).
	h := newHost(t)
	octx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	ps, err := pubsub.NewGossipSub(octx, h, pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(func(m *pb.Message) string { return groupmsg.ID(m.Data) }))
	if err != nil {
		t.Fatal(err)
	}
	topic, err := ps.Join(groupmsg.Topic(gid))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := topic.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Connect(octx, peer.AddrInfo{ID: rh.ID(), Addrs: rh.Addrs()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the observer and the relay in each other's topic", func() bool {
		return slices.Contains(topic.ListPeers(), rh.ID()) && slices.Contains(r.srv.Net().Peers(gid), h.ID())
	})
	var fromBob atomic.Int64
	go func() {
		for {
			m, err := sub.Next(octx)
			if err != nil {
				return
			}
			if e, err := groupmsg.Open(gid, m.Data); err == nil && e.Device == bob.dev.ID() {
				fromBob.Add(1)
			}
		}
	}()

	const wraps = 20
	base := time.Now().UnixMilli()
	accepted := 0
	for i := range wraps {
		env, err := groupmsg.Seal(bob.dev, gid, groupmsg.KindState, base-int64(i), leave)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Store(ctx, rh.ID(), gid, env, bob.dev); err == nil {
			accepted++
		}
	}
	time.Sleep(1500 * time.Millisecond)
	byDev, _, _ := rv11Items(t, c, r, gid)
	t.Logf("Store accepted %d of %d wrappings by banned ex-member Bob; history holds %d; the topic got %d", accepted, wraps, byDev[bob.dev.ID().String()], fromBob.Load())
	if n := fromBob.Load(); n > 1 {
		t.Errorf("the relay published %d wrappings of one held leave by a banned ex-member (want at most 1)", n)
	}
}

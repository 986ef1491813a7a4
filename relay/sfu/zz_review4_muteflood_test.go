package sfu_test

import (
	"context"
	"encoding/hex"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peergram/peergram/calls"
	"github.com/peergram/peergram/calls/sfuproto"
	"github.com/peergram/peergram/relay/sfu"
)

// stallConn is a signalling connection whose reader pauses while stalled
// is set (a phone that was backgrounded for a moment, a congested link).
type stallConn struct {
	*sfuproto.Conn
	mu      sync.Mutex
	stalled bool
	resume  chan struct{}
}

func (c *stallConn) stall() {
	c.mu.Lock()
	c.stalled, c.resume = true, make(chan struct{})
	c.mu.Unlock()
}

func (c *stallConn) unstall() {
	c.mu.Lock()
	c.stalled = false
	close(c.resume)
	c.mu.Unlock()
}

func (c *stallConn) Recv() (*sfuproto.Message, error) {
	c.mu.Lock()
	st, ch := c.stalled, c.resume
	c.mu.Unlock()
	if st {
		<-ch
	}
	return c.Conn.Recv()
}

// TestReview4MuteFloodLosesOffers: every Mute toggle a participant sends
// makes the SFU queue a full roster to every participant; nothing
// bounds or coalesces them, and a participant's queue (256) drops what
// does not fit — offers included. One member flooding mute toggles while
// another's signalling is briefly slow (3 s here) fills that one's
// queue, so the offer for a track published meanwhile is dropped; the
// SFU then waits for an answer to an offer never delivered
// (negotiating stays true) and never offers again: the victim never
// gets that participant's media, for the rest of the call.
// Expected: after a 3 s stall, the victim receives the new publisher's
// audio (rosters coalesced / mute rate-limited; offers never dropped).
func TestReview4MuteFloodLosesOffers(t *testing.T) {
	relay := newHost(t)
	_, ms, _ := r4Server(t, sfu.Config{Host: relay})
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	audio := patternOgg(t, 1000)
	group := r4Group()
	call := newCallID()

	victim, attacker, pub := newMember(t, relay, ms), newMember(t, relay, ms), newMember(t, relay, ms)
	vc, err := sfu.Dial(ctx, victim.h, relay.ID(), group, call, victim.dev, victim.cert)
	if err != nil {
		t.Fatal(err)
	}
	sc := &stallConn{Conn: vc, resume: make(chan struct{})}
	if _, err := victim.e.JoinGroup(ctx, call, hex.EncodeToString(group[:]), sc, calls.Media{Record: victim.rec}); err != nil {
		t.Fatal(err)
	}
	// The attacker: a plain member on a raw signalling stream.
	ac, err := sfu.Dial(ctx, attacker.h, relay.ID(), group, call, attacker.dev, attacker.cert)
	if err != nil {
		t.Fatal(err)
	}
	go func() { // drain its own stream
		for {
			if _, err := ac.Recv(); err != nil {
				return
			}
		}
	}()
	time.Sleep(500 * time.Millisecond)

	sc.stall()
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		muted := false
		for !stop.Load() && os.Getenv("R4_NOFLOOD") == "" {
			muted = !muted
			if ac.Send(&sfuproto.Message{Type: sfuproto.TypeMute, Muted: muted}) != nil {
				return
			}
		}
	}()
	time.Sleep(1500 * time.Millisecond)
	// Someone publishes audio meanwhile.
	if _, err := pub.join(ctx, relay, group, call, calls.Media{Audio: audio}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	stop.Store(true)
	<-done
	sc.unstall()
	shareKeys(t, call, victim, pub)

	pdev := pub.dev.ID().String()
	deadline := time.Now().Add(10 * time.Second)
	var frames, packets uint64
	var g calls.GroupCall
	for time.Now().Before(deadline) {
		g, _ = victim.e.GetGroup(call)
		frames, packets, _ = received(g, pdev, "audio")
		if frames >= 50 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("after a 3 s stall during a mute flood the victim never gets the new publisher's audio: "+
		"state %q (%s), %d participants in its roster, %d packets, %d frames of the publisher",
		g.State, g.Reason, len(g.Participants), packets, frames)
}

package calls

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestReview3ForeignSignals: Mallory sends signals for the call of Alice
// and Bob (she knows its ID); Bob's engine refuses them and the call
// stays up. Then the callee offers out of turn: refused.
func TestReview3ForeignSignals(t *testing.T) {
	n := newNetwork(t)
	alice, bob := n.add("alice", "A1", nil), n.add("bob", "B1", nil)
	ctx := context.Background()
	c, err := alice.e.Start(ctx, "bob", Media{Audio: testdata("audio.ogg")})
	if err != nil {
		t.Fatal(err)
	}
	waitIncoming(t, bob)
	if _, err := bob.e.Answer(ctx, c.ID, Media{Audio: testdata("audio.ogg")}); err != nil {
		t.Fatal(err)
	}
	waitState(t, alice, c.ID, StateAccepted)
	waitState(t, bob, c.ID, StateAccepted)
	now := time.Now().UnixMilli()
	sdp := "v=0\r\na=fingerprint:sha-256 AA:BB\r\n"
	for _, s := range []Signal{
		{Call: c.ID, Type: SignalHangup, At: now},
		{Call: c.ID, Type: SignalHangup, At: now, Reason: "connection failed"},
		{Call: c.ID, Type: SignalOffer, SDP: sdp, At: now},
		{Call: c.ID, Type: SignalAnswer, SDP: sdp, At: now},
		{Call: c.ID, Type: SignalTaken, Device: "X", At: now},
		{Call: c.ID, Type: SignalGrant, At: now},
	} {
		for _, target := range []*device{alice, bob} {
			target.e.Handle(ctx, "mallory", "M1", &s)
			// Alice's other device (same account, not bound to the call):
			// the peer's own account could always hang up; skip.
		}
	}
	time.Sleep(500 * time.Millisecond)
	for _, d := range []*device{alice, bob} {
		if got, _ := d.e.Get(c.ID); got.State != StateAccepted {
			t.Fatalf("ATTACK WORKS: Mallory's signals moved %s's call to %q (%s)", d.id, got.State, got.Reason)
		}
	}
	// The callee (Bob's device) offers without a grant: Alice refuses.
	err = alice.e.Handle(ctx, "bob", "B1", &Signal{Call: c.ID, Type: SignalOffer, SDP: sdp, At: now})
	if err == nil || !strings.Contains(err.Error(), "out of turn") {
		t.Fatalf("ATTACK WORKS: an offer out of turn from the callee: %v", err)
	}
	if got, _ := alice.e.Get(c.ID); got.State != StateAccepted {
		t.Fatalf("ATTACK WORKS: an offer out of turn ended the call: %q", got.State)
	}
}

// TestReview3OfferSpam: a contact sends thousands of opening offers
// (new call IDs). Each is answered busy, no peer connection is made, the
// engine keeps at most MaxHistory finished calls and no goroutine lingers.
func TestReview3OfferSpam(t *testing.T) {
	n := newNetwork(t)
	bob := n.add("bob", "B1", nil)
	ctx := context.Background()
	g0 := runtime.NumGoroutine()
	sdp := "v=0\r\na=fingerprint:sha-256 AA:BB\r\n"
	for i := 0; i < 3000; i++ {
		s := Signal{Call: newCallID(), Type: SignalOffer, SDP: sdp, At: time.Now().Add(119 * time.Second).UnixMilli()}
		if err := bob.e.Handle(ctx, "mallory", "M1", &s); err != nil && !errors.Is(err, ErrBusy) {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second)
	list := bob.e.List()
	g1 := runtime.NumGoroutine()
	t.Logf("calls kept %d, goroutines %d → %d", len(list), g0, g1)
	if len(list) > offerLimit || g1-g0 > 50 {
		t.Fatalf("ATTACK WORKS: %d calls kept, %d goroutines more", len(list), g1-g0)
	}
	// The one that rings rings for RingTimeout + 2 minutes of skew.
	for _, c := range list {
		if c.State == StateRinging {
			t.Logf("ringing call started at %v (now %v)", c.StartedAt, time.Now())
		}
	}
}

// TestReview3ShareHangupRace: share/unshare racing hangup (run -race).
func TestReview3ShareHangupRace(t *testing.T) {
	n := newNetwork(t)
	alice, bob := n.add("alice", "A1", nil), n.add("bob", "B1", nil)
	ctx := context.Background()
	for round := 0; round < 3; round++ {
		c, err := alice.e.Start(ctx, "bob", Media{Audio: testdata("audio.ogg")})
		if err != nil {
			t.Fatal(err)
		}
		waitIncoming(t, bob)
		if _, err := bob.e.Answer(ctx, c.ID, Media{Audio: testdata("audio.ogg")}); err != nil {
			t.Fatal(err)
		}
		waitState(t, alice, c.ID, StateAccepted)
		var wg sync.WaitGroup
		wg.Add(4)
		go func() { defer wg.Done(); bob.e.Share(ctx, c.ID, testdata("screen.ivf")) }()
		go func() { defer wg.Done(); alice.e.Share(ctx, c.ID, testdata("screen.ivf")) }()
		go func() { defer wg.Done(); bob.e.Unshare(ctx, c.ID) }()
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(round) * 5 * time.Millisecond)
			alice.e.Hangup(ctx, c.ID)
		}()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Fatal("ATTACK WORKS: share/unshare/hangup deadlocked")
		}
		waitState(t, alice, c.ID, StateEnded)
		waitState(t, bob, c.ID, StateEnded)
	}
}

package calls

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestReview3AnswerRace: the caller hangs up while the callee's Answer is
// building its peer connection (the node fetches TURN credentials there,
// up to 5 s). end() finishes the call, then Answer sets it back to
// "accepted" with a live peer connection. The next end() of that call
// (the peer's second hangup, a local hangup, or ICE failing ~30 s later,
// on its own) closes c.out again: panic, the daemon dies.
func TestReview3AnswerRace(t *testing.T) {
	n := newNetwork(t)
	alice := n.add("alice", "A1", nil)
	inSetup := make(chan struct{}, 1)
	// Bob is built by hand: after the panic his engine's mutex stays
	// locked, and Close would hang.
	bobDev := &device{account: "bob", id: "B1", in: make(chan func(), 1024), events: make(chan Call, 1024)}
	cfg := Config{Signaller: signaller{n, bobDev}, Device: "B1", Settings: loopback,
		Log: slog.New(slog.DiscardHandler),
		ICE: func(ctx context.Context) []webrtc.ICEServer {
			// The node's turnServers: a request to the relay (ctx is the
			// call's: it ends when the call ends).
			select {
			case inSetup <- struct{}{}:
			default:
			}
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
			}
			return nil
		}}
	e, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	bobDev.e = e
	go func() {
		for f := range bobDev.in {
			f()
		}
	}()
	n.mu.Lock()
	n.devices["bob"] = append(n.devices["bob"], bobDev)
	n.mu.Unlock()

	ctx := context.Background()
	c, err := alice.e.Start(ctx, "bob", Media{Audio: testdata("audio.ogg")})
	if err != nil {
		t.Fatal(err)
	}
	waitIncoming(t, bobDev)
	answered := make(chan error, 1)
	go func() {
		_, err := e.Answer(ctx, c.ID, Media{Audio: testdata("audio.ogg")})
		answered <- err
	}()
	<-inSetup
	// Alice (hostile or just late) hangs up now.
	if err := alice.e.Hangup(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	waitState(t, bobDev, c.ID, StateMissed)
	aerr := <-answered
	got, _ := e.Get(c.ID)
	t.Logf("Answer returned %v; bob's call is now %q (%s)", aerr, got.State, got.Reason)
	if got.State == StateMissed {
		return // refused: the ended call stayed ended
	}
	// Bob is "accepted" again: busy for every other call.
	if _, err := e.Start(ctx, "carol", Media{}); err != nil {
		t.Logf("bob can call nobody else: %v", err)
	}
	// A second hangup from Alice's device.
	hang := Signal{Call: c.ID, Type: SignalHangup, At: time.Now().UnixMilli()}
	perr := func() (p any) {
		defer func() { p = recover() }()
		e.Handle(ctx, "alice", "A1", &hang)
		return nil
	}()
	if perr != nil {
		t.Fatalf("ATTACK WORKS: an ended call came back %q after Answer; a second hangup from the peer panics the engine: %v", got.State, perr)
	}
	t.Fatalf("ATTACK WORKS: an ended call came back as %q after Answer (%s)", got.State, fmt.Sprint(got.Reason))
}

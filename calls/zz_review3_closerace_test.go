package calls

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestReview3CloseDuringAnswer: the daemon shuts down (Engine.Close)
// while an Answer builds its peer connection. Close ends the call (no
// peer connection yet) and waits for the engine's goroutines; Answer then
// makes a peer connection nobody closes, and its RTCP readers never end:
// Close never returns.
func TestReview3CloseDuringAnswer(t *testing.T) {
	n := newNetwork(t)
	alice := n.add("alice", "A1", nil)
	inSetup := make(chan struct{}, 1)
	bobDev := &device{account: "bob", id: "B1", in: make(chan func(), 1024), events: make(chan Call, 1024)}
	cfg := Config{Signaller: signaller{n, bobDev}, Device: "B1", Settings: loopback,
		Log: slog.New(slog.DiscardHandler),
		ICE: func(ctx context.Context) []webrtc.ICEServer {
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
		_, err := e.Answer(ctx, c.ID, Media{Audio: testdata("audio.ogg"), Video: testdata("video.ivf")})
		answered <- err
	}()
	<-inSetup
	closed := make(chan struct{})
	go func() { e.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		got, _ := e.Get(c.ID)
		t.Fatalf("ATTACK WORKS: Engine.Close hangs (10 s) after an Answer raced it; the call is %q", got.State)
	}
	aerr := <-answered
	got, _ := e.Get(c.ID)
	t.Logf("Answer: %v; call %q", aerr, got.State)
	if got.State.live() {
		t.Fatalf("ATTACK WORKS: after Close the call is %q with a peer connection never closed", got.State)
	}
}

package calls

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"testing"
	"time"
)

// review6Engine is a victim engine whose outgoing signals the test reads.
func review6Engine(t *testing.T, tweak func(*Config)) (*Engine, chan Signal) {
	t.Helper()
	out := make(chan Signal, 4096)
	cfg := Config{Signaller: chanSignaller{out}, Device: "B1", Settings: loopback, Log: slog.New(slog.DiscardHandler), CallsPerMinute: 1000}
	if tweak != nil {
		tweak(&cfg)
	}
	e, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, out
}

const review6SDP = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 AA:BB\r\n"

// TestReview6GrantWhileRinging: a contact sends an opening offer and, right
// behind it, a grant. Handle's switch takes the grant (the call is not a
// client call yet) and grantedOffer calls c.pc.SignalingState() before the
// ringing call's connection exists (prepare runs on its own goroutine; a
// client's answer (answerClient) sets c.pc = nil too). A nil pointer panic
// on the node's signal goroutine: the daemon dies.
func TestReview6GrantWhileRinging(t *testing.T) {
	e, _ := review6Engine(t, nil)
	ctx := context.Background()
	for i := range 30 {
		id := newCallID()
		now := time.Now().UnixMilli()
		var p any
		var stack []byte
		func() {
			defer func() {
				if p = recover(); p != nil {
					stack = debug.Stack()
				}
			}()
			if err := e.Handle(ctx, "mallory", "M1", &Signal{Call: id, Type: SignalOffer, SDP: review6SDP, At: now}); err != nil {
				t.Fatalf("offer %d: %v", i, err)
			}
			e.Handle(ctx, "mallory", "M1", &Signal{Call: id, Type: SignalGrant, At: now})
		}()
		if p != nil {
			t.Fatalf("ATTACK WORKS: an offer and a grant back to back from a contact panic the engine (round %d): %v\n%s", i, fmt.Sprint(p), stack)
		}
		e.Handle(ctx, "mallory", "M1", &Signal{Call: id, Type: SignalHangup, At: now})
		waitEnded(t, e, id)
	}
}

// TestReview6GrantAfterMissedOffer: the deterministic form. An offer dated
// past the ring timeout is a missed call at once: no connection is ever
// made (c.pc stays nil), but the call is kept. A grant for it from the same
// contact reaches grantedOffer, which checks neither the state nor c.pc.
func TestReview6GrantAfterMissedOffer(t *testing.T) {
	e, _ := review6Engine(t, nil)
	ctx := context.Background()
	id := newCallID()
	old := time.Now().Add(-10 * time.Minute).UnixMilli()
	if err := e.Handle(ctx, "mallory", "M1", &Signal{Call: id, Type: SignalOffer, SDP: review6SDP, At: old}); err != nil {
		t.Fatal(err)
	}
	if c, _ := e.Get(id); c.State != StateMissed {
		t.Fatalf("call %+v", c)
	}
	var p any
	func() {
		defer func() { p = recover() }()
		e.Handle(ctx, "mallory", "M1", &Signal{Call: id, Type: SignalGrant, At: time.Now().UnixMilli()})
	}()
	if p != nil {
		t.Fatalf("ATTACK WORKS: a grant for a missed call (offer dated 10 minutes ago) panics the engine: %v", p)
	}
}

func waitEnded(t *testing.T, e *Engine, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := e.Get(id); err == nil && !c.State.live() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("call %s still live", id)
}

package calls

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// review6FP is an SDP that passes fingerprints(): only what the engine reads.
func review6FP(fp string) string {
	return "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 " + fp + "\r\n"
}

// review6Client is a victim engine (account "alice", device A1) whose
// client is recorded; the test plays the peer "bob" by calling Handle.
type review6Client struct {
	e   *Engine
	out chan Signal
	mu  sync.Mutex
	got []Signal
}

func newReview6Client(t *testing.T, tweak func(*Config)) *review6Client {
	t.Helper()
	r := &review6Client{out: make(chan Signal, 1<<16)}
	cfg := Config{Signaller: chanSignaller{r.out}, Device: "A1", Settings: loopback, Log: slog.New(slog.DiscardHandler), CallsPerMinute: 1000,
		Events: func(Call) {},
		ClientSignal: func(s Signal) {
			r.mu.Lock()
			r.got = append(r.got, s)
			r.mu.Unlock()
		}}
	if tweak != nil {
		tweak(&cfg)
	}
	e, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	r.e = e
	return r
}

func (r *review6Client) clientGot(typ string) []Signal {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Signal
	for _, s := range r.got {
		if s.Type == typ {
			out = append(out, s)
		}
	}
	return out
}

// sent drains what the engine sent to the peer so far.
func (r *review6Client) sent(wait time.Duration) []Signal {
	var out []Signal
	deadline := time.After(wait)
	for {
		select {
		case s := <-r.out:
			out = append(out, s)
		case <-deadline:
			return out
		}
	}
}

// TestReview6SecondDeviceAnswers: Alice's client calls Bob; Bob's B1
// answers first, then B2 answers with its own fingerprint, then B1 sends
// a second answer with a third fingerprint. The call stays B1's, its code
// the one of the first answer, and the client never sees B2's SDP.
func TestReview6SecondDeviceAnswers(t *testing.T) {
	ctx := context.Background()
	a := newReview6Client(t, nil)
	c, err := a.e.Start(ctx, "bob", Media{SDP: review6FP("01:01")})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	// B2's candidates come before anyone answers (they reach the client).
	cand := webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 1 10.9.9.9 9 typ host"}
	a.e.Handle(ctx, "bob", "B2", &Signal{Call: c.ID, Type: SignalCandidate, Candidate: &cand, At: now})
	if err := a.e.Handle(ctx, "bob", "B1", &Signal{Call: c.ID, Type: SignalAnswer, SDP: review6FP("B1:B1"), At: now}); err != nil {
		t.Fatal(err)
	}
	first, _ := a.e.Get(c.ID)
	want, _ := verification(c.ID, review6FP("01:01"), review6FP("B1:B1"))
	if first.State != StateAccepted || first.Device != "B1" || first.Verification != want {
		t.Fatalf("after B1's answer: %+v", first)
	}
	a.e.Handle(ctx, "bob", "B2", &Signal{Call: c.ID, Type: SignalAnswer, SDP: review6FP("B2:B2"), At: now})
	a.e.Handle(ctx, "bob", "B1", &Signal{Call: c.ID, Type: SignalAnswer, SDP: review6FP("EE:EE"), At: now})
	got, _ := a.e.Get(c.ID)
	if got.State != StateAccepted || got.Device != "B1" || got.Verification != want {
		t.Errorf("ATTACK WORKS: a later answer changed the call: %+v (code %q, want %q)", got, got.Verification, want)
	}
	for _, s := range a.clientGot(SignalAnswer) {
		if strings.Contains(s.SDP, "B2:B2") {
			t.Errorf("ATTACK WORKS: the client got the answer of B2, which did not take the call")
		}
	}
	taken := 0
	for _, s := range a.sent(200 * time.Millisecond) {
		if s.Type == SignalTaken && s.Device == "B1" {
			taken++
		}
	}
	if taken < 2 {
		t.Errorf("B2 was not told the call is taken (%d taken signals)", taken)
	}
	t.Logf("client got %d answers (B1's second goes to the client as a renegotiation answer), %d candidates",
		len(a.clientGot(SignalAnswer)), len(a.clientGot(SignalCandidate)))
}

// TestReview6ClientAnswerForeignAndBadFingerprint: a signal for Alice's
// client call from another account is refused; an answer without a
// fingerprint fails the call (never accepted with an empty code).
func TestReview6ClientAnswerForeignAndBadFingerprint(t *testing.T) {
	ctx := context.Background()
	a := newReview6Client(t, nil)
	c, err := a.e.Start(ctx, "bob", Media{SDP: review6FP("01:01")})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	for _, typ := range []string{SignalAnswer, SignalOffer, SignalHangup, SignalDecline, SignalRinging} {
		s := &Signal{Call: c.ID, Type: typ, At: now}
		if typ == SignalAnswer || typ == SignalOffer {
			s.SDP = review6FP("CC:CC")
		}
		a.e.Handle(ctx, "mallory", "M1", s)
	}
	if got, _ := a.e.Get(c.ID); got.State != StateCalling || got.Device != "" {
		t.Fatalf("ATTACK WORKS: Mallory's signals moved Alice's call with Bob: %+v", got)
	}
	if n := len(a.clientGot(SignalAnswer)) + len(a.clientGot(SignalOffer)); n != 0 {
		t.Fatalf("ATTACK WORKS: Mallory's SDPs reached Alice's client (%d)", n)
	}
	a.e.Handle(ctx, "bob", "B1", &Signal{Call: c.ID, Type: SignalAnswer, SDP: "v=0\r\ns=-\r\n", At: now})
	got, _ := a.e.Get(c.ID)
	if got.State == StateAccepted {
		t.Fatalf("ATTACK WORKS: an answer without a fingerprint was accepted: %+v", got)
	}
	if n := len(a.clientGot(SignalAnswer)); n != 0 {
		t.Fatalf("ATTACK WORKS: an answer without a fingerprint reached the client")
	}
}

// TestReview6EarlyCandidateFlood: Bob's device floods candidates at a
// ringing call Alice has not answered: at most 64 are kept (Offer), and
// after the client's answer they reach it once each.
func TestReview6EarlyCandidateFlood(t *testing.T) {
	ctx := context.Background()
	a := newReview6Client(t, nil)
	id := newCallID()
	now := time.Now().UnixMilli()
	if err := a.e.Handle(ctx, "bob", "B1", &Signal{Call: id, Type: SignalOffer, SDP: review6FP("B1:B1"), At: now}); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", MaxCandidate-40)
	for i := range 20000 {
		cand := webrtc.ICECandidateInit{Candidate: fmt.Sprintf("candidate:%d 1 udp 1 10.0.0.1 9 typ host %s", i, big)}
		a.e.Handle(ctx, "bob", "B1", &Signal{Call: id, Type: SignalCandidate, Candidate: &cand, At: now})
	}
	o, err := a.e.Offer(id)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Candidates) > 64 {
		t.Errorf("ATTACK WORKS: %d early candidates kept", len(o.Candidates))
	}
	if _, err := a.e.Answer(ctx, id, Media{SDP: review6FP("A1:A1")}); err != nil {
		t.Fatal(err)
	}
	if n := len(a.clientGot(SignalCandidate)); n > 64 {
		t.Errorf("ATTACK WORKS: %d early candidates forwarded", n)
	}
}

// TestReview6ClientAnswerRaces (run with -race): two local clients answer
// the same ringing call at once (two browser tabs, or the CLI and a tab)
// while the peer trickles candidates and hangs up. At most one answer
// succeeds; at most one answer goes to the peer; a call the peer ended
// stays ended.
func TestReview6ClientAnswerRaces(t *testing.T) {
	ctx := context.Background()
	for round := range 15 {
		a := newReview6Client(t, nil)
		id := newCallID()
		now := time.Now().UnixMilli()
		if err := a.e.Handle(ctx, "bob", "B1", &Signal{Call: id, Type: SignalOffer, SDP: review6FP("B1:B1"), At: now}); err != nil {
			t.Fatal(err)
		}
		var ok atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				var err error
				if i == 2 {
					_, err = a.e.Answer(ctx, id, Media{}) // the daemon's own answer (a headless client)
				} else {
					_, err = a.e.Answer(ctx, id, Media{SDP: review6FP(fmt.Sprintf("A%d:A%d", i, i))})
				}
				if err == nil {
					ok.Add(1)
				}
			}()
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			for i := range 50 {
				cand := webrtc.ICECandidateInit{Candidate: fmt.Sprintf("candidate:%d 1 udp 1 127.0.0.1 9 typ host", i)}
				a.e.Handle(ctx, "bob", "B1", &Signal{Call: id, Type: SignalCandidate, Candidate: &cand, At: now})
				a.e.ClientSignal(ctx, id, Signal{Type: SignalCandidate, Candidate: &cand})
			}
		}()
		go func() {
			defer wg.Done()
			<-start
			if round%2 == 0 {
				time.Sleep(time.Duration(round) * 100 * time.Microsecond)
				a.e.Handle(ctx, "bob", "B1", &Signal{Call: id, Type: SignalHangup, At: now})
			}
		}()
		close(start)
		wg.Wait()
		got, _ := a.e.Get(id)
		answers := 0
		for _, s := range a.sent(100 * time.Millisecond) {
			if s.Type == SignalAnswer {
				answers++
			}
		}
		if ok.Load() > 1 || answers > 1 {
			t.Fatalf("ATTACK WORKS: round %d: %d answers succeeded, %d answers sent", round, ok.Load(), answers)
		}
		if round%2 == 0 && got.State == StateAccepted {
			time.Sleep(100 * time.Millisecond)
			if got, _ = a.e.Get(id); got.State == StateAccepted {
				t.Fatalf("ATTACK WORKS: round %d: the peer hung up, the call is %q", round, got.State)
			}
		}
		a.e.Close()
	}
}

// TestReview6ClientSignalWrongStates: a local client's signals at odd
// states and for odd IDs are refused without effect on the peer.
func TestReview6ClientSignalWrongStates(t *testing.T) {
	ctx := context.Background()
	a := newReview6Client(t, nil)
	cand := webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host"}
	if err := a.e.ClientSignal(ctx, "nope", Signal{Type: SignalCandidate, Candidate: &cand}); !errors.Is(err, ErrMalformed) {
		t.Errorf("a bad ID: %v", err)
	}
	if err := a.e.ClientSignal(ctx, newCallID(), Signal{Type: SignalCandidate, Candidate: &cand}); !errors.Is(err, ErrNoCall) {
		t.Errorf("an unknown ID: %v", err)
	}
	// A ringing incoming call the client has not answered.
	id := newCallID()
	now := time.Now().UnixMilli()
	a.e.Handle(ctx, "bob", "B1", &Signal{Call: id, Type: SignalOffer, SDP: review6FP("B1:B1"), At: now})
	for _, s := range []Signal{
		{Type: SignalCandidate, Candidate: &cand},
		{Type: SignalAnswer, SDP: review6FP("A1:A1")},
		{Type: SignalGrant},
		{Type: SignalHangup},
		{Type: SignalTaken, Device: "A1"},
		{Type: SignalOffer, SDP: review6FP("A1:A1")},
	} {
		if err := a.e.ClientSignal(ctx, id, s); err == nil {
			t.Errorf("ATTACK WORKS: a client's %s for a ringing call it has not answered went out", s.Type)
		}
	}
	for _, s := range a.sent(100 * time.Millisecond) {
		if s.Type != SignalRinging {
			t.Errorf("ATTACK WORKS: the peer got a %s", s.Type)
		}
	}
	// An outgoing client call still calling: no answer or grant.
	c, err := a.e.Start(ctx, "carol", Media{SDP: review6FP("01:01")})
	if err == nil {
		t.Fatalf("a second call while one rings: %+v", c)
	}
	// Huge SDP.
	if err := a.e.ClientSignal(ctx, id, Signal{Type: SignalAnswer, SDP: strings.Repeat("a", MaxSDP+1)}); !errors.Is(err, ErrMalformed) {
		t.Errorf("a huge SDP: %v", err)
	}
	// Offer of an outgoing call / unknown call.
	if _, err := a.e.Offer(newCallID()); !errors.Is(err, ErrNoCall) {
		t.Errorf("Offer of an unknown call: %v", err)
	}
}

// TestReview6ClientSignalReentry: Config.ClientSignal runs under e.evMu.
// A client callback that reacts by calling back into the engine (it hangs
// up on a signal it does not expect, or answers) deadlocks the engine:
// emit takes e.evMu again. Every later event and Close hang.
func TestReview6ClientSignalReentry(t *testing.T) {
	ctx := context.Background()
	var e *Engine
	out := make(chan Signal, 1024)
	var once sync.Once
	e, err := NewEngine(Config{Signaller: chanSignaller{out}, Device: "A1", Settings: loopback, Log: slog.New(slog.DiscardHandler),
		Events: func(Call) {},
		ClientSignal: func(s Signal) {
			once.Do(func() { e.Hangup(ctx, s.Call) }) // a client that hangs up on the peer's answer
		}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.Start(ctx, "bob", Media{SDP: review6FP("01:01")})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Handle(ctx, "bob", "B1", &Signal{Call: c.ID, Type: SignalAnswer, SDP: review6FP("B1:B1"), At: time.Now().UnixMilli()})
	}()
	select {
	case <-done:
		e.Close()
	case <-time.After(5 * time.Second):
		// The engine is wedged; it is leaked on purpose.
		t.Errorf("ATTACK WORKS: a ClientSignal callback that calls Engine.Hangup deadlocks the engine (toClient holds e.evMu, emit takes it again)")
	}
}

// TestReview6ClientCallNeverEnds: Alice's web client calls Bob; Bob's
// device answers (any SDP with a fingerprint) and then sends nothing more,
// and the browser tab is gone (closed, reloaded: the page does not restore
// a live call, and has no button left for it). A daemon-run call would end
// "failed" when ICE gives up; a client call has no connection here, no
// timer after the answer, and nothing from the client is ever required:
// it stays accepted, and every later call (in or out) is busy, until
// someone hangs up by the CLI or the daemon restarts.
func TestReview6ClientCallNeverEnds(t *testing.T) {
	ctx := context.Background()
	a := newReview6Client(t, func(c *Config) { c.RingTimeout = 300 * time.Millisecond })
	c, err := a.e.Start(ctx, "bob", Media{SDP: review6FP("01:01")})
	if err != nil {
		t.Fatal(err)
	}
	a.e.Handle(ctx, "bob", "B1", &Signal{Call: c.ID, Type: SignalAnswer, SDP: review6FP("B1:B1"), At: time.Now().UnixMilli()})
	if got, _ := a.e.Get(c.ID); got.State != StateAccepted {
		t.Fatalf("not accepted: %+v", got)
	}
	time.Sleep(4 * time.Second) // far past any ring timeout; the client sent nothing at all
	got, _ := a.e.Get(c.ID)
	_, berr := a.e.Start(ctx, "carol", Media{SDP: review6FP("02:02")})
	if got.State == StateAccepted && errors.Is(berr, ErrBusy) {
		t.Errorf("ATTACK WORKS: a client call whose client vanished and whose peer went silent stays %q with no timer; other calls: %v", got.State, berr)
	}
}

// TestReview6PeerSignalsWrongStates: Bob's renegotiation signals (offer,
// renegotiate, grant) for Alice's client call before it is answered, and
// from a device that did not take it, never reach Alice's client.
func TestReview6PeerSignalsWrongStates(t *testing.T) {
	ctx := context.Background()
	a := newReview6Client(t, nil)
	c, err := a.e.Start(ctx, "bob", Media{SDP: review6FP("01:01")})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	reneg := func(dev string) {
		for _, s := range []Signal{
			{Call: c.ID, Type: SignalOffer, SDP: review6FP("0F:0F"), At: now},
			{Call: c.ID, Type: SignalRenegotiate, At: now},
			{Call: c.ID, Type: SignalGrant, At: now},
		} {
			a.e.Handle(ctx, "bob", dev, &s)
		}
	}
	reneg("B1")
	a.e.Handle(ctx, "bob", "B1", &Signal{Call: c.ID, Type: SignalRinging, At: now})
	reneg("B2")
	if n := len(a.clientGot(SignalOffer)) + len(a.clientGot(SignalRenegotiate)) + len(a.clientGot(SignalGrant)); n != 0 {
		t.Errorf("ATTACK WORKS: %d renegotiation signals reached the client before the call was answered", n)
	}
	a.e.Handle(ctx, "bob", "B1", &Signal{Call: c.ID, Type: SignalAnswer, SDP: review6FP("B1:B1"), At: now})
	reneg("B2")
	if n := len(a.clientGot(SignalOffer)) + len(a.clientGot(SignalRenegotiate)) + len(a.clientGot(SignalGrant)); n != 0 {
		t.Errorf("ATTACK WORKS: %d renegotiation signals from B2 (which did not take the call) reached the client", n)
	}
	// B2 hangs up: not its call.
	a.e.Handle(ctx, "bob", "B2", &Signal{Call: c.ID, Type: SignalHangup, At: now})
	if got, _ := a.e.Get(c.ID); got.State != StateAccepted {
		t.Errorf("ATTACK WORKS: B2's hangup ended B1's call: %+v", got)
	}
}

// TestReview6OfferAfterRinging: GET /v1/calls/{id}/offer (Engine.Offer) is
// documented as a ringing call's offer, but it answers for a call in any
// state: missed, declined, answered by the daemon, taken on another
// device. The web client's answer() fetches it, then opens camera and
// microphone (getUserMedia) before its POST /answer fails: a caller who
// hangs up as the user clicks Answer gets the user's devices opened for a
// call that is over (and calls.js never stops a stream that arrives after
// its cleanup).
func TestReview6OfferAfterRinging(t *testing.T) {
	ctx := context.Background()
	a := newReview6Client(t, nil)
	id := newCallID()
	now := time.Now().UnixMilli()
	a.e.Handle(ctx, "bob", "B1", &Signal{Call: id, Type: SignalOffer, SDP: review6FP("B1:B1"), At: now})
	a.e.Handle(ctx, "bob", "B1", &Signal{Call: id, Type: SignalHangup, At: now})
	if got, _ := a.e.Get(id); got.State.live() {
		t.Fatalf("still %s", got.State)
	}
	if o, err := a.e.Offer(id); err == nil {
		t.Errorf("ATTACK WORKS: Offer of a call that is %s returns its SDP (%d bytes), so the client goes on to open its media", func() State { c, _ := a.e.Get(id); return c.State }(), len(o.SDP))
	}
}

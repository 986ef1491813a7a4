package sfu_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/peergram/peergram/calls"
)

// TestReview7BadAnswerWedgesBridge: BridgeSignal (calls/bridge.go:305)
// keeps the offer waiting when SetRemoteDescription fails, so that the
// client may answer again; but Pion moves the signalling state to
// "stable" before it checks the answer's ICE credentials. An answer
// without an a=ice-ufrag is refused, yet the
// connection has left have-local-offer: every later answer is refused
// ("invalid state change"), b.waiting stays true for good and the bridge
// never offers again — no participant who joins later reaches the
// client, and the call goes on (the client is up, nothing times out).
func TestReview7BadAnswerWedgesBridge(t *testing.T) {
	env := r7Setup(t, 60*time.Second, nil)
	if err := env.joinClient(); err != nil {
		t.Fatal(err)
	}
	br := newR7Browser(t, false, nil)
	first, err := env.c.e.BridgeOffer(env.call)
	if err != nil {
		t.Fatal(err)
	}
	s, err := br.answer(first)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.c.e.BridgeSignal(env.call, s); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the bridge to connect", func() bool {
		return br.pc.ConnectionState() == webrtc.PeerConnectionStateConnected
	})
	if err := env.c.e.BridgeSignal(env.call, calls.BridgeSignal{Type: calls.ClientConnected}); err != nil {
		t.Fatal(err)
	}
	a := env.mk()
	if err := env.joinMember(a, calls.Media{Audio: patternOgg(t, 750)}); err != nil {
		t.Fatal(err)
	}
	var o calls.BridgeOffer
	select {
	case o = <-env.offers:
	case <-time.After(10 * time.Second):
		t.Fatal("no offer for A's track")
	}
	good, err := br.answer(o)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(good.SDP, "\r\n") {
		if !strings.HasPrefix(l, "a=ice-ufrag:") {
			lines = append(lines, l)
		}
	}
	bad := good
	bad.SDP = strings.Join(lines, "\r\n")
	if err := env.c.e.BridgeSignal(env.call, bad); !errors.Is(err, calls.ErrMalformed) {
		t.Fatalf("an answer without an ICE ufrag: %v", err)
	}
	// Fixed: the refused answer spent the offer (Pion had left
	// have-local-offer); the bridge offers again, and that offer is
	// answered.
	if err := env.c.e.BridgeSignal(env.call, good); !errors.Is(err, calls.ErrState) {
		t.Errorf("an answer to the spent offer: %v", err)
	}
	select {
	case o2 := <-env.offers:
		if o2.Version <= o.Version {
			t.Fatalf("offer %d after the refused answer to %d", o2.Version, o.Version)
		}
		good2, err := br.answer(o2)
		if err != nil {
			t.Fatal(err)
		}
		if err := env.c.e.BridgeSignal(env.call, good2); err != nil {
			t.Fatalf("the answer to the new offer: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no new offer after a refused answer")
	}
	// A second member joins: the bridge must offer its track.
	b := env.mk()
	if err := env.joinMember(b, calls.Media{Audio: patternOgg(t, 750)}); err != nil {
		t.Fatal(err)
	}
	select {
	case o2 := <-env.offers:
		t.Logf("offer %d after the refused answer", o2.Version)
	case <-time.After(5 * time.Second):
		g, _ := env.c.e.GetGroup(env.call)
		t.Errorf("the bridge never offers again (call %s, %d participants): it is wedged", g.State, len(g.Participants))
	}
}

// TestReview7SignalStorm: candidates, answers, bogus types and
// ClientConnected from many goroutines at once, while the call is left:
// nothing may panic or deadlock, and every signal after the end is
// ErrNoCall.
func TestReview7SignalStorm(t *testing.T) {
	env := r7Setup(t, 60*time.Second, nil)
	if err := env.joinClient(); err != nil {
		t.Fatal(err)
	}
	first, err := env.c.e.BridgeOffer(env.call)
	if err != nil {
		t.Fatal(err)
	}
	br := newR7Browser(t, false, nil)
	ans, err := br.answer(first)
	if err != nil {
		t.Fatal(err)
	}
	mid := "0"
	huge := strings.Repeat("a", 1<<20)
	sigs := []calls.BridgeSignal{
		{Type: calls.SignalCandidate},
		{Type: calls.SignalCandidate, Candidate: &webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host", SDPMid: &mid}},
		{Type: calls.SignalCandidate, Candidate: &webrtc.ICECandidateInit{Candidate: "garbage"}},
		{Type: calls.SignalCandidate, Candidate: &webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host", SDPMid: &huge}},
		{Type: calls.SignalAnswer, Version: first.Version, SDP: huge},
		{Type: calls.SignalAnswer, Version: first.Version, SDP: "v=0\r\nm=audio"},
		{Type: calls.SignalAnswer, Version: first.Version, SDP: ""},
		{Type: calls.SignalAnswer, Version: -1, SDP: ans.SDP},
		{Type: calls.SignalOffer, SDP: ans.SDP},
		{Type: calls.ClientConnected},
		ans,
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				for _, s := range sigs {
					_ = env.c.e.BridgeSignal(env.call, s)
				}
				_, _ = env.c.e.BridgeOffer(env.call)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	if _, err := env.c.e.LeaveGroup(env.ctx, env.call); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the signals deadlocked")
	}
	for _, s := range sigs {
		if err := env.c.e.BridgeSignal(env.call, s); !errors.Is(err, calls.ErrNoCall) {
			t.Errorf("a %s after the end: %v", s.Type, err)
		}
	}
}

// TestReview7ClosedTabEndsCall: a client that connected, reported so, and
// then went away (a closed tab) must not keep the device in the call:
// its bridge fails and the call ends. (ICE timeouts shortened.)
func TestReview7ClosedTabEndsCall(t *testing.T) {
	short := func(se *webrtc.SettingEngine) {
		loopback(se)
		se.SetICETimeouts(time.Second, 2*time.Second, 200*time.Millisecond)
	}
	env := r7Setup(t, 60*time.Second, func(c *calls.Config) { c.Settings = short })
	if err := env.joinClient(); err != nil {
		t.Fatal(err)
	}
	br := newR7Browser(t, false, func(se *webrtc.SettingEngine) { se.SetICETimeouts(time.Second, 2*time.Second, 200*time.Millisecond) })
	env.connectBrowser(br)
	br.pc.Close()
	waitFor(t, 15*time.Second, "the call to end after the tab closed", func() bool {
		g, _ := env.c.e.GetGroup(env.call)
		return g.State != calls.GroupJoined
	})
}

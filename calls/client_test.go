package calls

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// fakeBrowser is a peer connection standing in for the web client: it
// makes the SDPs the engine carries and takes the signals it forwards.
type fakeBrowser struct {
	t       *testing.T
	pc      *webrtc.PeerConnection
	packets atomic.Int64
	mu      sync.Mutex
	signals []Signal
}

func newFakeBrowser(t *testing.T) *fakeBrowser {
	t.Helper()
	se := webrtc.SettingEngine{}
	loopback(&se)
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	b := &fakeBrowser{t: t, pc: pc}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			b.packets.Add(1)
		}
	})
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// gathered sets desc and returns the SDP with every candidate in it.
func (b *fakeBrowser) gathered(desc webrtc.SessionDescription) string {
	done := webrtc.GatheringCompletePromise(b.pc)
	if err := b.pc.SetLocalDescription(desc); err != nil {
		b.t.Fatal(err)
	}
	<-done
	return b.pc.LocalDescription().SDP
}

// take is Config.ClientSignal: answers go into the connection, candidates
// too, everything is kept.
func (b *fakeBrowser) take(s Signal) {
	b.mu.Lock()
	b.signals = append(b.signals, s)
	b.mu.Unlock()
	switch s.Type {
	case SignalAnswer:
		if err := b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: s.SDP}); err != nil {
			b.t.Errorf("fake browser: answer: %v", err)
		}
	case SignalCandidate:
		_ = b.pc.AddICECandidate(*s.Candidate)
	}
}

func (b *fakeBrowser) got(typ string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, s := range b.signals {
		if s.Type == typ {
			n++
		}
	}
	return n
}

func waitPackets(t *testing.T, b *fakeBrowser) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for b.packets.Load() < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("the client received %d RTP packets", b.packets.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestClientCall: a call whose media runs in a client (the web client)
// on one side and in an engine on the other, both ways. The engine carries
// the client's SDP and the peer's signals, keeps the state and derives the
// same verification code as the peer.
func TestClientCall(t *testing.T) {
	ctx := context.Background()
	t.Run("client calls", func(t *testing.T) {
		n := newNetwork(t)
		browser := newFakeBrowser(t)
		alice := n.add("alice", "A1", func(c *Config) { c.ClientSignal = browser.take })
		bob := n.add("bob", "B1", nil)
		offer, err := browser.pc.CreateOffer(nil)
		if err != nil {
			t.Fatal(err)
		}
		c, err := alice.e.Start(ctx, "bob", Media{SDP: browser.gathered(offer), VideoCall: true})
		if err != nil {
			t.Fatal(err)
		}
		if !c.Client || c.State != StateCalling {
			t.Fatalf("started %+v", c)
		}
		in := waitIncoming(t, bob)
		if !in.Video {
			t.Fatalf("incoming %+v: not a video call", in)
		}
		if _, err := bob.e.Answer(ctx, c.ID, Media{Audio: testdata("audio.ogg"), Video: testdata("video.ivf")}); err != nil {
			t.Fatal(err)
		}
		ca, cb := waitState(t, alice, c.ID, StateAccepted), waitState(t, bob, c.ID, StateAccepted)
		if ca.Verification == "" || ca.Verification != cb.Verification {
			t.Fatalf("verification codes %q and %q", ca.Verification, cb.Verification)
		}
		waitPackets(t, browser)
		if browser.got(SignalAnswer) != 1 {
			t.Fatalf("the client got %d answers", browser.got(SignalAnswer))
		}
		// The client's own renegotiation is not the client's to start.
		for _, typ := range []string{SignalOffer, SignalRenegotiate, SignalHangup, SignalTaken} {
			s := Signal{Type: typ, SDP: "x"}
			if typ != SignalOffer {
				s.SDP = ""
			}
			if typ == SignalTaken {
				s.Device = "B1"
			}
			if err := alice.e.ClientSignal(ctx, c.ID, s); !errors.Is(err, ErrMalformed) {
				t.Errorf("a client's %s: %v, want ErrMalformed", typ, err)
			}
		}
		// The peer hangs up: the call ends here too.
		if err := bob.e.Hangup(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		waitState(t, alice, c.ID, StateEnded)
		// A candidate or an answer (to a renegotiation) that crosses
		// the hang-up is dropped quietly: nothing goes out.
		sentBefore := n.sent()
		if err := alice.e.ClientSignal(ctx, c.ID, Signal{Type: SignalCandidate, Candidate: &webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host"}}); err != nil {
			t.Errorf("a candidate for an ended call: %v, want it dropped", err)
		}
		if err := alice.e.ClientSignal(ctx, c.ID, Signal{Type: SignalAnswer, SDP: "v=0"}); err != nil {
			t.Errorf("an answer for an ended call: %v, want it dropped", err)
		}
		time.Sleep(100 * time.Millisecond)
		if got := n.sent(); got != sentBefore {
			t.Errorf("%d signals went out for an ended call", got-sentBefore)
		}
	})

	t.Run("client answers", func(t *testing.T) {
		n := newNetwork(t)
		browser := newFakeBrowser(t)
		alice := n.add("alice", "A1", nil)
		bob := n.add("bob", "B1", func(c *Config) { c.ClientSignal = browser.take })
		c, err := alice.e.Start(ctx, "bob", Media{Audio: testdata("audio.ogg"), Video: testdata("video.ivf")})
		if err != nil {
			t.Fatal(err)
		}
		waitIncoming(t, bob)
		if err := bob.e.ClientSignal(ctx, c.ID, Signal{Type: SignalCandidate, Candidate: &webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host"}}); !errors.Is(err, ErrState) {
			t.Errorf("a client signal for a call the daemon holds: %v, want ErrState", err)
		}
		o, err := bob.e.Offer(c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if err := browser.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: o.SDP}); err != nil {
			t.Fatal(err)
		}
		for _, cand := range o.Candidates {
			_ = browser.pc.AddICECandidate(cand)
		}
		ans, err := browser.pc.CreateAnswer(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.e.Answer(ctx, c.ID, Media{SDP: browser.gathered(ans), Audio: testdata("audio.ogg")}); !errors.Is(err, ErrMedia) {
			t.Fatalf("a client's answer with a file: %v, want ErrMedia", err)
		}
		cb, err := bob.e.Answer(ctx, c.ID, Media{SDP: browser.pc.LocalDescription().SDP})
		if err != nil {
			t.Fatal(err)
		}
		ca := waitState(t, alice, c.ID, StateAccepted)
		if !cb.Client || cb.Verification == "" || cb.Verification != ca.Verification {
			t.Fatalf("verification codes %q and %q (client %v)", ca.Verification, cb.Verification, cb.Client)
		}
		waitPackets(t, browser)
		// The prepared connection the answer replaced does not end the
		// call when it closes.
		time.Sleep(500 * time.Millisecond)
		if got, _ := bob.e.Get(c.ID); got.State != StateAccepted {
			t.Fatalf("bob's call %s (%s) after the client answered", got.State, got.Reason)
		}
		if err := bob.e.Hangup(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		waitState(t, alice, c.ID, StateEnded)
	})

	t.Run("bad client offers", func(t *testing.T) {
		n := newNetwork(t)
		alice := n.add("alice", "A1", nil)
		n.add("bob", "B1", nil)
		for name, m := range map[string]Media{
			"no fingerprint": {SDP: "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\n"},
			"with a file":    {SDP: "v=0\r\na=fingerprint:sha-256 AB:CD\r\n", Audio: testdata("audio.ogg")},
			"too long":       {SDP: "a=fingerprint:sha-256 AB\r\n" + string(make([]byte, MaxSDP))},
		} {
			if _, err := alice.e.Start(ctx, "bob", m); err == nil {
				t.Errorf("%s: started", name)
			}
		}
		if len(alice.e.List()) != 0 {
			t.Fatalf("refused offers left calls: %+v", alice.e.List())
		}
	})
}

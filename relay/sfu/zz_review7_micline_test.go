package sfu_test

import (
	"strings"
	"testing"
	"time"

	"github.com/peergram/peergram/calls"
)

// TestReview7FirstParticipantOnMicLine: the bridge adds a participant's
// track with PeerConnection.AddTrack (calls/bridge.go bridgeOutFor),
// which in Pion reuses any transceiver of the kind that has no sender —
// the bridge's own recvonly transceiver, the one the browser sends its
// microphone (or camera) on. The page (groupcalls.js answer) sets that
// transceiver to "sendonly", so the m-line carrying the first
// participant's audio (and the first video) is answered "sendonly": the
// browser is not to receive on it, and the participant is not heard.
// Here the browser behaves as the page does.
func TestReview7FirstParticipantOnMicLine(t *testing.T) {
	env := r7Setup(t, 60*time.Second, nil)
	if err := env.joinClient(); err != nil {
		t.Fatal(err)
	}
	br := newR7Browser(t, true, nil)
	env.connectBrowser(br)

	a := env.mk()
	if err := env.joinMember(a, calls.Media{Audio: patternOgg(t, 750)}); err != nil {
		t.Fatal(err)
	}
	shareKeys(t, env.call, a, env.c)
	adev := a.dev.ID().String()
	waitFor(t, 10*time.Second, "an answered offer with A's track", func() bool {
		o, err := env.c.e.BridgeOffer(env.call)
		if err != nil || len(o.Tracks) != 1 {
			return false
		}
		ld := br.pc.CurrentLocalDescription()
		return ld != nil && strings.Contains(br.pc.CurrentRemoteDescription().SDP, "msid:"+adev)
	})
	o, _ := env.c.e.BridgeOffer(env.call)
	micMid := ""
	for _, tr := range br.pc.GetTransceivers() {
		if s := tr.Sender(); s != nil && s.Track() == br.mic {
			micMid = tr.Mid()
		}
	}
	for mid, sec := range sdpSections(o.SDP) {
		if strings.Contains(sec, "msid:"+adev) && mid == micMid {
			// A browser answers it "sendonly" (the page set the direction;
			// JSEP answers the intersection): it does not receive on it.
			t.Errorf("A's audio is put on m-line %s, the one the browser sends its microphone on (offered %s)", mid, sdpDirection(sec))
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for br.count(adev) < 50 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := br.count(adev); n < 50 {
		t.Errorf("the browser got %d packets of A's audio in 10 s", n)
	}
	// The daemon still gets the microphone.
	g, _ := env.c.e.GetGroup(env.call)
	for _, tr := range g.Tracks {
		if tr.Direction == "sent" && tr.Kind == "audio" && tr.Frames < 50 {
			t.Errorf("the daemon sealed %d of the browser's frames", tr.Frames)
		}
	}
}

package calls

import (
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
)

// TestCallCodecs: an engine's offer carries Opus, VP8 and H.264 and
// nothing else (a smaller description is a faster call setup); a peer
// that offers only H.264 video gets H.264 in the answer; the bridge
// offers Opus and VP8 alone.
func TestCallCodecs(t *testing.T) {
	e, err := NewEngine(Config{Signaller: nopSig{}, Device: "D1", Settings: loopback})
	if err != nil {
		t.Fatal(err)
	}
	offerOf := func(api *webrtc.API) string {
		t.Helper()
		pc, err := api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
			if _, err := pc.AddTransceiverFromKind(k); err != nil {
				t.Fatal(err)
			}
		}
		o, err := pc.CreateOffer(nil)
		if err != nil {
			t.Fatal(err)
		}
		return o.SDP
	}
	api, err := e.api(&call{}, false)
	if err != nil {
		t.Fatal(err)
	}
	sdp := offerOf(api)
	for _, want := range []string{"opus/48000/2", "VP8/90000", "H264/90000", "rtx/90000"} {
		if !strings.Contains(sdp, want) {
			t.Errorf("the offer has no %s", want)
		}
	}
	for _, not := range []string{"VP9", "AV1", "H265", "PCMU", "PCMA", "G722", "packetization-mode=0"} {
		if strings.Contains(sdp, not) {
			t.Errorf("the offer has %s", not)
		}
	}
	if len(sdp) > 4000 { // Pion's default set: about 6,000
		t.Errorf("the offer is %d bytes", len(sdp))
	}

	bridge, err := e.bridgeAPI()
	if err != nil {
		t.Fatal(err)
	}
	b := offerOf(bridge)
	if !strings.Contains(b, "opus/48000/2") || !strings.Contains(b, "VP8/90000") || strings.Contains(b, "H264") || strings.Contains(b, "rtx") {
		t.Errorf("the bridge offers other codecs than Opus and VP8:\n%s", b)
	}

	// A peer with H.264 alone (as a phone with only a hardware encoder).
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"},
		PayloadType:        120,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	peer, err := webrtc.NewAPI(webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := peer.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	offer, err := peer.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	ours, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Close()
	if err := ours.SetRemoteDescription(offer); err != nil {
		t.Fatal(err)
	}
	answer, err := ours.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(answer.SDP, "a=rtpmap:120 H264/90000") || strings.Contains(answer.SDP, "VP8") {
		t.Errorf("the answer to an H.264 offer:\n%s", answer.SDP)
	}
}

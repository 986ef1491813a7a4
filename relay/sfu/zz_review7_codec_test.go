package sfu_test

import (
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/peergram/peergram/calls"
	"github.com/peergram/peergram/calls/sfuproto"
	"github.com/peergram/peergram/relay/sfu"
)

// TestReview7ForeignCodecWedgesBridge: a group member need not run the
// peergram daemon; with its own WebRTC stack it sends the SFU video in a
// codec the SFU accepts (the SFU registers Pion's defaults) but that the
// client's browser does not decode (H.265 here: Firefox, and Chrome
// without hardware support). bridgeOutFor (calls/bridge.go:390) makes the
// bridge track in whatever codec the SFU forwards; the browser's answer
// leaves that codec out; binding the track fails inside
// SetRemoteDescription after Pion has already moved the bridge to
// "stable", so BridgeSignal refuses the answer and keeps b.waiting set:
// no later offer is ever made or accepted. From then on nobody who joins
// reaches the browser (and nobody who leaves is taken off it).
func TestReview7ForeignCodecWedgesBridge(t *testing.T) {
	env := r7Setup(t, 60*time.Second, nil)
	if err := env.joinClient(); err != nil {
		t.Fatal(err)
	}
	// The browser: Opus and VP8 only.
	me := &webrtc.MediaEngine{}
	for _, c := range []struct {
		kind webrtc.RTPCodecType
		p    webrtc.RTPCodecParameters
	}{
		{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111}},
		{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}},
	} {
		if err := me.RegisterCodec(c.p, c.kind); err != nil {
			t.Fatal(err)
		}
	}
	se := webrtc.SettingEngine{}
	loopback(&se)
	bpc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bpc.Close() })
	br := &r7Browser{t: t, pc: bpc, got: map[string]int{}, first: true}
	bpc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			br.mu.Lock()
			br.got[tr.StreamID()]++
			br.mu.Unlock()
		}
	})
	env.connectBrowser(br)

	// The member with its own stack: H.265 video.
	x := env.mk()
	conn, err := sfu.Dial(env.ctx, x.h, env.relay.ID(), env.group, env.call, x.dev, x.cert)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	xse := webrtc.SettingEngine{}
	loopback(&xse)
	xme := &webrtc.MediaEngine{}
	if err := xme.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	xpc, err := webrtc.NewAPI(webrtc.WithMediaEngine(xme), webrtc.WithSettingEngine(xse)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer xpc.Close()
	xpc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			init := c.ToJSON()
			_ = conn.Send(&sfuproto.Message{Type: sfuproto.TypeCandidate, Candidate: &init})
		}
	})
	h265, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH265, ClockRate: 90000}, "video", x.dev.ID().String())
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		added := false
		for {
			m, err := conn.Recv()
			if err != nil {
				return
			}
			switch m.Type {
			case sfuproto.TypeOffer:
				if err := xpc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP}); err != nil {
					t.Logf("x: %v", err)
					return
				}
				if !added {
					added = true
					if _, err := xpc.AddTrack(h265); err != nil {
						t.Logf("x: %v", err)
					}
				}
				ans, err := xpc.CreateAnswer(nil)
				if err != nil {
					t.Logf("x: %v", err)
					return
				}
				if err := xpc.SetLocalDescription(ans); err != nil {
					t.Logf("x: %v", err)
					return
				}
				_ = conn.Send(&sfuproto.Message{Type: sfuproto.TypeAnswer, SDP: ans.SDP})
			case sfuproto.TypeCandidate:
				if m.Candidate != nil {
					_ = xpc.AddICECandidate(*m.Candidate)
				}
			}
		}
	}()
	go func() {
		for i := 0; env.ctx.Err() == nil; i++ {
			// A (sealed-looking) H.265 single NAL unit.
			_ = h265.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(i), Timestamp: uint32(i * 3000)},
				Payload: []byte{0x26, 0x01, 0xaa, 0xbb, 0xcc, 0xdd}})
			time.Sleep(33 * time.Millisecond)
		}
	}()
	// Fixed: the bridge carries Opus and VP8 only; x's video reaches
	// the SFU (and headless members) but not the bridge.
	waitFor(t, 15*time.Second, "x in the client's roster", func() bool {
		g, _ := env.c.e.GetGroup(env.call)
		return len(g.Participants) == 2
	})
	time.Sleep(2 * time.Second)
	if o, err := env.c.e.BridgeOffer(env.call); err != nil || len(o.Tracks) != 0 {
		t.Fatalf("the bridge offers x's H.265 video: %v %+v", err, o.Tracks)
	}

	// An honest member joins: the browser must get its audio.
	a := env.mk()
	if err := env.joinMember(a, calls.Media{Audio: patternOgg(t, 750)}); err != nil {
		t.Fatal(err)
	}
	shareKeys(t, env.call, a, env.c)
	adev := a.dev.ID().String()
	deadline := time.Now().Add(10 * time.Second)
	for br.count(adev) < 50 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := br.count(adev); n < 50 {
		o, _ := env.c.e.BridgeOffer(env.call)
		t.Errorf("after a member sent H.265, the browser got %d packets of an honest member's audio in 10 s (bridge offer version %d lists %d tracks)", n, o.Version, len(o.Tracks))
	}
}

package calls

// Group calls from a client (the web client): the browser takes part in
// a group call through its daemon, which bridges. The daemon keeps what
// a headless participant has — the connection to the SFU, its SFrame
// keys and the members' keys, the sealing and opening of every frame —
// and the browser has one peer connection, to its own daemon (the
// "bridge"): its microphone and camera go up it, and each other
// participant's opened audio and video come down it as a track of their
// own, named by the sender's device (the stream ID).
//
// Why not SFrame in the page (encoded transforms): the call's keys and
// the group's would have to reach the page, and the key handling would
// exist twice, in Go and in JavaScript; the bridge keeps them in the
// daemon, works in every browser with WebRTC, and costs a loopback hop.
//
// Negotiation on the bridge is the daemon's alone: it offers (at the
// join, and again whenever a participant's track comes or goes) and the
// client answers; so there is no glare. An offer goes out with every
// candidate gathered (the daemon's candidates are local and gathered at
// once); the client may trickle its own.

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
)

// BridgeOffer is the bridge's current offer, for the client to
// answer (GroupClientSignal with the same Version).
type BridgeOffer struct {
	Call    string `json:"call"`
	Group   string `json:"group"`
	SDP     string `json:"sdp"`
	Version int    `json:"version"`
	// Tracks names each track the offer sends by its stream ID: the
	// sending device's ID, and its kind.
	Tracks []GroupTrack `json:"tracks"`
}

// bridge is a client group call's connection to the client.
type bridge struct {
	pc    *webrtc.PeerConnection
	api   *webrtc.API
	video bool
	own   []*webrtc.RTPTransceiver // the client's microphone and camera come on these

	mu      sync.Mutex // negotiation; never held with Engine.mu
	offer   BridgeOffer
	waiting bool // an offer is out, its answer not in
	again   bool // tracks changed while waiting: offer again after the answer
	up      bool // the client reported its connection up
	timer   *time.Timer

	inVideo atomic.Uint32 // the SSRC of the client's video, for keyframe requests
}

// bridgeOut is a participant's track sent down the bridge.
type bridgeOut struct {
	track  *webrtc.TrackLocalStaticSample
	sender *webrtc.RTPSender
	clock  uint32
	// last and started are guarded by the groupRecv's mu.
	last    uint32
	started bool
}

// write sends an opened frame down the bridge; its duration comes from
// the RTP timestamps. r.mu held.
func (o *bridgeOut) write(frame []byte, ts uint32) {
	d := 20 * time.Millisecond
	if o.started {
		if diff := ts - o.last; diff > 0 && diff < o.clock {
			d = time.Duration(diff) * time.Second / time.Duration(o.clock)
		}
	}
	o.last, o.started = ts, true
	_ = o.track.WriteSample(media.Sample{Data: frame, Duration: d})
}

// checkClientGroupMedia checks the media of a client's join.
func checkClientGroupMedia(m Media) error {
	if m.Audio != "" || m.Video != "" || m.Record != "" || m.SDP != "" {
		return fmt.Errorf("%w: a client's group call sends no files", ErrMedia)
	}
	return nil
}

// clientSent makes the tracks a client's group call sends (what the
// bridge receives is sealed into them).
func (e *Engine) clientSent(g *groupCall) error {
	kinds := []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio}
	if g.media.VideoCall {
		kinds = append(kinds, webrtc.RTPCodecTypeVideo)
	}
	for _, k := range kinds {
		name, mime, key := "audio", webrtc.MimeTypeOpus, g.audioKey
		if k == webrtc.RTPCodecTypeVideo {
			name, mime, key = "video", webrtc.MimeTypeVP8, g.videoKey
		}
		track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: mime}, name, "peergram")
		if err != nil {
			return err
		}
		g.sent = append(g.sent, &sentTrack{name: name, kind: k.String(), track: track,
			sealer: &sealer{track: track, key: key, muted: &g.muted, audio: name == "audio"}})
	}
	return nil
}

// openBridge makes the bridge's connection and its first offer.
func (e *Engine) openBridge(g *groupCall) error {
	api, err := e.bridgeAPI()
	if err != nil {
		return err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return err
	}
	b := &bridge{pc: pc, api: api, video: g.media.VideoCall}
	e.mu.Lock()
	g.bridge = b
	e.mu.Unlock()
	kinds := []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio}
	if b.video {
		kinds = append(kinds, webrtc.RTPCodecTypeVideo)
	}
	for _, k := range kinds {
		tr, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
		if err != nil {
			return err
		}
		b.own = append(b.own, tr)
	}
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { e.bridgeIn(g, t) })
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateFailed:
			go e.endGroup(g, GroupFailed, "the client's connection failed", true)
		case webrtc.PeerConnectionStateClosed:
			// The client closed it (a closed tab says goodbye in DTLS),
			// or the call ended and closed it: endGroup runs once.
			go e.endGroup(g, GroupLeft, "the client went away", true)
		}
	})
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := e.bridgeOfferLocked(g, b); err != nil {
		return err
	}
	// A client that never connects (a closed tab) does not keep the
	// device in the call.
	b.timer = time.AfterFunc(e.clientConnectTimeout(), func() {
		b.mu.Lock()
		up := b.up
		b.mu.Unlock()
		if !up {
			e.endGroup(g, GroupFailed, "the client never connected", true)
		}
	})
	return nil
}

// bridgeOfferLocked makes a new offer with every candidate. b.mu held.
func (e *Engine) bridgeOfferLocked(g *groupCall, b *bridge) error {
	offer, err := b.pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(b.pc)
	if err := b.pc.SetLocalDescription(offer); err != nil {
		return err
	}
	select {
	case <-gathered:
	case <-time.After(5 * time.Second):
	case <-g.ctx.Done():
		return g.ctx.Err()
	}
	e.mu.Lock()
	recv := slices.Clone(g.recv)
	id, group := g.info.ID, g.info.Group
	e.mu.Unlock()
	var tracks []GroupTrack
	for _, r := range recv {
		r.mu.Lock()
		out := r.out != nil
		r.mu.Unlock()
		if out {
			tracks = append(tracks, GroupTrack{Name: r.name, Device: r.device, Kind: r.kind, Direction: "received"})
		}
	}
	b.offer = BridgeOffer{Call: id, Group: group, SDP: b.pc.LocalDescription().SDP, Version: b.offer.Version + 1, Tracks: tracks}
	b.waiting = true
	return nil
}

// reofferBridge offers again (a participant's track came or went); the
// offer goes to the client through Config.BridgeOffers.
func (e *Engine) reofferBridge(g *groupCall, b *bridge) {
	b.mu.Lock()
	if b.waiting {
		b.again = true
		b.mu.Unlock()
		return
	}
	err := e.bridgeOfferLocked(g, b)
	offer := b.offer
	b.mu.Unlock()
	if err != nil {
		if g.ctx.Err() == nil {
			e.log.Warn("calls: a bridge offer", "call", offer.Call, "err", err)
		}
		return
	}
	if e.cfg.BridgeOffers != nil {
		e.clientMu.Lock()
		e.cfg.BridgeOffers(offer)
		e.clientMu.Unlock()
	}
}

// groupBridge returns call's bridge.
func (e *Engine) groupBridge(call string) (*groupCall, *bridge, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	g := e.groups[call]
	if g == nil || g.ended {
		return nil, nil, ErrNoCall
	}
	if g.bridge == nil {
		return nil, nil, fmt.Errorf("%w: the call's media runs in the daemon", ErrState)
	}
	return g, g.bridge, nil
}

// BridgeOffer returns a client group call's current offer.
func (e *Engine) BridgeOffer(call string) (BridgeOffer, error) {
	_, b, err := e.groupBridge(call)
	if err != nil {
		return BridgeOffer{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	o := b.offer
	o.Tracks = slices.Clone(o.Tracks)
	return o, nil
}

// BridgeSignal is a client's signal on its group call's bridge: the
// answer to the offer of Version (SignalAnswer), a candidate
// (SignalCandidate), or ClientConnected.
type BridgeSignal struct {
	Type      string                   `json:"type"`
	SDP       string                   `json:"sdp,omitempty"`
	Version   int                      `json:"version,omitempty"`
	Candidate *webrtc.ICECandidateInit `json:"candidate,omitempty"`
}

// BridgeSignal takes the client's signal for its group call.
func (e *Engine) BridgeSignal(call string, s BridgeSignal) error {
	g, b, err := e.groupBridge(call)
	if err != nil {
		return err
	}
	b.mu.Lock()
	switch s.Type {
	case ClientConnected:
		// Connecting too: the client may finish its DTLS handshake
		// before this side does (a CI run saw a 409).
		if st := b.pc.ConnectionState(); st != webrtc.PeerConnectionStateConnected && st != webrtc.PeerConnectionStateConnecting {
			b.mu.Unlock()
			return fmt.Errorf("%w: the bridge is %s", ErrState, b.pc.ConnectionState())
		}
		b.up = true
		b.timer.Stop()
		b.mu.Unlock()
		return nil
	case SignalCandidate:
		defer b.mu.Unlock()
		if s.Candidate == nil || len(s.Candidate.Candidate) > MaxCandidate {
			return fmt.Errorf("%w: a candidate", ErrMalformed)
		}
		if b.pc.RemoteDescription() == nil {
			return fmt.Errorf("%w: a candidate before the answer", ErrState)
		}
		return b.pc.AddICECandidate(*s.Candidate)
	case SignalAnswer:
		if !b.waiting || s.Version != b.offer.Version {
			v := b.offer.Version
			b.mu.Unlock()
			return fmt.Errorf("%w: no offer of version %d waits (the current is %d)", ErrState, s.Version, v)
		}
		if len(s.SDP) > MaxSDP {
			b.mu.Unlock()
			return fmt.Errorf("%w: an SDP of %d bytes", ErrMalformed, len(s.SDP))
		}
		if err := b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: s.SDP}); err != nil {
			stuck := b.pc.SignalingState() != webrtc.SignalingStateHaveLocalOffer
			if stuck {
				// Pion left have-local-offer before it found the fault
				// (review finding: the bridge then never offered again):
				// the offer is spent, a new one follows.
				b.waiting = false
			}
			b.mu.Unlock()
			if stuck {
				e.spawn(func() { e.reofferBridge(g, b) })
			}
			return fmt.Errorf("%w: the client's answer: %v", ErrMalformed, err)
		}
		b.waiting = false
		again := b.again
		b.again = false
		b.mu.Unlock()
		if again {
			e.spawn(func() { e.reofferBridge(g, b) })
		}
		return nil
	}
	b.mu.Unlock()
	return fmt.Errorf("%w: a client sends no %s in a group call", ErrMalformed, s.Type)
}

// bridgeIn seals what the client sends into this device's tracks to the
// SFU: each Opus packet is a frame; video packets are made frames again
// first (the SFrame seal is per frame).
func (e *Engine) bridgeIn(g *groupCall, t *webrtc.TrackRemote) {
	name := "audio"
	if t.Kind() == webrtc.RTPCodecTypeVideo {
		name = "video"
	}
	e.mu.Lock()
	var st *sentTrack
	for _, s := range g.sent {
		if s.name == name {
			st = s
		}
	}
	b := g.bridge
	ok := st != nil && !g.ended && !e.closed
	if ok {
		e.wg.Add(1)
	}
	e.mu.Unlock()
	if !ok {
		return
	}
	defer e.wg.Done()
	var sb *samplebuilder.SampleBuilder
	if name == "video" {
		if t.Codec().MimeType != webrtc.MimeTypeVP8 {
			e.log.Warn("calls: the client sends video that is not VP8", "call", g.info.ID, "codec", t.Codec().MimeType)
			return
		}
		b.inVideo.Store(uint32(t.SSRC()))
		sb = samplebuilder.New(128, &codecs.VP8Packet{}, 90000)
	}
	var last uint32
	started := false
	for {
		pkt, _, err := t.ReadRTP()
		if err != nil {
			return
		}
		if sb == nil {
			if len(pkt.Payload) == 0 {
				continue
			}
			d := 20 * time.Millisecond
			if diff := pkt.Timestamp - last; started && diff > 0 && diff <= 48000/8 {
				d = time.Duration(diff) * time.Second / 48000
			}
			last, started = pkt.Timestamp, true
			if st.sealer.WriteSample(media.Sample{Data: pkt.Payload, Duration: d}) == nil {
				st.frames.Add(1)
			}
			continue
		}
		sb.Push(pkt)
		for s := sb.Pop(); s != nil; s = sb.Pop() {
			if st.sealer.WriteSample(*s) == nil {
				st.frames.Add(1)
			}
		}
	}
}

// bridgeOutFor adds r's track to the bridge (its frames go down it once
// opened) and offers again.
func (e *Engine) bridgeOutFor(g *groupCall, r *groupRecv, t *webrtc.TrackRemote) {
	b := g.bridge
	if mime := t.Codec().MimeType; !strings.EqualFold(mime, webrtc.MimeTypeOpus) && !strings.EqualFold(mime, webrtc.MimeTypeVP8) {
		// Frames are rebuilt from Opus and VP8 packets only, and a codec
		// the client cannot take would make it refuse the offer (review
		// finding: a member's H.265 froze the bridge).
		e.log.Info("calls: not bridging a track", "call", g.info.ID, "device", r.device, "codec", mime)
		return
	}
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: t.Codec().MimeType}, r.kind, r.device)
	if err != nil {
		e.log.Warn("calls: a bridge track", "call", g.info.ID, "err", err)
		return
	}
	b.mu.Lock()
	sender, err := b.addOut(track)
	b.mu.Unlock()
	if err != nil {
		e.log.Warn("calls: a bridge track", "call", g.info.ID, "err", err)
		return
	}
	clock := t.Codec().ClockRate
	if clock == 0 {
		clock = 90000
	}
	r.mu.Lock()
	r.out = &bridgeOut{track: track, sender: sender, clock: clock}
	r.mu.Unlock()
	// The client's keyframe requests go to the SFU, for the sender.
	ssrc := r.ssrc
	e.spawn(func() {
		for {
			pkts, _, err := sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				switch p.(type) {
				case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
					_ = g.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
				}
			}
		}
	})
	e.reofferBridge(g, b)
}

// bridgeDrop takes r's track off the bridge (its sender left).
func (e *Engine) bridgeDrop(g *groupCall, r *groupRecv) {
	r.mu.Lock()
	out := r.out
	r.out = nil
	r.mu.Unlock()
	if out == nil || g.ctx.Err() != nil {
		return
	}
	b := g.bridge
	b.mu.Lock()
	err := b.pc.RemoveTrack(out.sender)
	b.mu.Unlock()
	if err != nil && !errors.Is(err, webrtc.ErrConnectionClosed) {
		e.log.Info("calls: a bridge track stays", "call", g.info.ID, "err", err)
	}
	e.reofferBridge(g, b)
}

// sentRTCP reads the SFU's feedback on a track this device sends; for a
// client's video, a keyframe request goes on to the client.
func (e *Engine) sentRTCP(g *groupCall, s *webrtc.RTPSender, video bool) {
	b := g.bridge
	if b == nil || !video {
		e.drainRTCP(s)
		return
	}
	e.spawn(func() {
		for {
			pkts, _, err := s.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				switch p.(type) {
				case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
					if ssrc := b.inVideo.Load(); ssrc != 0 {
						_ = b.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
					}
				}
			}
		}
	})
}

// closeBridge ends the bridge's connection.
func (b *bridge) close() {
	if b == nil {
		return
	}
	b.mu.Lock()
	if b.timer != nil {
		b.timer.Stop()
	}
	b.mu.Unlock()
	_ = b.pc.Close()
}

// addOut puts a participant's track on a line of its own: one a track
// left (inactive now) if there is one, else a new sendonly line — never
// the lines the client's microphone and camera come on (review finding:
// Pion's AddTrack reused those, and the client, which sends on them, did
// not play the first participant). b.mu held.
func (b *bridge) addOut(track *webrtc.TrackLocalStaticSample) (*webrtc.RTPSender, error) {
	for _, tr := range b.pc.GetTransceivers() {
		if tr.Kind() != track.Kind() || tr.Sender() != nil || tr.Direction() != webrtc.RTPTransceiverDirectionInactive || slices.Contains(b.own, tr) {
			continue
		}
		sender, err := b.api.NewRTPSender(track, b.pc.SCTP().Transport())
		if err != nil {
			return nil, err
		}
		if err := tr.SetSender(sender, track); err != nil {
			_ = sender.Stop()
			return nil, err
		}
		return sender, nil
	}
	tr, err := b.pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return nil, err
	}
	return tr.Sender(), nil
}

// bridgeAPI is the bridge's WebRTC: Opus and VP8 only (what frames are
// rebuilt from), and ICE on loopback only — the client is on this
// machine, and nothing else needs to reach the bridge.
func (e *Engine) bridgeAPI() (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if err := registerCodecs(me, true); err != nil {
		return nil, err
	}
	reg := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, reg); err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool {
		ifc, err := net.InterfaceByName(name)
		return err == nil && ifc.Flags&net.FlagLoopback != 0
	})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetPrflxAcceptanceMinWait(0) // a browser's checks may come from its other addresses
	if e.cfg.Settings != nil {
		e.cfg.Settings(&se) // tests' ICE timings
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)), nil
}

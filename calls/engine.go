// Package calls is Peergram's call engine: voice and video calls between
// two devices over Pion WebRTC, with screen sharing as a second video
// track.
//
// Why it is built this way: the offer, answer and ICE candidates travel
// as Signals inside the end-to-end session the node already keeps with
// the peer (the engine asks only for a Signaller; it never imports the
// node), so the DTLS fingerprints in the SDPs are authenticated end to
// end. Pion's fingerprint check stays on: a relay, TURN server or anyone
// else in the media path who offers another certificate fails the DTLS
// handshake, and the call fails rather than connects. Both sides derive
// the same short verification code (four emoji and a number) from the
// two fingerprints, for users who compare them out of band.
//
// A headless node sends media from files (Ogg/Opus, IVF/VP8) and records
// what it receives (Ogg, IVF), so calls work from the CLI, for bots and
// in tests; the signalling is plain JSON a browser peer can speak.
package calls

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/stats"
	"github.com/pion/webrtc/v4"
)

// State is a call's state.
type State string

// States. Calling, ringing and accepted are live; the rest are final.
const (
	// StateCalling: the offer is on its way; no device rings yet.
	StateCalling State = "calling"
	StateRinging State = "ringing"
	// StateAccepted: answered; media flows once connected.
	StateAccepted State = "accepted"
	StateDeclined State = "declined"
	StateBusy     State = "busy"
	// StateMissed: nobody answered within the ring timeout (45 s), or
	// the caller gave up first.
	StateMissed State = "missed"
	StateEnded  State = "ended"
	// StateFailed: the connection could not be made or was lost (a DTLS
	// fingerprint that does not match ends here).
	StateFailed State = "failed"
)

func (s State) live() bool { return s == StateCalling || s == StateRinging || s == StateAccepted }

// closedGrace is how long a call whose connection the peer closed waits
// for the peer's hangup signal before it ends.
const closedGrace = 3 * time.Second

// Directions.
const (
	Outgoing = "outgoing"
	Incoming = "incoming"
)

// Errors.
var (
	ErrNoCall = errors.New("calls: no such call")
	ErrBusy   = errors.New("calls: already in a call")
	ErrState  = errors.New("calls: not possible in the call's state")
	ErrClosed = errors.New("calls: engine closed")
)

// Media is what a side of a call sends and where it records: Audio an
// Ogg/Opus file, Video an IVF/VP8 file, Record a directory that gets
// one file per received track (<track>.ogg, <track>.ivf).
//
// SDP, when set, is the offer (Start) or answer (Answer) of a client that
// runs the call's media itself: the web client, with the browser's
// WebRTC (client.go). Audio, Video and Record are then empty; VideoCall
// marks a client's offer as a video call.
type Media struct {
	Audio     string `json:"audio,omitempty"`
	Video     string `json:"video,omitempty"`
	Record    string `json:"record,omitempty"`
	SDP       string `json:"sdp,omitempty"`
	VideoCall bool   `json:"video_call,omitempty"`
	// Client: a group call whose media runs in a client of the daemon
	// (the web client), bridged by the engine (bridge.go); VideoCall
	// says whether the client sends video too.
	Client bool `json:"client,omitempty"`
}

// Track is a call's track as seen by this side.
type Track struct {
	// Name is "audio", "video" or "screen" for tracks sent, and the
	// sender's track ID (made safe as a file name) for tracks received.
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Direction string `json:"direction"` // "sent" or "received"
	Packets   uint64 `json:"packets"`
	// Frames is the media samples sent (Opus packets, video frames).
	Frames uint64 `json:"frames,omitempty"`
	// File is the recording of a received track.
	File string `json:"file,omitempty"`
}

// Call is a call as this side knows it.
type Call struct {
	ID        string `json:"id"`
	Peer      string `json:"peer"`
	Direction string `json:"direction"`
	State     State  `json:"state"`
	Reason    string `json:"reason,omitempty"`
	// Device is the peer's device on the call: the caller's for an
	// incoming call, the one that answered for an outgoing one.
	Device     string     `json:"device,omitempty"`
	Video      bool       `json:"video"`
	StartedAt  time.Time  `json:"started_at"`
	AcceptedAt *time.Time `json:"accepted_at,omitempty"`
	// MediaAt is when the first media packet from the peer arrived (an
	// event is published then: the call's timer starts).
	MediaAt *time.Time `json:"media_at,omitempty"`
	EndedAt *time.Time `json:"ended_at,omitempty"`
	// Verification is the code both sides show: four emoji and a number.
	Verification string  `json:"verification"`
	Sharing      bool    `json:"sharing,omitempty"`
	Tracks       []Track `json:"tracks"`
	// Client: the call's media runs in a client (the web client), not in
	// the daemon; its track counts are the client's to tell.
	Client bool `json:"client,omitempty"`
}

// Signaller carries a call's signals to a peer inside the end-to-end
// session: to every device of the peer's account, in the order sent.
type Signaller interface {
	Signal(ctx context.Context, peer string, s Signal) error
}

// Config configures an Engine.
type Config struct {
	Signaller Signaller
	// Device is this device's ID: signals bound to another device of
	// this account are not for this engine.
	Device string
	// RingTimeout is how long a call rings unanswered (default 45 s).
	RingTimeout time.Duration
	// ICEServers are STUN/TURN servers; RelayOnly uses TURN relay
	// candidates alone.
	ICEServers []webrtc.ICEServer
	RelayOnly  bool
	// ICE, when set, adds servers for each new call (TURN credentials
	// that expire: the node fetches them from its relay).
	ICE func(context.Context) []webrtc.ICEServer
	// Settings adjusts Pion's SettingEngine (tests keep ICE on loopback).
	Settings func(*webrtc.SettingEngine)
	// Events receives every call whose state changes, in order.
	Events func(Call)
	// ClientSignal receives the peer's signals for client calls (Media.SDP),
	// in order, for the client: answers, candidates, renegotiation.
	ClientSignal func(Signal)
	// BridgeOffers receives the new offers of client group calls'
	// bridges (bridge.go), in order, for the client to answer.
	BridgeOffers func(BridgeOffer)
	// GroupEvents receives every group call that changes (joined,
	// roster, muted, left), in order.
	GroupEvents func(GroupCall)
	// MaxHistory is the finished calls kept in memory (default 200).
	MaxHistory int
	// CallsPerMinute is how many calls one peer may start in a minute;
	// more are dropped (default 6: a person does not call more often).
	CallsPerMinute int
	Log            *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Engine runs the calls of one device.
type Engine struct {
	cfg Config
	se  webrtc.SettingEngine
	log *slog.Logger

	mu       sync.Mutex
	calls    map[string]*call
	groups   map[string]*groupCall
	offers   map[string][]time.Time // recent opening offers per peer (offerLimit)
	order    []string               // finished calls, oldest first
	closed   bool
	evMu     sync.Mutex // orders Events
	clientMu sync.Mutex // orders ClientSignal
	wg       sync.WaitGroup
}

// NewEngine makes an engine; Close ends its calls.
func NewEngine(cfg Config) (*Engine, error) {
	if cfg.Signaller == nil {
		return nil, errors.New("calls: no signaller")
	}
	if cfg.RingTimeout <= 0 {
		cfg.RingTimeout = 45 * time.Second
	}
	if cfg.MaxHistory <= 0 {
		cfg.MaxHistory = 200
	}
	if cfg.CallsPerMinute <= 0 {
		cfg.CallsPerMinute = offerLimit
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	se := webrtc.SettingEngine{}
	// The answerer starts its connectivity checks as soon as it has the
	// caller's candidates, before the caller has the answer (it comes
	// through the outbox): the caller first learns the answerer as a
	// peer-reflexive candidate, which Pion accepts only after 1 s by
	// default — every call took a second longer to carry media
	// (peergram-bench C2). The checks are authenticated by the ICE
	// credentials in the sealed SDPs, and DTLS checks the fingerprint.
	se.SetPrflxAcceptanceMinWait(0)
	if cfg.Settings != nil {
		cfg.Settings(&se)
	}
	return &Engine{cfg: cfg, se: se, log: cfg.Log, calls: map[string]*call{}, groups: map[string]*groupCall{}, offers: map[string][]time.Time{}}, nil
}

// api makes the Pion API of one call: its codecs (a 1:1 call's, see
// registerCodecs; a group call takes Pion's whole default set, as the
// SFU does, so that no member's codec can make the SFU's offer one the
// engine refuses), the default interceptors (NACK, RTCP reports, TWCC),
// and a stats interceptor whose counts the call reads.
func (e *Engine) api(c *call, group bool) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	register := func() error { return registerCodecs(me, false) }
	if group {
		register = me.RegisterDefaultCodecs
	}
	if err := register(); err != nil {
		return nil, err
	}
	reg := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, reg); err != nil {
		return nil, err
	}
	sf, err := stats.NewInterceptor()
	if err != nil {
		return nil, err
	}
	sf.OnNewPeerConnection(func(_ string, g stats.Getter) {
		e.mu.Lock()
		c.stats = g
		e.mu.Unlock()
	})
	reg.Add(sf)
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(e.se)), nil
}

// call is one call's state; info is guarded by Engine.mu.
type call struct {
	e        *Engine
	info     Call
	media    Media
	polite   bool // the callee: renegotiates only when the caller grants it
	client   bool // the media runs in a client (client.go): no connection here
	clientUp bool // (client) the client reported its connection up
	ctx      context.Context
	cancel   context.CancelFunc

	offer     string // an incoming call's opening offer, until answered
	prepared  bool   // (callee) its connection made and the offer set while ringing
	answering bool   // (callee) Answer has taken it
	offerSDP  string // the opening offer and answer, for the code
	answerSDP string
	pc        *webrtc.PeerConnection
	stats     stats.Getter
	cands     []webrtc.ICECandidateInit // before the remote description
	holdCands bool                      // gathering for the SDP: candidates wait in held
	held      []webrtc.ICECandidateInit
	remoteSet bool
	timer     *time.Timer
	out       chan Signal
	outDone   bool

	neg      sync.Mutex // one negotiation at a time
	sent     []*sentTrack
	recv     []*recvTrack
	started  bool // media started
	reneg    bool // this side's offer is due once the negotiation under way ends
	asked    bool // (caller) the callee asked to offer
	granted  bool // (caller) the callee may offer; no offer of ours until it did
	asking   bool // (callee) asked, waiting for the grant
	mayOffer bool // (callee) granted
	share    *sentTrack
	shareNew bool // the share waits for its answer to start
}

type sentTrack struct {
	name    string
	kind    string
	src     source
	track   *webrtc.TrackLocalStaticSample
	sealer  *sealer // group calls: seals each frame first
	sender  *webrtc.RTPSender
	frames  atomic.Uint64
	ssrc    uint32 // read once: Pion's GetParameters races with renegotiation
	stop    context.CancelFunc
	playing bool   // its file is being sent (or was)
	final   uint64 // packets, once the call ended
}

type recvTrack struct {
	name    string
	kind    string
	file    string
	packets atomic.Uint64
}

func newCallID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// busy tells whether a live call other than except exists. e.mu held.
func (e *Engine) busy(except string) bool {
	for id, c := range e.calls {
		if id != except && c.info.State.live() {
			return true
		}
	}
	return false
}

// Start calls peer: an offer goes to every device of the peer, and the
// call rings there. It returns once the offer is sent.
func (e *Engine) Start(ctx context.Context, peer string, m Media) (Call, error) {
	if m.SDP != "" {
		return e.startClient(peer, m)
	}
	srcs, err := sources(m)
	if err != nil {
		return Call{}, err
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return Call{}, ErrClosed
	}
	if e.busy("") {
		e.mu.Unlock()
		return Call{}, ErrBusy
	}
	c := e.newCall(newCallID(), peer, Outgoing, m)
	c.info.State = StateCalling
	c.info.Video = m.Video != ""
	e.calls[c.info.ID] = c
	e.mu.Unlock()

	if err := e.setup(c, srcs, true); err != nil {
		e.end(c, StateFailed, err.Error(), false)
		return c.snapshot(), err
	}
	c.neg.Lock()
	offer, err := c.pc.CreateOffer(nil)
	if err == nil {
		c.offerSDP = offer.SDP
		err = e.setLocalGathered(c, offer, func(sdp string) {
			c.send(Signal{Type: SignalOffer, SDP: sdp, Video: c.info.Video})
		})
	}
	c.neg.Unlock()
	e.mu.Lock()
	over := !c.info.State.live()
	if err == nil && !over {
		c.timer = time.AfterFunc(e.cfg.RingTimeout, func() { e.ringTimeout(c) })
	}
	e.mu.Unlock()
	if over {
		// The peer answered already: busy, or declined at once (the
		// offer goes out before it is set locally). end may have run
		// before the connection existed: close it here too.
		c.pc.Close()
		return c.snapshot(), nil
	}
	if err != nil {
		e.end(c, StateFailed, err.Error(), true)
		return c.snapshot(), err
	}
	e.emit(c)
	return c.snapshot(), nil
}

func sources(m Media) ([]source, error) {
	var out []source
	for _, f := range []struct {
		path string
		kind webrtc.RTPCodecType
	}{{m.Audio, webrtc.RTPCodecTypeAudio}, {m.Video, webrtc.RTPCodecTypeVideo}} {
		if f.path == "" {
			continue
		}
		s, err := openSource(f.path)
		if err != nil {
			return nil, err
		}
		if s.kind != f.kind {
			return nil, fmt.Errorf("%w: %s is %s, not %s", ErrMedia, f.path, s.kind, f.kind)
		}
		out = append(out, s)
	}
	if m.Record != "" {
		if fi, err := os.Stat(m.Record); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("%w: record directory %q", ErrMedia, m.Record)
		}
	}
	return out, nil
}

func (e *Engine) newCall(id, peer, dir string, m Media) *call {
	ctx, cancel := context.WithCancel(context.Background())
	c := &call{e: e, media: m, ctx: ctx, cancel: cancel, out: make(chan Signal, 256)}
	c.info = Call{ID: id, Peer: peer, Direction: dir, StartedAt: e.cfg.Now(), Tracks: []Track{}}
	e.wg.Add(1)
	go c.sender()
	return c
}

// sender sends c's signals in order until the call is over and they
// are out.
func (c *call) sender() {
	defer c.e.wg.Done()
	for s := range c.out {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		if err := c.e.cfg.Signaller.Signal(ctx, c.info.Peer, s); err != nil {
			c.e.log.Warn("calls: signal not sent", "call", s.Call, "type", s.Type, "err", err)
		}
		cancel()
	}
}

// send queues s for the peer; after the call's end nothing more goes.
func (c *call) send(s Signal) {
	s.Call = c.info.ID
	s.At = c.e.cfg.Now().UnixMilli()
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	if s.Device == "" {
		s.Device = c.info.Device // once bound; before, every device
	}
	if c.outDone {
		return
	}
	select {
	case c.out <- s:
	default:
		c.e.log.Warn("calls: signal queue full; dropped", "call", c.info.ID, "type", s.Type)
	}
}

// setup makes c's peer connection with its tracks: every call offers
// audio and video both ways; a side without a file receives only.
func (e *Engine) setup(c *call, srcs []source, offerer bool) error {
	cfg := webrtc.Configuration{ICEServers: slices.Clone(e.cfg.ICEServers)}
	if e.cfg.ICE != nil {
		ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
		cfg.ICEServers = append(cfg.ICEServers, e.cfg.ICE(ctx)...)
		cancel()
	}
	if e.cfg.RelayOnly {
		cfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	api, err := e.api(c, false)
	if err != nil {
		return err
	}
	pc, err := api.NewPeerConnection(cfg)
	if err != nil {
		return err
	}
	e.mu.Lock()
	c.pc = pc
	e.mu.Unlock()
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand == nil {
			return
		}
		init := cand.ToJSON()
		e.mu.Lock()
		if c.holdCands {
			c.held = append(c.held, init)
			e.mu.Unlock()
			return
		}
		e.mu.Unlock()
		c.send(Signal{Type: SignalCandidate, Candidate: &init})
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		e.log.Debug("calls: connection", "call", c.info.ID, "state", s.String())
		e.mu.Lock()
		stale := c.pc != pc // a ringing call's prepared connection, dropped when a client answered
		e.mu.Unlock()
		if stale {
			return
		}
		switch s {
		case webrtc.PeerConnectionStateConnected:
			e.connected(c)
		case webrtc.PeerConnectionStateFailed:
			go e.end(c, StateFailed, "connection failed", true) // not inside Pion's callback
		case webrtc.PeerConnectionStateClosed:
			// Closed under a live call: Pion closes the connection when
			// DTLS does. Most likely the peer hung up, whose signal comes
			// the slower way: it decides, or after a while the call ends
			// — as failed if it never connected (a handshake that failed:
			// a fingerprint that does not match), else as ended. (A CI run
			// saw a hang-up just as the callee was connecting end the
			// callee's call as failed.) A call this side ended is final
			// already.
			e.mu.Lock()
			was := c.started
			e.mu.Unlock()
			if !was {
				time.AfterFunc(closedGrace, func() { e.end(c, StateFailed, "connection closed", true) })
				return
			}
			time.AfterFunc(closedGrace, func() { e.end(c, StateEnded, "connection closed by the peer", true) })
		}
	})
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { e.receive(c, t) })
	have := map[webrtc.RTPCodecType]bool{}
	for _, s := range srcs {
		have[s.kind] = true
		name := "audio"
		mime := webrtc.MimeTypeOpus
		if s.kind == webrtc.RTPCodecTypeVideo {
			name, mime = "video", webrtc.MimeTypeVP8
		}
		track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: mime}, name, "peergram")
		if err != nil {
			return err
		}
		st := &sentTrack{name: name, kind: s.kind.String(), src: s, track: track}
		if offerer {
			tr, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv})
			if err != nil {
				return err
			}
			st.sender = tr.Sender()
		} else if st.sender, err = pc.AddTrack(track); err != nil {
			return err
		}
		st.ssrc = ssrcOf(st.sender)
		e.drainRTCP(st.sender)
		c.sent = append(c.sent, st)
	}
	if offerer {
		for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
			if !have[k] {
				if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// drainRTCP reads a sender's RTCP, which keeps its interceptors (NACK,
// reports) working.
func (e *Engine) drainRTCP(s *webrtc.RTPSender) {
	e.spawn(func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := s.Read(buf); err != nil {
				return
			}
		}
	})
}

// spawn runs f on a goroutine Close waits for — unless Close has begun:
// then f does not run (a call being set up as the engine closes ends
// with it; its connection is closed, so there is nothing to read).
func (e *Engine) spawn(f func()) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f()
	}()
	return true
}

// connected starts the media once the connection is up.
func (e *Engine) connected(c *call) {
	e.mu.Lock()
	if c.started || !c.info.State.live() {
		e.mu.Unlock()
		return
	}
	c.started = true
	var ts []*sentTrack
	for _, st := range c.sent {
		if st != c.share || !c.shareNew {
			ts = append(ts, st)
		}
	}
	e.mu.Unlock()
	for _, st := range ts {
		e.playTrack(c, st)
	}
}

// playTrack starts sending st's file, once.
func (e *Engine) playTrack(c *call, st *sentTrack) {
	ctx, stop := context.WithCancel(c.ctx)
	e.mu.Lock()
	if st.playing {
		e.mu.Unlock()
		stop()
		return
	}
	st.playing, st.stop = true, stop
	e.mu.Unlock()
	e.spawn(func() {
		if err := play(ctx, st.src, st.track, &st.frames); err != nil {
			e.log.Warn("calls: sending a file stopped", "call", c.info.ID, "track", st.name, "err", err)
		}
	})
}

// receive reads (and records) a track from the peer until it ends.
func (e *Engine) receive(c *call, t *webrtc.TrackRemote) {
	rt := &recvTrack{name: fileName(t.ID(), t.Kind().String()), kind: t.Kind().String()}
	var w rtpWriter
	e.mu.Lock()
	if len(c.recv) >= maxRecordings {
		// A peer adding and swapping tracks without end: no more
		// readers, files or goroutines (review finding); Pion drops
		// what nobody reads.
		e.mu.Unlock()
		e.log.Warn("calls: a track beyond the limit ignored", "call", c.info.ID, "track", t.ID())
		return
	}
	if c.media.Record != "" {
		var err error
		var p string
		if w, p, err = newRecorder(c.media.Record, t); err != nil {
			e.log.Warn("calls: not recording a track", "call", c.info.ID, "track", t.ID(), "err", err)
			w = nil
		}
		rt.file = p
	}
	if e.closed {
		e.mu.Unlock()
		if w != nil {
			w.Close()
		}
		return
	}
	c.recv = append(c.recv, rt)
	e.wg.Add(1) // under e.mu, before Close can begin waiting
	e.mu.Unlock()
	defer e.wg.Done()
	if w != nil {
		defer w.Close()
	}
	for {
		pkt, _, err := t.ReadRTP()
		if err != nil {
			return
		}
		if rt.packets.Add(1) == 1 {
			e.mu.Lock()
			first := c.info.MediaAt == nil
			if first {
				now := e.cfg.Now()
				c.info.MediaAt = &now
			}
			e.mu.Unlock()
			if first {
				e.emit(c)
			}
		}
		if w != nil {
			if err := w.WriteRTP(pkt); err != nil {
				e.log.Debug("calls: recording", "call", c.info.ID, "err", err)
			}
		}
	}
}

// Handle takes a signal from device of peer (the node has authenticated
// both: it came in the end-to-end session).
func (e *Engine) Handle(ctx context.Context, peer, device string, s *Signal) error {
	if err := s.check(); err != nil {
		return err
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	c := e.calls[s.Call]
	if c == nil {
		e.mu.Unlock()
		if s.Type == SignalOffer {
			return e.incoming(peer, device, s)
		}
		return nil // a call this device does not know (or no longer)
	}
	if c.info.Peer != peer {
		e.mu.Unlock()
		return fmt.Errorf("%w: a signal for a call with someone else", ErrNoCall)
	}
	bound := c.info.Device
	state := c.info.State
	direction := c.info.Direction
	e.mu.Unlock()
	if s.Device != "" && s.Device != e.cfg.Device {
		// Bound to another device of this account.
		if s.Type == SignalTaken && state.live() {
			e.end(c, StateEnded, "answered on another device", false)
		}
		return nil
	}
	if bound != "" && device != bound {
		// Another device of the peer: for a caller, a second answer
		// after the first took the call. Tell it the call is taken.
		if s.Type == SignalAnswer && direction == Outgoing {
			c.send(Signal{Type: SignalTaken, Device: bound})
		}
		return nil
	}
	if done, err := e.handleClient(c, device, s); done {
		return err
	}
	switch s.Type {
	case SignalRinging:
		e.mu.Lock()
		if c.info.State == StateCalling {
			c.info.State = StateRinging
		}
		e.mu.Unlock()
		e.emit(c)
	case SignalAnswer:
		return e.answered(c, device, s)
	case SignalOffer:
		return e.reoffer(c, s)
	case SignalRenegotiate:
		e.askedToOffer(c)
	case SignalGrant:
		e.grantedOffer(c)
	case SignalCandidate:
		e.mu.Lock()
		if !c.remoteSet || c.pc == nil {
			if len(c.cands) < 64 {
				c.cands = append(c.cands, *s.Candidate)
			}
			e.mu.Unlock()
			return nil
		}
		e.mu.Unlock()
		if err := c.pc.AddICECandidate(*s.Candidate); err != nil {
			e.log.Debug("calls: candidate refused", "call", c.info.ID, "err", err)
		}
	case SignalDecline:
		if direction == Outgoing && (state == StateCalling || state == StateRinging) {
			e.end(c, StateDeclined, "", false)
			c.sendFinal(Signal{Type: SignalHangup, Reason: "declined"}) // other devices stop ringing
		}
	case SignalBusy:
		if direction == Outgoing && (state == StateCalling || state == StateRinging) {
			e.end(c, StateBusy, "", false)
		}
	case SignalHangup:
		switch {
		case state == StateRinging && direction == Incoming && s.Reason == "declined":
			e.end(c, StateDeclined, "declined on another device", false)
		case state == StateRinging && direction == Incoming:
			e.end(c, StateMissed, s.Reason, false)
		case state.live() && strings.HasPrefix(s.Reason, "connection "):
			// The peer's connection failed or closed under the call: so
			// did this one, whichever side noticed first.
			e.end(c, StateFailed, s.Reason, false)
		case state.live():
			e.end(c, StateEnded, "hung up by the peer", false)
		}
	case SignalTaken: // for this device: nothing to do
	}
	return nil
}

// incoming takes an opening offer.
func (e *Engine) incoming(peer, device string, s *Signal) error {
	now := e.cfg.Now()
	at := time.UnixMilli(s.At)
	if at.After(now.Add(2 * time.Minute)) {
		return fmt.Errorf("%w: an offer from the future", ErrMalformed)
	}
	if at.After(now) {
		// A clock ahead of ours: the call starts now here (review
		// finding: offers dated ahead rang longer, and sorted first,
		// pushing real calls out of the history).
		at = now
	}
	if _, err := fingerprints(s.SDP); err != nil {
		return err
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	if e.calls[s.Call] != nil {
		e.mu.Unlock()
		return nil
	}
	if !e.offerAllowed(peer, now) {
		e.mu.Unlock()
		return fmt.Errorf("%w: more than %d calls a minute from %s", ErrBusy, e.cfg.CallsPerMinute, peer)
	}
	c := e.newCall(s.Call, peer, Incoming, Media{})
	c.info.Device, c.info.Video, c.offer, c.polite = device, s.Video, s.SDP, true
	c.info.StartedAt = at
	e.calls[c.info.ID] = c
	var final State
	switch {
	case now.Sub(at) > e.cfg.RingTimeout:
		final = StateMissed // it came too late to ring
	case e.busy(c.info.ID):
		final = StateBusy
	default:
		c.info.State = StateRinging
		c.timer = time.AfterFunc(e.cfg.RingTimeout-now.Sub(at), func() { e.ringTimeout(c) })
	}
	e.mu.Unlock()
	if final != "" {
		if final == StateBusy {
			c.sendFinal(Signal{Type: SignalBusy})
		}
		e.end(c, final, "", false)
		return nil
	}
	c.send(Signal{Type: SignalRinging})
	e.emit(c)
	e.spawn(func() { e.prepare(c) })
	return nil
}

// prepare makes a ringing call's connection and sets the caller's offer,
// so that answering only adds the tracks and answers (peergram-bench
// C2: making the connection was most of the answer's time). Nothing
// goes on the network: ICE starts with the answer.
func (e *Engine) prepare(c *call) {
	c.neg.Lock()
	defer c.neg.Unlock()
	e.mu.Lock()
	ok := c.info.State == StateRinging && c.pc == nil && !c.answering
	e.mu.Unlock()
	if !ok {
		return
	}
	if err := e.setup(c, nil, false); err != nil {
		e.log.Debug("calls: preparing", "call", c.info.ID, "err", err)
		return
	}
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: c.offer}); err != nil {
		e.log.Debug("calls: preparing", "call", c.info.ID, "err", err)
		return // Answer fails the call the same way
	}
	e.mu.Lock()
	c.prepared = true
	live := c.info.State == StateRinging
	e.mu.Unlock()
	if !live {
		c.pc.Close() // ended meanwhile, maybe before the connection existed
	}
}

// offerLimit is the default of Config.CallsPerMinute: how many calls a
// peer may start in a minute; beyond it
// offers are dropped, not rung nor kept (review finding: a contact's
// flood of offers, each a busy call in the history, pushed real calls
// out of it).
const offerLimit = 6

// offerAllowed counts an opening offer from peer. e.mu held.
func (e *Engine) offerAllowed(peer string, now time.Time) bool {
	recent := e.offers[peer][:0]
	for _, t := range e.offers[peer] {
		if now.Sub(t) < time.Minute {
			recent = append(recent, t)
		}
	}
	if len(recent) >= e.cfg.CallsPerMinute {
		e.offers[peer] = recent
		return false
	}
	if len(e.offers) > 10000 { // forget the oldest-looking half
		for p := range e.offers {
			delete(e.offers, p)
			if len(e.offers) <= 5000 {
				break
			}
		}
	}
	e.offers[peer] = append(recent, now)
	return true
}

// Answer takes a ringing incoming call, sending m.
func (e *Engine) Answer(ctx context.Context, id string, m Media) (Call, error) {
	if m.SDP != "" {
		return e.answerClient(id, m)
	}
	srcs, err := sources(m)
	if err != nil {
		return Call{}, err
	}
	c, err := e.takeRinging(id)
	if err != nil {
		return Call{}, err
	}
	e.mu.Lock()
	c.media = m
	e.mu.Unlock()
	fail := func(err error) (Call, error) {
		e.end(c, StateFailed, err.Error(), true)
		return c.snapshot(), err
	}
	c.neg.Lock() // after prepare, if it runs
	defer c.neg.Unlock()
	e.mu.Lock()
	prepared := c.prepared
	e.mu.Unlock()
	if !prepared {
		if c.pc != nil {
			c.pc.Close() // a preparation that failed half way
		}
		if err := e.setup(c, nil, false); err != nil {
			return fail(err)
		}
		if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: c.offer}); err != nil {
			return fail(err)
		}
	}
	if err := e.addSources(c, srcs); err != nil {
		return fail(err)
	}
	e.flushCandidates(c)
	answer, err := c.pc.CreateAnswer(nil)
	if err != nil {
		return fail(err)
	}
	code, err := verification(c.info.ID, c.offer, answer.SDP)
	if err != nil {
		return fail(err)
	}
	if err := e.setLocalGathered(c, answer, func(sdp string) { c.send(Signal{Type: SignalAnswer, SDP: sdp}) }); err != nil {
		return fail(err)
	}
	now := e.cfg.Now()
	e.mu.Lock()
	if c.info.State != StateRinging {
		// Ended while it was being answered (the caller hung up, the
		// ring timed out, the engine closed; fetching TURN credentials
		// can take seconds): it stays ended, and its connection goes
		// (review finding: it came back "accepted", and a second end
		// closed its signal queue twice).
		st := c.info.State
		e.mu.Unlock()
		c.pc.Close()
		return c.snapshot(), fmt.Errorf("%w: %s while answering", ErrState, st)
	}
	c.offerSDP, c.answerSDP = c.offer, answer.SDP
	c.info.State, c.info.AcceptedAt, c.info.Verification = StateAccepted, &now, code
	e.mu.Unlock()
	e.emit(c)
	return c.snapshot(), nil
}

// takeRinging marks a ringing incoming call as being answered (once) and
// stops its ring timer.
func (e *Engine) takeRinging(id string) (*call, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.calls[id]
	if c == nil {
		return nil, ErrNoCall
	}
	if c.info.Direction != Incoming || c.info.State != StateRinging || c.answering {
		return nil, fmt.Errorf("%w: %s", ErrState, c.info.State)
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	c.answering = true
	return c, nil
}

// addSources adds an answerer's tracks after the offer is set: each
// goes on the offer's transceiver of its kind.
func (e *Engine) addSources(c *call, srcs []source) error {
	for _, s := range srcs {
		name, mime := "audio", webrtc.MimeTypeOpus
		if s.kind == webrtc.RTPCodecTypeVideo {
			name, mime = "video", webrtc.MimeTypeVP8
		}
		track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: mime}, name, "peergram")
		if err != nil {
			return err
		}
		sender, err := c.pc.AddTrack(track)
		if err != nil {
			return err
		}
		e.drainRTCP(sender)
		e.mu.Lock()
		c.sent = append(c.sent, &sentTrack{name: name, kind: s.kind.String(), src: s, track: track, sender: sender, ssrc: ssrcOf(sender)})
		e.mu.Unlock()
	}
	return nil
}

// gatherWait bounds how long an opening offer or answer waits for this
// side's ICE candidates, to carry them in its SDP (host candidates take
// a millisecond; server-reflexive ones a round trip to STUN); those
// found later trickle as candidate signals.
const gatherWait = 30 * time.Millisecond

// setLocalGathered sets desc as the local description and calls send
// with its SDP holding the candidates gathered within gatherWait: one
// signal instead of one per candidate through both daemons' outboxes
// (peergram-bench C2). Candidates the SDP does not carry are sent as
// signals after it.
func (e *Engine) setLocalGathered(c *call, desc webrtc.SessionDescription, send func(sdp string)) error {
	e.mu.Lock()
	c.holdCands = true
	e.mu.Unlock()
	release := func(sdp string) {
		e.mu.Lock()
		held := c.held
		c.held, c.holdCands = nil, false
		e.mu.Unlock()
		for _, h := range held {
			if sdp == "" || !strings.Contains(sdp, h.Candidate) {
				cand := h
				c.send(Signal{Type: SignalCandidate, Candidate: &cand})
			}
		}
	}
	done := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(desc); err != nil {
		release("")
		return err
	}
	t := time.NewTimer(gatherWait)
	select {
	case <-done:
	case <-t.C:
	}
	t.Stop()
	sdp := desc.SDP
	if ld := c.pc.LocalDescription(); ld != nil {
		sdp = ld.SDP
	}
	send(sdp)
	release(sdp)
	return nil
}

func (e *Engine) flushCandidates(c *call) {
	e.mu.Lock()
	c.remoteSet = true
	cands := c.cands
	c.cands = nil
	e.mu.Unlock()
	for _, cand := range cands {
		if err := c.pc.AddICECandidate(cand); err != nil {
			e.log.Debug("calls: candidate refused", "call", c.info.ID, "err", err)
		}
	}
}

// answered takes an answer: the first to an outgoing call takes it; a
// later one completes a renegotiation.
func (e *Engine) answered(c *call, device string, s *Signal) error {
	c.neg.Lock()
	defer c.neg.Unlock()
	if c.pc == nil || c.pc.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		return nil
	}
	e.mu.Lock()
	first := c.info.Direction == Outgoing && c.info.Device == "" && c.info.State.live()
	if first {
		c.info.Device = device
	}
	e.mu.Unlock()
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: s.SDP}); err != nil {
		if !first && c.pc.ConnectionState() == webrtc.PeerConnectionStateClosed {
			// A renegotiation's answer that came after the connection
			// closed (the peer hung up meanwhile): its hangup, or the
			// closed connection's grace, ends the call — not this.
			return nil
		}
		e.end(c, StateFailed, err.Error(), true)
		return err
	}
	if first {
		code, err := verification(c.info.ID, c.offerSDP, s.SDP)
		if err != nil {
			e.end(c, StateFailed, err.Error(), true)
			return err
		}
		now := e.cfg.Now()
		e.mu.Lock()
		if c.timer != nil {
			c.timer.Stop()
		}
		c.answerSDP = s.SDP
		c.info.State, c.info.AcceptedAt, c.info.Verification = StateAccepted, &now, code
		e.mu.Unlock()
		c.send(Signal{Type: SignalTaken, Device: device})
		e.flushCandidates(c)
		e.emit(c)
		return nil
	}
	// A renegotiation done: a share waiting for it starts.
	e.mu.Lock()
	var start *sentTrack
	if c.share != nil && c.shareNew {
		c.shareNew = false
		if c.started { // else it starts with the others on connecting
			start = c.share
		}
	}
	e.mu.Unlock()
	if start != nil {
		e.playTrack(c, start)
	}
	go e.negotiated(c) // c.neg is held
	return nil
}

// Renegotiation (a track added or removed in a running call) without
// glare: Pion cannot roll a local offer back, so the two sides never
// offer at once. The caller offers when its connection is stable and it
// has granted nothing; the callee asks first (SignalRenegotiate), the
// caller grants (SignalGrant) when stable and makes no offer of its own
// until the callee's is answered.

// reoffer answers the peer's offer in a running call.
func (e *Engine) reoffer(c *call, s *Signal) error {
	c.neg.Lock()
	defer c.neg.Unlock()
	e.mu.Lock()
	ok := c.info.State == StateAccepted && c.pc != nil
	e.mu.Unlock()
	if !ok {
		return nil
	}
	if c.pc.SignalingState() != webrtc.SignalingStateStable || (!c.polite && !c.granted) {
		// An offer out of turn: the protocol above never sends one.
		return fmt.Errorf("%w: an offer out of turn", ErrState)
	}
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: s.SDP}); err != nil {
		e.log.Warn("calls: renegotiation refused", "call", c.info.ID, "err", err)
		return err
	}
	answer, err := c.pc.CreateAnswer(nil)
	if err != nil {
		return err
	}
	c.send(Signal{Type: SignalAnswer, SDP: answer.SDP})
	if err := c.pc.SetLocalDescription(answer); err != nil {
		return err
	}
	c.granted = false
	go e.negotiated(c)
	return nil
}

// negotiated runs once a negotiation is over: a grant asked for during
// it goes out, else an offer of this side's waiting for it.
func (e *Engine) negotiated(c *call) {
	c.neg.Lock()
	defer c.neg.Unlock()
	if c.pc == nil || c.pc.SignalingState() != webrtc.SignalingStateStable {
		return
	}
	switch {
	case !c.polite && c.asked && !c.granted:
		c.asked, c.granted = false, true
		c.send(Signal{Type: SignalGrant})
	case c.reneg:
		c.reneg = false
		if err := e.offerLocked(c); err != nil {
			e.log.Warn("calls: renegotiation", "call", c.info.ID, "err", err)
		}
	}
}

// renegotiate makes this side's tracks the call's: an offer now (the
// caller, when it may), or a request for one (the callee).
func (e *Engine) renegotiate(c *call) error {
	c.neg.Lock()
	defer c.neg.Unlock()
	return e.offerLocked(c)
}

// offerLocked offers, asks to, or notes that an offer is due. c.neg held.
func (e *Engine) offerLocked(c *call) error {
	e.mu.Lock()
	running := c.info.State == StateAccepted && c.pc != nil && !c.client
	e.mu.Unlock()
	if !running {
		// A peer's grant for a call that rings, ended, runs in a client
		// or has no connection yet (review finding: a grant for a missed
		// call crashed the daemon on the nil connection).
		return nil
	}
	if c.pc.SignalingState() != webrtc.SignalingStateStable || (!c.polite && c.granted) {
		c.reneg = true // after the negotiation under way
		return nil
	}
	if c.polite && !c.mayOffer {
		c.reneg = true
		if !c.asking {
			c.asking = true
			c.send(Signal{Type: SignalRenegotiate})
		}
		return nil
	}
	c.mayOffer = false
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	c.send(Signal{Type: SignalOffer, SDP: offer.SDP})
	return c.pc.SetLocalDescription(offer)
}

// askedToOffer: the callee asks to renegotiate (at the caller).
func (e *Engine) askedToOffer(c *call) {
	if c.polite {
		return
	}
	c.neg.Lock()
	c.asked = true
	c.neg.Unlock()
	e.negotiated(c)
}

// granted: the caller lets the callee offer (at the callee).
func (e *Engine) grantedOffer(c *call) {
	if !c.polite {
		return
	}
	c.neg.Lock()
	defer c.neg.Unlock()
	c.asking, c.mayOffer = false, true
	if err := e.offerLocked(c); err != nil {
		e.log.Warn("calls: renegotiation", "call", c.info.ID, "err", err)
	}
}

// Share adds a screen-sharing video track (IVF/VP8 file) to a running
// call; Unshare removes it. Each renegotiates the call.
func (e *Engine) Share(ctx context.Context, id, file string) error {
	src, err := openSource(file)
	if err != nil {
		return err
	}
	if src.kind != webrtc.RTPCodecTypeVideo {
		return fmt.Errorf("%w: a screen is IVF/VP8 video", ErrMedia)
	}
	c, err := e.running(id)
	if err != nil {
		return err
	}
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "screen", "peergram-screen")
	if err != nil {
		return err
	}
	c.neg.Lock()
	e.mu.Lock()
	if c.share != nil {
		e.mu.Unlock()
		c.neg.Unlock()
		return fmt.Errorf("%w: already sharing", ErrState)
	}
	e.mu.Unlock()
	sender, err := c.pc.AddTrack(track)
	if err != nil {
		c.neg.Unlock()
		return err
	}
	e.drainRTCP(sender)
	st := &sentTrack{name: "screen", kind: "video", src: src, track: track, sender: sender, ssrc: ssrcOf(sender)}
	e.mu.Lock()
	c.share, c.shareNew, c.info.Sharing = st, true, true
	c.sent = append(c.sent, st)
	e.mu.Unlock()
	c.neg.Unlock()
	e.emit(c)
	return e.renegotiate(c)
}

// Unshare stops sharing the screen.
func (e *Engine) Unshare(ctx context.Context, id string) error {
	c, err := e.running(id)
	if err != nil {
		return err
	}
	c.neg.Lock()
	e.mu.Lock()
	st := c.share
	if st == nil {
		e.mu.Unlock()
		c.neg.Unlock()
		return fmt.Errorf("%w: not sharing", ErrState)
	}
	c.share, c.shareNew, c.info.Sharing = nil, false, false
	st.final = packetsSent(c.stats, st.ssrc)
	stop := st.stop
	e.mu.Unlock()
	if stop != nil {
		stop()
	}
	err = c.pc.RemoveTrack(st.sender)
	c.neg.Unlock()
	if err != nil {
		return err
	}
	e.emit(c)
	return e.renegotiate(c)
}

func (e *Engine) running(id string) (*call, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.calls[id]
	if c == nil {
		return nil, ErrNoCall
	}
	if c.info.State != StateAccepted || c.pc == nil {
		return nil, fmt.Errorf("%w: %s", ErrState, c.info.State)
	}
	return c, nil
}

// Decline refuses a ringing incoming call.
func (e *Engine) Decline(ctx context.Context, id string) error {
	e.mu.Lock()
	c := e.calls[id]
	if c == nil {
		e.mu.Unlock()
		return ErrNoCall
	}
	if c.info.Direction != Incoming || c.info.State != StateRinging {
		st := c.info.State
		e.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrState, st)
	}
	e.mu.Unlock()
	c.sendFinal(Signal{Type: SignalDecline})
	e.end(c, StateDeclined, "", false)
	return nil
}

// Hangup ends a live call: a ringing outgoing one is cancelled (a missed
// call for the callee).
func (e *Engine) Hangup(ctx context.Context, id string) error {
	e.mu.Lock()
	c := e.calls[id]
	if c == nil {
		e.mu.Unlock()
		return ErrNoCall
	}
	st := c.info.State
	e.mu.Unlock()
	if !st.live() {
		return fmt.Errorf("%w: %s", ErrState, st)
	}
	if st == StateRinging && c.info.Direction == Incoming {
		return e.Decline(ctx, id)
	}
	reason := ""
	final := StateEnded
	if st != StateAccepted {
		reason = "cancelled"
	}
	c.sendFinal(Signal{Type: SignalHangup, Reason: reason})
	e.end(c, final, reason, false)
	return nil
}

// ringTimeout: nobody answered in time.
func (e *Engine) ringTimeout(c *call) {
	e.mu.Lock()
	st := c.info.State
	e.mu.Unlock()
	if st != StateCalling && st != StateRinging {
		return
	}
	if c.info.Direction == Outgoing {
		c.sendFinal(Signal{Type: SignalHangup, Reason: "missed"})
	}
	e.end(c, StateMissed, "no answer", false)
}

// sendFinal queues a signal even as the call ends.
func (c *call) sendFinal(s Signal) { c.send(s) }

// end finishes c in state (once). hangup sends the peer a hangup too.
func (e *Engine) end(c *call, state State, reason string, hangup bool) {
	e.mu.Lock()
	if !c.info.State.live() && c.info.State != "" {
		e.mu.Unlock()
		return
	}
	if hangup {
		// Queued before the queue closes.
		s := Signal{Type: SignalHangup, Reason: reason, Call: c.info.ID, At: e.cfg.Now().UnixMilli(), Device: c.info.Device}
		if len(s.Reason) > maxReason {
			s.Reason = s.Reason[:maxReason]
		}
		select {
		case c.out <- s:
		default:
		}
	}
	now := e.cfg.Now()
	c.info.State, c.info.Reason, c.info.EndedAt = state, reason, &now
	if c.timer != nil {
		c.timer.Stop()
	}
	pc, g := c.pc, c.stats
	sent := slices.Clone(c.sent)
	e.mu.Unlock()
	finals := make([]uint64, len(sent))
	for i, st := range sent {
		finals[i] = packetsSent(g, st.ssrc)
	}
	e.mu.Lock()
	for i, st := range sent {
		if st.final == 0 {
			st.final = finals[i]
		}
	}
	if !c.outDone {
		c.outDone = true
		close(c.out)
	}
	c.cancel()
	e.order = append(e.order, c.info.ID)
	for len(e.order) > e.cfg.MaxHistory {
		delete(e.calls, e.order[0])
		e.order = e.order[1:]
	}
	e.mu.Unlock()
	if pc != nil {
		if err := pc.Close(); err != nil {
			e.log.Debug("calls: closing", "call", c.info.ID, "err", err)
		}
	}
	e.emit(c)
}

// ssrcOf is a new sender's SSRC (fixed when it is made).
func ssrcOf(s *webrtc.RTPSender) uint32 {
	if p := s.GetParameters(); len(p.Encodings) > 0 {
		return uint32(p.Encodings[0].SSRC)
	}
	return 0
}

// packetsSent reads a sender's RTP packet count from the call's stats
// interceptor.
func packetsSent(g stats.Getter, ssrc uint32) uint64 {
	if g == nil || ssrc == 0 {
		return 0
	}
	if st := g.Get(ssrc); st != nil {
		return st.OutboundRTPStreamStats.PacketsSent
	}
	return 0
}

// snapshot is c as a Call, with its tracks' counts.
func (c *call) snapshot() Call {
	c.e.mu.Lock()
	info := c.info
	g := c.stats
	live := c.info.State.live()
	sent := append([]*sentTrack(nil), c.sent...)
	finals := make([]uint64, len(sent))
	for i, st := range sent {
		finals[i] = st.final
	}
	recv := append([]*recvTrack(nil), c.recv...)
	c.e.mu.Unlock()
	info.Tracks = []Track{}
	for i, st := range sent {
		n := finals[i]
		if live && n == 0 {
			n = packetsSent(g, st.ssrc)
		}
		info.Tracks = append(info.Tracks, Track{Name: st.name, Kind: st.kind, Direction: "sent", Packets: n, Frames: st.frames.Load()})
	}
	for _, rt := range recv {
		info.Tracks = append(info.Tracks, Track{Name: rt.name, Kind: rt.kind, Direction: "received", Packets: rt.packets.Load(), File: rt.file})
	}
	return info
}

func (e *Engine) emit(c *call) {
	if e.cfg.Events == nil {
		return
	}
	e.evMu.Lock()
	defer e.evMu.Unlock()
	e.cfg.Events(c.snapshot())
}

// Get returns a call.
func (e *Engine) Get(id string) (Call, error) {
	e.mu.Lock()
	c := e.calls[id]
	e.mu.Unlock()
	if c == nil {
		return Call{}, ErrNoCall
	}
	return c.snapshot(), nil
}

// List returns the calls this engine knows, newest first.
func (e *Engine) List() []Call {
	e.mu.Lock()
	cs := make([]*call, 0, len(e.calls))
	for _, c := range e.calls {
		cs = append(cs, c)
	}
	e.mu.Unlock()
	out := make([]Call, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.snapshot())
	}
	sortNewest(out)
	return out
}

func sortNewest(cs []Call) {
	slices.SortStableFunc(cs, func(a, b Call) int { return b.StartedAt.Compare(a.StartedAt) })
}

// Close hangs up every live call and waits for the engine's goroutines.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	var live []*call
	for _, c := range e.calls {
		if c.info.State.live() {
			live = append(live, c)
		}
	}
	var groups []*groupCall
	for _, g := range e.groups {
		groups = append(groups, g)
	}
	e.mu.Unlock()
	for _, c := range live {
		e.end(c, StateEnded, "closed", true)
	}
	for _, g := range groups {
		e.endGroup(g, GroupLeft, "closed", true)
	}
	e.wg.Wait()
	return nil
}

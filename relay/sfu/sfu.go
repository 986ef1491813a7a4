// Package sfu is the relay's Selective Forwarding Unit for group voice
// and video chats: each participant sends its tracks once to the relay,
// which forwards every track to every other participant of the call.
//
// Why an SFU and why it cannot listen: a call of n members meshed
// directly costs each member n-1 uploads; through the SFU it costs one.
// The SFU terminates DTLS-SRTP with each participant, so it sees RTP
// packets — but every frame inside them was sealed with SFrame (RFC 9605,
// crypto/sframe) by its sender under a key handed out over the group's
// end-to-end encryption. The SFU forwards ciphertext it has no key for.
//
// Who may join: a device that signs a join (sfuproto.JoinSigned) with
// the key its account certified, for a group this relay keeps the state
// log of (relay/history), whose account the log says is a member now.
// The SFU checks again every few seconds while the call runs and drops
// a device whose account was removed or banned.
//
// Bitrate per receiver: the SFU cannot re-encode (it cannot decode), so
// it adapts what it forwards to each receiver from that receiver's RTCP
// feedback: a receiver whose REMB estimate falls under a video track's
// bitrate, or who reports heavy loss, stops getting that video (audio
// always goes through) until its estimate recovers; then the SFU asks
// the publisher for a key frame (PLI) and resumes, rewriting sequence
// numbers so the receiver sees no gap (a receiver drops the partial
// frame it resumes in).
// Key-frame requests (PLI, FIR) from receivers go to the publisher, at
// most one per track every 500 ms.
//
// Speakers: a participant is speaking while its audio packets arrive
// (senders that stop sending in silence — Opus DTX, mute — are not);
// the roster with who speaks and who is muted goes to every participant
// when it changes.
package sfu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/peergram/peergram/calls/sfuproto"
	"github.com/peergram/peergram/crypto/identity"
)

// Members is what the SFU needs to know of groups: whether a device is a
// member's now (relay/history's Server answers it).
type Members interface {
	Member(group [32]byte, device identity.DeviceID) (identity.AccountID, error)
}

// Config configures a Server.
type Config struct {
	Host    host.Host
	Members Members
	// Settings adjusts Pion's SettingEngine (ports, interfaces, the
	// public IP to announce; tests keep ICE on loopback).
	Settings func(*webrtc.SettingEngine)
	// ICEServers are given to the SFU's own peer connections (a STUN
	// server to learn its public address).
	ICEServers []webrtc.ICEServer
	// MaxParticipants bounds one call (default 50); MaxCalls the calls
	// at once (default 500).
	MaxParticipants int
	MaxCalls        int
	// MaxSeatsPerAccount bounds the calls one account's devices are in
	// at once (default 4; review finding: one device held every call
	// slot of the relay).
	MaxSeatsPerAccount int
	// ConnectTimeout drops a participant whose connection is not up
	// this long after joining (default 15 s); AnswerTimeout one that
	// leaves an offer unanswered (default 10 s).
	ConnectTimeout time.Duration
	AnswerTimeout  time.Duration
	// Recheck is how often membership is checked again in a running
	// call (default 5 s).
	Recheck time.Duration
	// Tap, when set, sees every RTP payload the SFU forwards (tests
	// assert it holds no plaintext). It must not keep payload.
	Tap func(call, device, kind string, payload []byte)
	Log *slog.Logger
	Now func() time.Time
}

// Errors.
var (
	ErrFull = errors.New("sfu: full")
)

// Server is the SFU; Close ends every call.
type Server struct {
	cfg Config
	se  webrtc.SettingEngine
	log *slog.Logger

	forwarded atomic.Uint64 // packets written to receivers

	mu     sync.Mutex
	rooms  map[roomKey]*room
	seats  map[identity.AccountID]map[seat]bool // the calls each account's devices are in
	closed bool
	wg     sync.WaitGroup
	stop   chan struct{}
}

type roomKey struct {
	group [32]byte
	call  string
}

// seat is one device in one call.
type seat struct {
	room roomKey
	dev  identity.DeviceID
}

// reserve takes a seat for acct, unless its devices are in as many calls
// as they may be (the same device joining the same call again keeps its
// seat).
func (s *Server) reserve(acct identity.AccountID, st seat) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	held := s.seats[acct]
	if held[st] {
		return nil
	}
	if len(held) >= s.cfg.MaxSeatsPerAccount {
		return fmt.Errorf("%w: this account is in %d calls on this relay already", ErrFull, len(held))
	}
	if held == nil {
		held = map[seat]bool{}
		s.seats[acct] = held
	}
	held[st] = true
	return nil
}

func (s *Server) release(acct identity.AccountID, st seat) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if held := s.seats[acct]; held != nil {
		delete(held, st)
		if len(held) == 0 {
			delete(s.seats, acct)
		}
	}
}

// New serves sfuproto.ProtocolID on cfg.Host.
func New(cfg Config) (*Server, error) {
	if cfg.Host == nil || cfg.Members == nil {
		return nil, errors.New("sfu: a host and a member check are required")
	}
	if cfg.MaxParticipants <= 0 {
		cfg.MaxParticipants = 50
	}
	if cfg.MaxCalls <= 0 {
		cfg.MaxCalls = 500
	}
	if cfg.Recheck <= 0 {
		cfg.Recheck = 5 * time.Second
	}
	if cfg.MaxSeatsPerAccount <= 0 {
		cfg.MaxSeatsPerAccount = 4
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 15 * time.Second
	}
	if cfg.AnswerTimeout <= 0 {
		cfg.AnswerTimeout = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	se := webrtc.SettingEngine{}
	se.SetPrflxAcceptanceMinWait(0)
	if cfg.Settings != nil {
		cfg.Settings(&se)
	}
	s := &Server{cfg: cfg, se: se, log: cfg.Log, rooms: map[roomKey]*room{}, seats: map[identity.AccountID]map[seat]bool{}, stop: make(chan struct{})}
	cfg.Host.SetStreamHandler(sfuproto.ProtocolID, s.handle)
	s.wg.Add(1)
	go s.ticker()
	return s, nil
}

// Close stops serving and ends every call.
func (s *Server) Close() error {
	s.cfg.Host.RemoveStreamHandler(sfuproto.ProtocolID)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var ps []*participant
	for _, r := range s.rooms {
		r.mu.Lock()
		for _, p := range r.parts {
			ps = append(ps, p)
		}
		r.mu.Unlock()
	}
	close(s.stop)
	s.mu.Unlock()
	for _, p := range ps {
		p.leave("the relay is shutting down")
	}
	s.wg.Wait()
	return nil
}

// Forwarded is the number of RTP packets written to receivers so far.
func (s *Server) Forwarded() uint64 { return s.forwarded.Load() }

// Calls is the number of calls running.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.rooms)
}

// spawn runs f on a goroutine Close waits for, unless Close has begun.
func (s *Server) spawn(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// ticker updates speakers and checks membership.
func (s *Server) ticker() {
	defer s.wg.Done()
	speak := time.NewTicker(250 * time.Millisecond)
	defer speak.Stop()
	recheck := time.NewTicker(s.cfg.Recheck)
	defer recheck.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-speak.C:
			for _, r := range s.roomList() {
				r.updateSpeakers(s.cfg.Now())
			}
		case <-recheck.C:
			for _, r := range s.roomList() {
				r.recheck()
			}
		}
	}
}

func (s *Server) roomList() []*room {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*room, 0, len(s.rooms))
	for _, r := range s.rooms {
		out = append(out, r)
	}
	return out
}

// handle serves one participant's signalling stream.
func (s *Server) handle(str network.Stream) {
	log := s.log.With("peer", str.Conn().RemotePeer())
	_ = str.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, err := sfuproto.Read(str)
	if err != nil || m.Type != sfuproto.TypeJoin {
		refuse(str, "the first message is a join")
		log.Info("sfu: bad join", "err", err)
		return
	}
	_ = str.SetReadDeadline(time.Time{})
	group, _ := sfuproto.ParseGroup(m.Group)
	dev, acct, err := s.checkJoin(m, group, str)
	if err != nil {
		log.Info("sfu: join refused", "err", err)
		refuse(str, err.Error())
		return
	}
	key := roomKey{group, m.Call}
	if err := s.reserve(acct, seat{key, dev}); err != nil {
		log.Info("sfu: join refused", "err", err)
		refuse(str, err.Error())
		return
	}
	r, err := s.room(key)
	if err != nil {
		s.release(acct, seat{key, dev})
		refuse(str, err.Error())
		return
	}
	p, err := r.join(str, dev, acct)
	if err != nil {
		log.Info("sfu: join failed", "err", err)
		r.mu.Lock()
		held := r.parts[dev] != nil // a connection of the device is in: its seat stays
		r.mu.Unlock()
		if !held {
			s.release(acct, seat{key, dev})
		}
		refuse(str, err.Error())
		r.dropIfEmpty()
		return
	}
	log.Info("sfu: joined", "call", m.Call, "device", dev.String())
	p.run()
}

func refuse(str network.Stream, why string) {
	if len(why) > sfuproto.MaxError {
		why = why[:sfuproto.MaxError]
	}
	_ = str.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_ = sfuproto.Write(str, &sfuproto.Message{Type: sfuproto.TypeError, Error: why})
	_ = str.Close()
}

// checkJoin verifies a join's certificate, time, signature (made for
// this relay, by the peer on the stream, for this group and call) and
// the account's membership.
func (s *Server) checkJoin(m *sfuproto.Message, group [32]byte, str network.Stream) (identity.DeviceID, identity.AccountID, error) {
	cert, err := identity.ParseDeviceCert(m.Cert)
	if err != nil {
		return identity.DeviceID{}, identity.AccountID{}, fmt.Errorf("certificate: %w", err)
	}
	if err := cert.Verify(); err != nil {
		return identity.DeviceID{}, identity.AccountID{}, fmt.Errorf("certificate: %w", err)
	}
	now := s.cfg.Now()
	if t := time.UnixMilli(m.Time); t.Before(now.Add(-5*time.Minute)) || t.After(now.Add(5*time.Minute)) {
		return identity.DeviceID{}, identity.AccountID{}, errors.New("join signed more than 5 minutes from now")
	}
	signed := sfuproto.JoinSigned(str.Conn().LocalPeer().String(), str.Conn().RemotePeer().String(), group, m.Call, m.Time)
	if !identity.Verify(cert.Device.PublicKey(), sfuproto.JoinLabel, signed, m.Sig) {
		return identity.DeviceID{}, identity.AccountID{}, errors.New("bad signature")
	}
	acct, err := s.cfg.Members.Member(group, cert.Device)
	if err != nil {
		return identity.DeviceID{}, identity.AccountID{}, fmt.Errorf("not a member of the group: %w", err)
	}
	if acct != cert.Account {
		return identity.DeviceID{}, identity.AccountID{}, errors.New("the device is another account's")
	}
	return cert.Device, acct, nil
}

// room returns the call's room, making it if there is room for it.
func (s *Server) room(k roomKey) (*room, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("the relay is shutting down")
	}
	if r := s.rooms[k]; r != nil {
		return r, nil
	}
	if len(s.rooms) >= s.cfg.MaxCalls {
		return nil, fmt.Errorf("%w: too many calls on this relay", ErrFull)
	}
	r := &room{s: s, key: k, parts: map[identity.DeviceID]*participant{}}
	s.rooms[k] = r
	return r, nil
}

// api is the Pion API of one participant's connection: default codecs
// (with their RTCP feedback: NACK, PLI, FIR, REMB, transport-cc) and
// interceptors (NACK responder and generator, RTCP reports, TWCC).
func (s *Server) api() (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	reg := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, reg); err != nil {
		return nil, err
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(s.se)), nil
}

// room is one group call.
type room struct {
	s   *Server
	key roomKey

	mu    sync.Mutex
	parts map[identity.DeviceID]*participant
	gone  bool
}

// join adds a participant: its connection receives every track
// published so far, and offers to receive its audio and video.
func (r *room) join(str network.Stream, dev identity.DeviceID, acct identity.AccountID) (*participant, error) {
	api, err := r.s.api()
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{ICEServers: r.s.cfg.ICEServers})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &participant{r: r, dev: dev, acct: acct, str: str, pc: pc, ctx: ctx, cancel: cancel,
		out: make(chan *sfuproto.Message, 256), wake: make(chan struct{}, 1), downs: map[*published]*down{}}
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			_ = pc.Close()
			cancel()
			return nil, err
		}
	}
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			init := c.ToJSON()
			p.send(&sfuproto.Message{Type: sfuproto.TypeCandidate, Candidate: &init})
		}
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			p.connected.Store(true)
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			go p.leave("connection " + st.String())
		}
	})
	pc.OnTrack(func(t *webrtc.TrackRemote, rcv *webrtc.RTPReceiver) { p.published(t, rcv) })

	r.mu.Lock()
	if r.gone {
		r.mu.Unlock()
		_ = pc.Close()
		cancel()
		return nil, errors.New("the call ended")
	}
	old := r.parts[dev]
	if old == nil && len(r.parts) >= r.s.cfg.MaxParticipants {
		r.mu.Unlock()
		_ = pc.Close()
		cancel()
		return nil, fmt.Errorf("%w: the call has %d participants", ErrFull, r.s.cfg.MaxParticipants)
	}
	r.parts[dev] = p // the same device again: its new connection wins
	var pubs []*published
	for _, o := range r.parts {
		if o != p {
			pubs = append(pubs, o.pubs...)
		}
	}
	r.mu.Unlock()
	if old != nil {
		old.leave("joined again")
	}
	for _, pub := range pubs {
		if err := r.subscribe(p, pub); err != nil {
			r.s.log.Info("sfu: subscribe", "err", err)
		}
	}
	return p, nil
}

// subscribe adds pub to p's connection (a renegotiation follows).
func (r *room) subscribe(p *participant, pub *published) error {
	codec := pub.remote.Codec().RTPCodecCapability
	lt, err := webrtc.NewTrackLocalStaticRTP(codec, pub.id, pub.owner.dev.String())
	if err != nil {
		return err
	}
	sender, err := p.pc.AddTrack(lt)
	if err != nil {
		return err
	}
	d := &down{to: p, pub: pub, track: lt, sender: sender, video: pub.remote.Kind() == webrtc.RTPCodecTypeVideo}
	r.mu.Lock()
	if p.left || pub.owner.left {
		r.mu.Unlock()
		_ = p.pc.RemoveTrack(sender)
		return nil
	}
	p.downs[pub] = d
	pub.addDown(d)
	r.mu.Unlock()
	r.s.spawn(func() { d.readRTCP() })
	return nil
}

// roster is the call's participants, sorted by device.
func (r *room) roster() []sfuproto.Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]sfuproto.Participant, 0, len(r.parts))
	for _, p := range r.parts {
		e := sfuproto.Participant{Device: p.dev.String(), Account: p.acct.String(), Muted: p.muted.Load(), Speaking: p.speaking}
		for _, pub := range p.pubs {
			e.Tracks = append(e.Tracks, pub.id)
		}
		out = append(out, e)
	}
	sortRoster(out)
	return out
}

// broadcast marks the roster due at everyone: each participant's writer
// sends the roster as it is when it gets to it, once however many
// changes came meanwhile (review finding: a flood of mute toggles queued
// a roster per toggle and pushed offers out of the queue).
func (r *room) broadcast() {
	r.mu.Lock()
	ps := make([]*participant, 0, len(r.parts))
	for _, p := range r.parts {
		ps = append(ps, p)
	}
	r.mu.Unlock()
	for _, p := range ps {
		p.rosterDue.Store(true)
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// updateSpeakers marks who spoke in the last 400 ms; a change goes out.
func (r *room) updateSpeakers(now time.Time) {
	changed := false
	r.mu.Lock()
	for _, p := range r.parts {
		sp := !p.muted.Load() && now.UnixNano()-p.lastAudio.Load() < int64(400*time.Millisecond)
		if sp != p.speaking {
			p.speaking, changed = sp, true
		}
	}
	r.mu.Unlock()
	if changed {
		r.broadcast()
	}
}

// recheck drops participants whose accounts are no longer members.
func (r *room) recheck() {
	r.mu.Lock()
	ps := make([]*participant, 0, len(r.parts))
	for _, p := range r.parts {
		ps = append(ps, p)
	}
	r.mu.Unlock()
	for _, p := range ps {
		if acct, err := r.s.cfg.Members.Member(r.key.group, p.dev); err != nil || acct != p.acct {
			r.s.log.Info("sfu: a participant is no longer a member", "device", p.dev.String())
			p.send(&sfuproto.Message{Type: sfuproto.TypeError, Error: "no longer a member of the group"})
			p.leave("removed from the group")
		}
	}
}

// dropIfEmpty forgets the room once nobody is in it.
func (r *room) dropIfEmpty() {
	r.mu.Lock()
	empty := len(r.parts) == 0
	if empty {
		r.gone = true
	}
	r.mu.Unlock()
	if !empty {
		return
	}
	r.s.mu.Lock()
	if r.s.rooms[r.key] == r {
		delete(r.s.rooms, r.key)
	}
	r.s.mu.Unlock()
}

// participant is one device in a call.
type participant struct {
	r    *room
	dev  identity.DeviceID
	acct identity.AccountID
	str  network.Stream
	pc   *webrtc.PeerConnection

	ctx    context.Context
	cancel context.CancelFunc
	out    chan *sfuproto.Message // offers, candidates, errors: never dropped
	wake   chan struct{}          // the roster is due (rosterDue)

	rosterDue atomic.Bool
	connected atomic.Bool
	muted     atomic.Bool
	lastAudio atomic.Int64 // unix ns of its last audio packet

	// Guarded by r.mu.
	speaking bool
	pubs     []*published
	downs    map[*published]*down
	left     bool

	neg         sync.Mutex // guards the negotiation fields
	negotiating bool       // an offer is out, its answer not in
	offers      int        // offers sent (the answer timer's generation)
	again       bool       // another offer is due after it
	remoteSet   bool
	cands       []webrtc.ICECandidateInit
	candCount   int // remote candidates taken in all (maxCandidates)
}

// maxCandidates bounds the remote candidates one participant gives, for
// the whole call (review finding: unbounded, they made the relay send
// connectivity checks to any address a member named).
const maxCandidates = 64

// run serves the participant until it leaves.
func (p *participant) run() {
	if !p.r.s.spawn(p.writer) {
		p.leave("the relay is shutting down")
		return
	}
	p.negotiate()
	p.r.broadcast()
	timeout := time.AfterFunc(p.r.s.cfg.ConnectTimeout, func() {
		if !p.connected.Load() {
			p.send(&sfuproto.Message{Type: sfuproto.TypeError, Error: "no media connection"})
			p.leave("no media connection")
		}
	})
	defer timeout.Stop()
	for {
		m, err := sfuproto.Read(p.str)
		if err != nil {
			p.leave("signalling closed")
			return
		}
		switch m.Type {
		case sfuproto.TypeAnswer:
			p.answered(m.SDP)
		case sfuproto.TypeCandidate:
			p.candidate(*m.Candidate)
		case sfuproto.TypeMute:
			if p.muted.Swap(m.Muted) != m.Muted {
				p.r.broadcast()
			}
		case sfuproto.TypeLeave:
			p.leave("left")
			return
		}
	}
}

// writer sends the participant's messages in order.
func (p *participant) writer() {
	for {
		select {
		case <-p.ctx.Done():
			// What was queued before leaving (an error) still goes.
			for {
				select {
				case m := <-p.out:
					_ = p.str.SetWriteDeadline(time.Now().Add(time.Second))
					_ = sfuproto.Write(p.str, m)
				default:
					_ = p.str.Close()
					return
				}
			}
		case m := <-p.out:
			p.write(m)
		case <-p.wake:
			if p.rosterDue.Swap(false) {
				p.write(&sfuproto.Message{Type: sfuproto.TypeRoster, Roster: p.r.roster()})
			}
		}
	}
}

func (p *participant) write(m *sfuproto.Message) {
	_ = p.str.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := sfuproto.Write(p.str, m); err != nil {
		go p.leave("signalling write failed")
	}
}

// send queues a message; a participant whose queue is full does not
// read its signalling, and is dropped rather than lose an offer.
func (p *participant) send(m *sfuproto.Message) {
	select {
	case p.out <- m:
	default:
		p.r.s.log.Info("sfu: a participant does not read its signalling", "device", p.dev.String())
		go p.leave("signalling backlog")
	}
}

// negotiate sends an offer, or marks one due after the one out.
func (p *participant) negotiate() {
	p.neg.Lock()
	defer p.neg.Unlock()
	if p.negotiating {
		p.again = true
		return
	}
	offer, err := p.pc.CreateOffer(nil)
	if err == nil {
		err = p.pc.SetLocalDescription(offer)
	}
	if err != nil {
		p.r.s.log.Info("sfu: offer", "device", p.dev.String(), "err", err)
		return
	}
	p.negotiating = true
	p.offers++
	gen := p.offers
	p.send(&sfuproto.Message{Type: sfuproto.TypeOffer, SDP: offer.SDP})
	time.AfterFunc(p.r.s.cfg.AnswerTimeout, func() {
		p.neg.Lock()
		late := p.negotiating && p.offers == gen
		p.neg.Unlock()
		if late {
			p.send(&sfuproto.Message{Type: sfuproto.TypeError, Error: "no answer to the offer"})
			p.leave("no answer")
		}
	})
}

func (p *participant) answered(sdp string) {
	p.neg.Lock()
	if !p.negotiating {
		p.neg.Unlock()
		return
	}
	err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp})
	if err != nil {
		p.neg.Unlock()
		p.r.s.log.Info("sfu: answer refused", "device", p.dev.String(), "err", err)
		p.send(&sfuproto.Message{Type: sfuproto.TypeError, Error: "answer refused"})
		p.leave("bad answer")
		return
	}
	p.negotiating, p.remoteSet = false, true
	for _, c := range p.cands {
		_ = p.pc.AddICECandidate(c)
	}
	p.cands = nil
	again := p.again
	p.again = false
	p.neg.Unlock()
	if again {
		p.negotiate()
	}
}

func (p *participant) candidate(c webrtc.ICECandidateInit) {
	p.neg.Lock()
	defer p.neg.Unlock()
	if p.candCount >= maxCandidates {
		return
	}
	p.candCount++
	if !p.remoteSet {
		p.cands = append(p.cands, c)
		return
	}
	_ = p.pc.AddICECandidate(c)
}

// leave takes the participant out of the call (once).
func (p *participant) leave(why string) {
	r := p.r
	r.mu.Lock()
	if p.left {
		r.mu.Unlock()
		return
	}
	p.left = true
	seated := r.parts[p.dev] == p
	if seated {
		delete(r.parts, p.dev)
	}
	pubs := p.pubs
	var affected []*participant
	for _, pub := range pubs {
		for _, d := range pub.downList() {
			delete(d.to.downs, pub)
			affected = append(affected, d.to)
		}
	}
	for pub, d := range p.downs {
		pub.removeDown(d)
	}
	r.mu.Unlock()
	if seated {
		r.s.release(p.acct, seat{r.key, p.dev}) // after r.mu: Close takes s.mu, then r.mu
	}
	r.s.log.Info("sfu: left", "call", r.key.call, "device", p.dev.String(), "why", why)
	p.cancel()
	_ = p.pc.Close()
	for _, pub := range pubs {
		for _, d := range pub.downList() {
			_ = d.to.pc.RemoveTrack(d.sender)
		}
	}
	for _, o := range affected {
		o.negotiate()
	}
	r.broadcast()
	r.dropIfEmpty()
}

// published is a track a participant sends.
type published struct {
	owner  *participant
	remote *webrtc.TrackRemote
	id     string // "audio" or "video"

	downs atomic.Pointer[[]*down] // copy on write, under r.mu

	lastPLI atomic.Int64
	// Bitrate, bits/s, measured over half-second windows.
	rate     atomic.Uint64
	winStart time.Time
	winBytes int
}

func (pub *published) downList() []*down {
	if l := pub.downs.Load(); l != nil {
		return *l
	}
	return nil
}

// addDown and removeDown change the forwarding list (r.mu held).
func (pub *published) addDown(d *down) {
	l := append(append([]*down(nil), pub.downList()...), d)
	pub.downs.Store(&l)
}

func (pub *published) removeDown(d *down) {
	var l []*down
	for _, o := range pub.downList() {
		if o != d {
			l = append(l, o)
		}
	}
	pub.downs.Store(&l)
}

// published takes a track the participant sends: every other
// participant subscribes to it, and its packets are forwarded.
func (p *participant) published(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	r := p.r
	id := "audio"
	if t.Kind() == webrtc.RTPCodecTypeVideo {
		id = "video"
	}
	pub := &published{owner: p, remote: t, id: id, winStart: time.Now()}
	r.mu.Lock()
	if p.left {
		r.mu.Unlock()
		return
	}
	for _, o := range p.pubs {
		if o.id == id {
			r.mu.Unlock()
			return // one track of each kind per participant
		}
	}
	p.pubs = append(p.pubs, pub)
	var others []*participant
	for _, o := range r.parts {
		if o != p {
			others = append(others, o)
		}
	}
	r.mu.Unlock()
	for _, o := range others {
		if err := r.subscribe(o, pub); err != nil {
			r.s.log.Info("sfu: subscribe", "err", err)
			continue
		}
		o.negotiate()
	}
	r.broadcast()
	r.s.spawn(func() { pub.forward() })
}

// forward reads the track and writes each packet to every receiver.
func (pub *published) forward() {
	s := pub.owner.r.s
	audio := pub.id == "audio"
	buf := make([]byte, 1500)
	for {
		n, _, err := pub.remote.Read(buf)
		if err != nil {
			return
		}
		var pkt rtp.Packet
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		now := time.Now()
		if audio {
			if pub.owner.muted.Load() {
				continue
			}
			pub.owner.lastAudio.Store(now.UnixNano())
		}
		pub.winBytes += len(pkt.Payload) + 12
		if el := now.Sub(pub.winStart); el >= 500*time.Millisecond {
			pub.rate.Store(uint64(float64(pub.winBytes*8) / el.Seconds()))
			pub.winStart, pub.winBytes = now, 0
		}
		if s.cfg.Tap != nil {
			s.cfg.Tap(pub.owner.r.key.call, pub.owner.dev.String(), pub.id, pkt.Payload)
		}
		// Extensions are per hop (transport-cc, abs-send-time): the
		// SFU's own interceptors add the receivers'.
		pkt.Header.Extension, pkt.Header.Extensions = false, nil
		for _, d := range pub.downList() {
			if d.forward(&pkt) {
				s.forwarded.Add(1)
			}
		}
	}
}

// requestKeyFrame asks the publisher for a key frame (PLI), at most
// every 500 ms.
func (pub *published) requestKeyFrame() {
	now := time.Now().UnixNano()
	last := pub.lastPLI.Load()
	if now-last < int64(500*time.Millisecond) || !pub.lastPLI.CompareAndSwap(last, now) {
		return
	}
	_ = pub.owner.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(pub.remote.SSRC())}})
}

// down is one published track forwarded to one receiver.
type down struct {
	to     *participant
	pub    *published
	track  *webrtc.TrackLocalStaticRTP
	sender *webrtc.RTPSender
	video  bool

	remb atomic.Uint64 // receiver's estimate, bits/s (0: none)
	loss atomic.Uint32 // receiver's last fraction lost, /256

	mu      sync.Mutex
	paused  bool   // video withheld for want of bandwidth
	dropped uint16 // packets withheld so far (sequence numbers shift by it)
}

// forward writes pkt to the receiver unless its video is withheld;
// sequence numbers are shifted past what was withheld.
func (d *down) forward(pkt *rtp.Packet) bool {
	h := pkt.Header
	if d.video {
		d.mu.Lock()
		if d.paused {
			d.dropped++
			d.mu.Unlock()
			return false
		}
		h.SequenceNumber -= d.dropped
		d.mu.Unlock()
	}
	return d.track.WriteRTP(&rtp.Packet{Header: h, Payload: pkt.Payload}) == nil
}

// readRTCP takes the receiver's feedback on this track.
func (d *down) readRTCP() {
	for {
		pkts, _, err := d.sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, pk := range pkts {
			switch x := pk.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				d.pub.requestKeyFrame()
			case *rtcp.ReceiverEstimatedMaximumBitrate:
				d.remb.Store(uint64(x.Bitrate))
				d.adjust()
			case *rtcp.ReceiverReport:
				for _, rep := range x.Reports {
					d.loss.Store(uint32(rep.FractionLost))
				}
				d.adjust()
			}
		}
	}
}

// Thresholds of per-receiver control: withhold video when the estimate
// is under the track's bitrate or loss over 20 %; give it back when the
// estimate is 25 % over and loss under 5 %.
const (
	lossPause  = 51 // /256
	lossResume = 13
)

// adjust withholds or resumes video for this receiver.
func (d *down) adjust() {
	if !d.video {
		return
	}
	rate := float64(d.pub.rate.Load())
	remb := float64(d.remb.Load())
	loss := d.loss.Load()
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case !d.paused && ((remb > 0 && rate > 0 && remb < rate) || loss > lossPause):
		d.paused = true
		d.pub.owner.r.s.log.Info("sfu: video withheld from a receiver", "to", d.to.dev.String(), "estimate", remb, "rate", rate, "loss", loss)
	case d.paused && (remb == 0 || rate == 0 || remb >= rate*1.25) && loss < lossResume:
		d.paused = false
		go d.pub.requestKeyFrame()
	}
}

// Paused reports, for tests, whether the video of publisher device is
// withheld from receiver device in call.
func (s *Server) Paused(call string, publisher, receiver identity.DeviceID) bool {
	for _, r := range s.roomList() {
		if r.key.call != call {
			continue
		}
		r.mu.Lock()
		rp, pp := r.parts[receiver], r.parts[publisher]
		var d *down
		if rp != nil && pp != nil {
			for _, pub := range pp.pubs {
				if pub.id == "video" {
					d = rp.downs[pub]
				}
			}
		}
		r.mu.Unlock()
		if d != nil {
			d.mu.Lock()
			defer d.mu.Unlock()
			return d.paused
		}
	}
	return false
}

func sortRoster(ps []sfuproto.Participant) {
	slices.SortFunc(ps, func(a, b sfuproto.Participant) int { return strings.Compare(a.Device, b.Device) })
}

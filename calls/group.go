package calls

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor/pkg/stats"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"

	"github.com/peergram/peergram/calls/sfuproto"
	"github.com/peergram/peergram/crypto/sframe"
)

// Group calls: every participant connects to one relay's SFU
// (relay/sfu) and speaks sfuproto with it over a GroupConn the node
// opens. Each frame sent is sealed with SFrame before it is packetised,
// under a key this device draws at random for the call and the node
// hands to the group's members inside the group's end-to-end encryption
// (AddGroupKey at each of them). The SFU forwards what it cannot open.
// When a participant leaves, every remaining one draws a new key, so
// frames sent after it left do not open with any key it had.

// GroupConn is a signalling stream to an SFU on which the node has sent
// the signed join.
type GroupConn interface {
	Send(*sfuproto.Message) error
	Recv() (*sfuproto.Message, error)
	Close() error
}

// Group call states.
const (
	GroupJoined = "joined"
	GroupLeft   = "left"
	GroupFailed = "failed"
	// GroupActive is a call running in a group that this device is not
	// in (the node's view: it can join).
	GroupActive = "active"
)

// ErrRefused is an SFU that refused a join (not a member, full).
var ErrRefused = errors.New("calls: the SFU refused")

// GroupCall is a group call as this device takes part in it.
type GroupCall struct {
	ID           string                 `json:"id"`
	Group        string                 `json:"group"`
	State        string                 `json:"state"`
	Reason       string                 `json:"reason,omitempty"`
	JoinedAt     time.Time              `json:"joined_at"`
	LeftAt       *time.Time             `json:"left_at,omitempty"`
	Muted        bool                   `json:"muted"`
	Participants []sfuproto.Participant `json:"participants"`
	Tracks       []GroupTrack           `json:"tracks"`
	KeyID        uint64                 `json:"key_id"`
	// Client: the media runs in a client of the daemon, bridged
	// (bridge.go).
	Client bool `json:"client,omitempty"`
}

// GroupTrack is a track of a group call as this side sees it.
type GroupTrack struct {
	// Name is "audio" or "video" for tracks sent; for tracks received,
	// the sender's device ID and the kind ("<device>-audio").
	Name      string `json:"name"`
	Device    string `json:"device,omitempty"` // the sender, for tracks received
	Kind      string `json:"kind"`
	Direction string `json:"direction"`
	Packets   uint64 `json:"packets"`
	// Frames: sent, the samples sealed; received, those that opened.
	Frames uint64 `json:"frames"`
	// Undecryptable counts received frames that did not open (no key,
	// a key of another device, forged or replayed).
	Undecryptable uint64 `json:"undecryptable,omitempty"`
	// Lost is what the receiver's RTP statistics count as lost.
	Lost int64  `json:"lost,omitempty"`
	File string `json:"file,omitempty"`
}

// groupCall is a group call's state; info is guarded by Engine.mu.
type groupCall struct {
	e      *Engine
	info   GroupCall
	media  Media
	conn   GroupConn
	pc     *webrtc.PeerConnection
	stats  stats.Getter
	ctx    context.Context
	cancel context.CancelFunc

	muted atomic.Bool
	// One SFrame sender per kind: KID k for audio, k|1 for video.
	audioKey, videoKey *sframe.Sender
	base               []byte
	kid                uint64
	// One receiver per sending device, holding only the keys that device
	// handed out: a frame on a device's track opens only under that
	// device's keys (review finding: with one receiver for all, a member
	// that posted another's key ID first made that device's frames
	// unreadable at a late joiner).
	rcvs       map[string]*sframe.Receiver // guarded by Engine.mu
	deviceKIDs map[string][]uint64         // newest last; guarded by Engine.mu

	neg       sync.Mutex
	remoteSet bool
	cands     []webrtc.ICECandidateInit
	tracksOn  bool

	sent    []*sentTrack
	recv    []*groupRecv
	bridge  *bridge // a client's call (Media.Client): set before it connects
	started bool
	ended   bool
}

// groupRecv is a received track.
type groupRecv struct {
	device, kind, name, file string
	ssrc                     uint32
	packets, frames, bad     atomic.Uint64

	mu      sync.Mutex
	w       rtpWriter
	pending [][]byte // frames under a key not held yet
	pendTS  []uint32
	out     *bridgeOut // a client's call: down the bridge
	done    bool       // its sender's track ended; guarded by Engine.mu
}

// maxPending bounds the frames kept per track until their key arrives.
const maxPending = 64

// maxKeysPerDevice bounds the keys held per device (it draws a new one
// whenever someone leaves).
const maxKeysPerDevice = 4

// newGroupKey draws a base key and an even KID.
func newGroupKey() ([]byte, uint64, error) {
	var b [16 + 8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, 0, err
	}
	kid := binary.BigEndian.Uint64(b[16:]) & (1<<48 - 2) // even, under 2^48
	return append([]byte(nil), b[:16]...), kid, nil
}

func senders(base []byte, kid uint64) (*sframe.Sender, *sframe.Sender, error) {
	ak, err := sframe.NewKey(base, kid)
	if err != nil {
		return nil, nil, err
	}
	vk, err := sframe.NewKey(base, kid|1)
	if err != nil {
		return nil, nil, err
	}
	return sframe.NewSender(ak), sframe.NewSender(vk), nil
}

// JoinGroup takes part in group call id of group through conn, on which
// the node sent the join; it returns once the SFU's first offer is
// answered, or with ErrRefused.
func (e *Engine) JoinGroup(ctx context.Context, id, group string, conn GroupConn, m Media) (GroupCall, error) {
	var srcs []source
	var err error
	if m.Client {
		err = checkClientGroupMedia(m)
	} else {
		srcs, err = sources(m)
	}
	if err != nil {
		conn.Close()
		return GroupCall{}, err
	}
	base, kid, err := newGroupKey()
	if err != nil {
		conn.Close()
		return GroupCall{}, err
	}
	as, vs, err := senders(base, kid)
	if err != nil {
		conn.Close()
		return GroupCall{}, err
	}
	cctx, cancel := context.WithCancel(context.Background())
	g := &groupCall{e: e, media: m, conn: conn, ctx: cctx, cancel: cancel, base: base, kid: kid,
		audioKey: as, videoKey: vs, rcvs: map[string]*sframe.Receiver{}, deviceKIDs: map[string][]uint64{},
		info: GroupCall{ID: id, Group: group, State: GroupJoined, JoinedAt: e.cfg.Now(), KeyID: kid, Participants: []sfuproto.Participant{}, Client: m.Client}}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		cancel()
		conn.Close()
		return GroupCall{}, errors.New("calls: the engine is closed")
	}
	if old := e.groups[id]; old != nil && !old.ended {
		e.mu.Unlock()
		cancel()
		conn.Close()
		return GroupCall{}, fmt.Errorf("%w: already in this call", ErrState)
	}
	e.groups[id] = g
	e.mu.Unlock()
	if err := e.groupSetup(g, srcs); err != nil {
		e.endGroup(g, GroupFailed, err.Error(), false)
		return GroupCall{}, err
	}
	if m.Client {
		err := e.clientSent(g)
		if err == nil {
			err = e.openBridge(g)
		}
		if err != nil {
			e.endGroup(g, GroupFailed, err.Error(), false)
			return GroupCall{}, err
		}
	}
	// Until the SFU's first offer is answered, or it refuses: a roster
	// or a candidate may come first (review finding: a roster taken as
	// the answer left the offer to race with the caller).
	first := make(chan error, 1)
	go func() {
		for {
			msg, err := conn.Recv()
			if err == nil {
				err = e.groupMessage(g, msg)
			}
			if err != nil || msg.Type == sfuproto.TypeOffer {
				first <- err
				return
			}
		}
	}()
	select {
	case err = <-first:
	case <-ctx.Done():
		err = ctx.Err()
	case <-time.After(15 * time.Second):
		err = errors.New("calls: the SFU did not answer")
	}
	if err != nil {
		e.endGroup(g, GroupFailed, err.Error(), false)
		return GroupCall{}, err
	}
	if !e.spawn(func() { e.groupLoop(g) }) {
		e.endGroup(g, GroupLeft, "closed", false)
		return GroupCall{}, errors.New("calls: the engine is closed")
	}
	e.emitGroup(g)
	return g.snapshot(), nil
}

// groupSetup makes the connection and the tracks to send.
func (e *Engine) groupSetup(g *groupCall, srcs []source) error {
	cfg := webrtc.Configuration{ICEServers: slices.Clone(e.cfg.ICEServers)}
	if e.cfg.ICE != nil {
		ctx, cancel := context.WithTimeout(g.ctx, 5*time.Second)
		cfg.ICEServers = append(cfg.ICEServers, e.cfg.ICE(ctx)...)
		cancel()
	}
	if e.cfg.RelayOnly {
		cfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	holder := &call{}
	api, err := e.api(holder, true)
	if err != nil {
		return err
	}
	pc, err := api.NewPeerConnection(cfg)
	if err != nil {
		return err
	}
	e.mu.Lock()
	g.pc = pc
	e.mu.Unlock()
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			init := c.ToJSON()
			_ = g.conn.Send(&sfuproto.Message{Type: sfuproto.TypeCandidate, Candidate: &init})
		}
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			e.mu.Lock()
			g.stats = holder.stats
			e.mu.Unlock()
			e.groupConnected(g)
		case webrtc.PeerConnectionStateFailed:
			go e.endGroup(g, GroupFailed, "connection failed", true)
		}
	})
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { e.groupReceive(g, t) })
	for _, s := range srcs {
		name, mime, key := "audio", webrtc.MimeTypeOpus, g.audioKey
		if s.kind == webrtc.RTPCodecTypeVideo {
			name, mime, key = "video", webrtc.MimeTypeVP8, g.videoKey
		}
		track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: mime}, name, "peergram")
		if err != nil {
			return err
		}
		g.sent = append(g.sent, &sentTrack{name: name, kind: s.kind.String(), src: s, track: track, sealer: &sealer{track: track, key: key, muted: &g.muted, audio: name == "audio"}})
	}
	return nil
}

// sealer seals each sample with SFrame before the track packetises it;
// muted audio is not sent.
type sealer struct {
	track *webrtc.TrackLocalStaticSample
	key   *sframe.Sender
	muted *atomic.Bool
	audio bool
}

func (s *sealer) WriteSample(m media.Sample) error {
	if s.audio && s.muted.Load() {
		return nil
	}
	ct, err := s.key.Seal(nil, nil, m.Data)
	if err != nil {
		return err
	}
	m.Data = ct
	return s.track.WriteSample(m)
}

// groupLoop takes the SFU's messages until the stream ends.
func (e *Engine) groupLoop(g *groupCall) {
	for {
		msg, err := g.conn.Recv()
		if err != nil {
			e.endGroup(g, GroupLeft, "the SFU closed the call", false)
			return
		}
		if err := e.groupMessage(g, msg); err != nil {
			e.endGroup(g, GroupFailed, err.Error(), true)
			return
		}
	}
}

// groupMessage handles one message of the SFU.
func (e *Engine) groupMessage(g *groupCall, m *sfuproto.Message) error {
	switch m.Type {
	case sfuproto.TypeError:
		return fmt.Errorf("%w: %s", ErrRefused, m.Error)
	case sfuproto.TypeOffer:
		return e.groupOffer(g, m.SDP)
	case sfuproto.TypeCandidate:
		g.neg.Lock()
		defer g.neg.Unlock()
		if !g.remoteSet {
			if len(g.cands) < 64 {
				g.cands = append(g.cands, *m.Candidate)
			}
			return nil
		}
		_ = g.pc.AddICECandidate(*m.Candidate)
	case sfuproto.TypeRoster:
		e.groupRoster(g, m.Roster)
	}
	return nil
}

// groupOffer answers an offer of the SFU; the first one gets this
// side's tracks.
func (e *Engine) groupOffer(g *groupCall, sdp string) error {
	g.neg.Lock()
	defer g.neg.Unlock()
	if err := g.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return fmt.Errorf("calls: the SFU's offer: %w", err)
	}
	if !g.tracksOn {
		g.tracksOn = true
		for _, st := range g.sent {
			sender, err := g.pc.AddTrack(st.track)
			if err != nil {
				return err
			}
			ssrc := ssrcOf(sender)
			e.mu.Lock()
			st.sender, st.ssrc = sender, ssrc
			e.mu.Unlock()
			e.sentRTCP(g, sender, st.name == "video")
		}
	}
	answer, err := g.pc.CreateAnswer(nil)
	if err != nil {
		return err
	}
	if err := g.pc.SetLocalDescription(answer); err != nil {
		return err
	}
	if err := g.conn.Send(&sfuproto.Message{Type: sfuproto.TypeAnswer, SDP: answer.SDP}); err != nil {
		return err
	}
	if !g.remoteSet {
		g.remoteSet = true
		for _, c := range g.cands {
			_ = g.pc.AddICECandidate(c)
		}
		g.cands = nil
	}
	return nil
}

// groupConnected starts sending the files.
func (e *Engine) groupConnected(g *groupCall) {
	e.mu.Lock()
	if g.started || g.ended {
		e.mu.Unlock()
		return
	}
	g.started = true
	sent := slices.Clone(g.sent)
	client := g.bridge != nil
	e.mu.Unlock()
	if client {
		return // the bridge feeds the tracks
	}
	for _, st := range sent {
		st := st
		e.spawn(func() {
			if err := play(g.ctx, st.src, st.sealer, &st.frames); err != nil {
				e.log.Warn("calls: sending a file stopped", "call", g.info.ID, "track", st.name, "err", err)
			}
		})
	}
}

// groupRoster takes the SFU's participant list. When a participant is
// gone, this device draws a new key: what it sends from now on does not
// open with the keys the leaver holds.
func (e *Engine) groupRoster(g *groupCall, ros []sfuproto.Participant) {
	e.mu.Lock()
	before := map[string]bool{}
	for _, p := range g.info.Participants {
		before[p.Device] = true
	}
	now := map[string]bool{}
	for _, p := range ros {
		now[p.Device] = true
	}
	gone := false
	for d := range before {
		if !now[d] {
			gone = true
		}
	}
	g.info.Participants = slices.Clone(ros)
	e.mu.Unlock()
	if gone {
		e.rekey(g)
	}
	e.emitGroup(g)
}

// rekey draws this device's new key of g: what it sends from now on
// opens only with it.
func (e *Engine) rekey(g *groupCall) {
	base, kid, err := newGroupKey()
	if err != nil {
		return
	}
	ak, err1 := sframe.NewKey(base, kid)
	vk, err2 := sframe.NewKey(base, kid|1)
	if err1 != nil || err2 != nil {
		return
	}
	e.mu.Lock()
	g.base, g.kid, g.info.KeyID = base, kid, kid
	e.mu.Unlock()
	g.audioKey.Rekey(ak)
	g.videoKey.Rekey(vk)
}

// RekeyGroup draws a new key of call (the group lost a member: the keys
// it read must open nothing sent from now on); the event that follows
// carries the new KeyID for the node to hand out.
func (e *Engine) RekeyGroup(call string) error {
	e.mu.Lock()
	g := e.groups[call]
	e.mu.Unlock()
	if g == nil || g.ended {
		return ErrNoCall
	}
	e.rekey(g)
	e.emitGroup(g)
	return nil
}

// GroupKey returns this device's current key of call, for the node to
// hand to the group's members.
func (e *Engine) GroupKey(call string) (kid uint64, base []byte, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	g := e.groups[call]
	if g == nil || g.ended {
		return 0, nil, ErrNoCall
	}
	return g.kid, slices.Clone(g.base), nil
}

// AddGroupKey takes device's key of call (from a member, through the
// group's encryption): its frames open from now on, and those held for
// want of it are opened and recorded.
func (e *Engine) AddGroupKey(call, device string, kid uint64, base []byte) error {
	if kid&1 != 0 || len(base) != 16 {
		return fmt.Errorf("%w: a group call key is 16 bytes under an even key ID", ErrMalformed)
	}
	ak, err := sframe.NewKey(base, kid)
	if err != nil {
		return err
	}
	vk, err := sframe.NewKey(base, kid|1)
	if err != nil {
		return err
	}
	e.mu.Lock()
	g := e.groups[call]
	if g == nil || g.ended {
		e.mu.Unlock()
		return ErrNoCall
	}
	if slices.Contains(g.deviceKIDs[device], kid) {
		e.mu.Unlock()
		return nil
	}
	if len(g.deviceKIDs) >= 256 && g.deviceKIDs[device] == nil {
		e.mu.Unlock()
		return fmt.Errorf("%w: keys of too many devices", ErrMalformed)
	}
	rcv := g.rcvs[device]
	if rcv == nil {
		rcv = sframe.NewReceiver()
		g.rcvs[device] = rcv
	}
	ks := append(g.deviceKIDs[device], kid)
	for len(ks) > maxKeysPerDevice {
		rcv.Remove(ks[0])
		rcv.Remove(ks[0] | 1)
		ks = ks[1:]
	}
	g.deviceKIDs[device] = ks
	rcv.Add(ak)
	rcv.Add(vk)
	recv := slices.Clone(g.recv)
	e.mu.Unlock()
	for _, r := range recv {
		if r.device == device {
			e.retryPending(g, r)
		}
	}
	return nil
}

// groupReceive reads (and records) a track the SFU forwards: each frame
// is opened with the sender's SFrame key, which must be the key of the
// device the SFU says sent it.
func (e *Engine) groupReceive(g *groupCall, t *webrtc.TrackRemote) {
	device := t.StreamID()
	kind := t.Kind().String()
	r := &groupRecv{device: device, kind: kind, name: fileName(shortDevice(device)+"-"+kind, kind), ssrc: uint32(t.SSRC())}
	e.mu.Lock()
	live := 0
	for _, x := range g.recv {
		if !x.done {
			live++
		}
	}
	// A bound on the tracks received at once, not over the call (review
	// finding: participants coming and going used it up, and later ones
	// were not heard); ended ones are forgotten past twice that.
	if live >= 4*maxRecordings || g.ended || e.closed {
		e.mu.Unlock()
		return
	}
	for i := 0; len(g.recv) >= 8*maxRecordings && i < len(g.recv); {
		if g.recv[i].done {
			g.recv = slices.Delete(g.recv, i, i+1)
			continue
		}
		i++
	}
	if g.media.Record != "" {
		w, p, err := newRecorder(g.media.Record, &namedTrack{t, r.name})
		if err != nil {
			e.log.Warn("calls: not recording a track", "call", g.info.ID, "err", err)
		} else {
			r.w, r.file = w, p
		}
	}
	g.recv = append(g.recv, r)
	e.wg.Add(1)
	client := g.bridge != nil
	e.mu.Unlock()
	defer e.wg.Done()
	defer func() {
		e.mu.Lock()
		r.done = true
		e.mu.Unlock()
	}()
	if client {
		e.bridgeOutFor(g, r, t)
		defer e.bridgeDrop(g, r)
	}
	defer func() {
		r.mu.Lock()
		if r.w != nil {
			r.w.Close()
			r.w = nil
		}
		r.mu.Unlock()
	}()
	var sb *samplebuilder.SampleBuilder
	if t.Kind() == webrtc.RTPCodecTypeVideo {
		sb = samplebuilder.New(128, &codecs.VP8Packet{}, 90000)
	}
	for {
		pkt, _, err := t.ReadRTP()
		if err != nil {
			return
		}
		r.packets.Add(1)
		if sb == nil {
			e.openFrame(g, r, pkt.Payload, pkt.Timestamp)
			continue
		}
		sb.Push(pkt)
		for s := sb.Pop(); s != nil; s = sb.Pop() {
			e.openFrame(g, r, s.Data, s.PacketTimestamp)
		}
	}
}

// namedTrack gives a recording its file name.
type namedTrack struct {
	*webrtc.TrackRemote
	name string
}

func (n *namedTrack) ID() string { return n.name }

func shortDevice(d string) string {
	if len(d) > 16 {
		return d[:16]
	}
	return d
}

// openFrame opens and records one frame, or holds it until its key
// arrives.
func (e *Engine) openFrame(g *groupCall, r *groupRecv, frame []byte, ts uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !e.openLocked(g, r, frame, ts) {
		return
	}
}

// openLocked opens frame; false if it was held or refused. r.mu held.
func (e *Engine) openLocked(g *groupCall, r *groupRecv, frame []byte, ts uint32) bool {
	e.mu.Lock()
	rcv := g.rcvs[r.device]
	e.mu.Unlock()
	if rcv == nil {
		rcv = sframe.NewReceiver() // no key of this device yet
	}
	pt, kid, err := rcv.Open(nil, nil, frame)
	if errors.Is(err, sframe.ErrUnknownKey) {
		if len(r.pending) < maxPending {
			r.pending = append(r.pending, slices.Clone(frame))
			r.pendTS = append(r.pendTS, ts)
		} else {
			r.bad.Add(1)
		}
		return false
	}
	if err != nil {
		r.bad.Add(1)
		return false
	}
	if (kid&1 == 1) != (r.kind == "video") {
		// A video frame on an audio track, or the reverse.
		r.bad.Add(1)
		return false
	}
	r.frames.Add(1)
	if r.out != nil {
		r.out.write(pt, ts)
	}
	if r.w != nil {
		p := &rtp.Packet{Header: rtp.Header{Version: 2, Timestamp: ts, Marker: true}, Payload: pt}
		if r.kind == "video" {
			p.Payload = append([]byte{0x10}, pt...) // a VP8 descriptor: start of partition 0
		}
		_ = r.w.WriteRTP(p)
	}
	return true
}

// retryPending opens the frames held for want of a key.
func (e *Engine) retryPending(g *groupCall, r *groupRecv) {
	r.mu.Lock()
	defer r.mu.Unlock()
	held, ts := r.pending, r.pendTS
	r.pending, r.pendTS = nil, nil
	for i, f := range held {
		e.openLocked(g, r, f, ts[i])
	}
}

// MuteGroup stops (or resumes) sending this device's audio.
func (e *Engine) MuteGroup(_ context.Context, call string, muted bool) (GroupCall, error) {
	e.mu.Lock()
	g := e.groups[call]
	if g == nil || g.ended {
		e.mu.Unlock()
		return GroupCall{}, ErrNoCall
	}
	g.info.Muted = muted
	e.mu.Unlock()
	g.muted.Store(muted)
	if err := g.conn.Send(&sfuproto.Message{Type: sfuproto.TypeMute, Muted: muted}); err != nil {
		return GroupCall{}, err
	}
	e.emitGroup(g)
	return g.snapshot(), nil
}

// LeaveGroup leaves a group call.
func (e *Engine) LeaveGroup(_ context.Context, call string) (GroupCall, error) {
	e.mu.Lock()
	g := e.groups[call]
	e.mu.Unlock()
	if g == nil {
		return GroupCall{}, ErrNoCall
	}
	e.endGroup(g, GroupLeft, "left", true)
	return g.snapshot(), nil
}

// endGroup ends g (once); tell sends the SFU a leave first.
func (e *Engine) endGroup(g *groupCall, state, reason string, tell bool) {
	e.mu.Lock()
	if g.ended {
		e.mu.Unlock()
		return
	}
	g.ended = true
	now := e.cfg.Now()
	g.info.State, g.info.Reason, g.info.LeftAt = state, reason, &now
	st := g.stats
	sent := slices.Clone(g.sent)
	ssrcs := make([]uint32, len(sent))
	for i, s := range sent {
		ssrcs[i] = s.ssrc
	}
	pc, b := g.pc, g.bridge
	e.mu.Unlock()
	finals := make([]uint64, len(sent))
	for i := range sent {
		finals[i] = packetsSent(st, ssrcs[i])
	}
	e.mu.Lock()
	for i, s := range sent {
		s.final = finals[i]
	}
	e.mu.Unlock()
	if tell {
		_ = g.conn.Send(&sfuproto.Message{Type: sfuproto.TypeLeave})
	}
	g.cancel()
	_ = g.conn.Close()
	if pc != nil {
		_ = pc.Close()
	}
	b.close()
	e.emitGroup(g)
}

func (g *groupCall) snapshot() GroupCall {
	e := g.e
	e.mu.Lock()
	info := g.info
	info.Participants = slices.Clone(info.Participants)
	st, live := g.stats, !g.ended
	sent := slices.Clone(g.sent)
	ssrcs, finals := make([]uint32, len(sent)), make([]uint64, len(sent))
	for i, s := range sent {
		ssrcs[i], finals[i] = s.ssrc, s.final
	}
	recv := slices.Clone(g.recv)
	e.mu.Unlock()
	info.Tracks = []GroupTrack{}
	for i, s := range sent {
		n := finals[i]
		if live || n == 0 {
			if m := packetsSent(st, ssrcs[i]); m > n {
				n = m
			}
		}
		info.Tracks = append(info.Tracks, GroupTrack{Name: s.name, Kind: s.kind, Direction: "sent", Packets: n, Frames: s.frames.Load()})
	}
	for _, r := range recv {
		var lost int64
		if st != nil {
			if s := st.Get(r.ssrc); s != nil {
				lost = s.InboundRTPStreamStats.PacketsLost
			}
		}
		info.Tracks = append(info.Tracks, GroupTrack{Name: r.name, Device: r.device, Kind: r.kind, Direction: "received",
			Packets: r.packets.Load(), Frames: r.frames.Load(), Undecryptable: r.bad.Load(), Lost: lost, File: r.file})
	}
	return info
}

func (e *Engine) emitGroup(g *groupCall) {
	if e.cfg.GroupEvents == nil {
		return
	}
	e.evMu.Lock()
	defer e.evMu.Unlock()
	e.cfg.GroupEvents(g.snapshot())
}

// GroupCalls lists this device's group calls, newest first.
func (e *Engine) GroupCalls() []GroupCall {
	e.mu.Lock()
	gs := make([]*groupCall, 0, len(e.groups))
	for _, g := range e.groups {
		gs = append(gs, g)
	}
	e.mu.Unlock()
	out := make([]GroupCall, 0, len(gs))
	for _, g := range gs {
		out = append(out, g.snapshot())
	}
	slices.SortStableFunc(out, func(a, b GroupCall) int { return b.JoinedAt.Compare(a.JoinedAt) })
	return out
}

// GetGroup returns a group call.
func (e *Engine) GetGroup(call string) (GroupCall, error) {
	e.mu.Lock()
	g := e.groups[call]
	e.mu.Unlock()
	if g == nil {
		return GroupCall{}, ErrNoCall
	}
	return g.snapshot(), nil
}

// ReportBandwidth tells the SFU, as REMB feedback on device's video
// track, that this side can take bps bits/s of it. (A browser sends such
// feedback itself; a headless node uses this to test or to save data.)
func (e *Engine) ReportBandwidth(call, device string, bps uint64) error {
	e.mu.Lock()
	g := e.groups[call]
	var ssrc uint32
	if g != nil {
		for _, r := range g.recv {
			if r.device == device && r.kind == "video" {
				ssrc = r.ssrc
			}
		}
	}
	e.mu.Unlock()
	if g == nil {
		return ErrNoCall
	}
	if ssrc == 0 {
		return fmt.Errorf("%w: no video of %s", ErrNoCall, device)
	}
	return g.pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: float32(bps), SSRCs: []uint32{ssrc}}})
}

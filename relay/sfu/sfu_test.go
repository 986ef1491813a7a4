package sfu_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfwriter"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"

	"github.com/peergram/peergram/calls"
	"github.com/peergram/peergram/calls/sfuproto"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/relay/sfu"
)

// pattern is in every audio frame the participants send: the SFU must
// never see it.
var pattern = []byte("PEERGRAM-TEST-PATTERN")

func loopback(se *webrtc.SettingEngine) {
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
}

func newHost(t testing.TB) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// members is a group's membership as the relay would know it.
type members struct {
	mu  sync.Mutex
	dev map[identity.DeviceID]identity.AccountID
}

func (m *members) Member(_ [32]byte, d identity.DeviceID) (identity.AccountID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.dev[d]
	if !ok {
		return identity.AccountID{}, errors.New("not a member")
	}
	return a, nil
}

func (m *members) remove(d identity.DeviceID) {
	m.mu.Lock()
	delete(m.dev, d)
	m.mu.Unlock()
}

// tap keeps what the SFU forwards.
type tap struct {
	mu      sync.Mutex
	packets int
	leaks   int
}

func (tp *tap) see(_, _, _ string, payload []byte) {
	tp.mu.Lock()
	tp.packets++
	if bytes.Contains(payload, pattern) {
		tp.leaks++
	}
	tp.mu.Unlock()
}

// patternOgg writes an Ogg/Opus file of n 20 ms packets, each holding
// the test pattern (the SFU and the recorders do not decode Opus).
func patternOgg(t testing.TB, n int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pattern.ogg")
	w, err := oggwriter.New(p, 48000, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		pl := append(append([]byte{0xfc}, pattern...), fmt.Sprintf("-%05d", i)...)
		if err := w.WriteRTP(&rtp.Packet{Header: rtp.Header{Timestamp: uint32(i * 960), SequenceNumber: uint16(i)}, Payload: pl}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

type member struct {
	h    host.Host
	dev  *identity.DeviceKey
	cert *identity.DeviceCert
	e    *calls.Engine
	rec  string
	conn *sfuproto.Conn
}

type nopSignaller struct{}

func (nopSignaller) Signal(context.Context, string, calls.Signal) error { return nil }

func newMember(t *testing.T, relay host.Host, ms *members) *member {
	t.Helper()
	acct, err := identity.NewAccountKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := identity.NewDeviceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := acct.CertifyDevice(dev, "test", time.Now().Unix())
	if err != nil {
		t.Fatal(err)
	}
	if ms != nil {
		ms.mu.Lock()
		ms.dev[dev.ID()] = acct.ID()
		ms.mu.Unlock()
	}
	h := newHost(t)
	if err := h.Connect(context.Background(), peer.AddrInfo{ID: relay.ID(), Addrs: relay.Addrs()}); err != nil {
		t.Fatal(err)
	}
	e, err := calls.NewEngine(calls.Config{Signaller: nopSignaller{}, Device: dev.ID().String(), Settings: loopback})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return &member{h: h, dev: dev, cert: cert, e: e, rec: t.TempDir()}
}

func (m *member) join(ctx context.Context, relay host.Host, group [32]byte, call string, media calls.Media) (calls.GroupCall, error) {
	conn, err := sfu.Dial(ctx, m.h, relay.ID(), group, call, m.dev, m.cert)
	if err != nil {
		return calls.GroupCall{}, err
	}
	m.conn = conn
	media.Record = m.rec
	return m.e.JoinGroup(ctx, call, hex.EncodeToString(group[:]), conn, media)
}

// shareKeys hands every member's current key to every other, as the
// node does over the group's encryption.
func shareKeys(t *testing.T, call string, ms ...*member) {
	t.Helper()
	for _, from := range ms {
		kid, base, err := from.e.GroupKey(call)
		if err != nil {
			t.Fatal(err)
		}
		for _, to := range ms {
			if to != from {
				if err := to.e.AddGroupKey(call, from.dev.ID().String(), kid, base); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

func received(g calls.GroupCall, device, kind string) (frames, packets, bad uint64) {
	for _, tr := range g.Tracks {
		if tr.Direction == "received" && tr.Device == device && tr.Kind == kind {
			frames += tr.Frames
			packets += tr.Packets
			bad += tr.Undecryptable
		}
	}
	return
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func newCallID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// TestGroupCall: four members through the SFU each receive the other
// three audio tracks, recorded as valid Ogg; the SFU never sees the test
// pattern; a member who leaves stops receiving though its connection
// stays open; the others draw new keys; a non-member, a join signed for
// another call and a member removed during the call are refused.
func TestGroupCall(t *testing.T) {
	relay := newHost(t)
	ms := &members{dev: map[identity.DeviceID]identity.AccountID{}}
	tp := &tap{}
	srv, err := sfu.New(sfu.Config{Host: relay, Members: ms, Settings: loopback, Tap: tp.see, Recheck: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	audio := patternOgg(t, 500) // 10 s
	var group [32]byte
	rand.Read(group[:])
	call := newCallID()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var mem []*member
	for range 4 {
		mem = append(mem, newMember(t, relay, ms))
	}
	for i, m := range mem {
		if _, err := m.join(ctx, relay, group, call, calls.Media{Audio: audio}); err != nil {
			t.Fatalf("member %d joins: %v", i, err)
		}
	}
	shareKeys(t, call, mem...)
	waitFor(t, 20*time.Second, "every member to hear the other three", func() bool {
		tp.mu.Lock()
		leaks := tp.leaks
		tp.mu.Unlock()
		if leaks > 0 {
			t.Fatalf("the SFU saw the test pattern in %d packets", leaks)
		}
		for _, m := range mem {
			g, _ := m.e.GetGroup(call)
			for _, o := range mem {
				if o != m {
					if f, _, _ := received(g, o.dev.ID().String(), "audio"); f < 50 {
						return false
					}
				}
			}
		}
		return true
	})
	for i, m := range mem {
		g, _ := m.e.GetGroup(call)
		if len(g.Participants) != 4 {
			t.Errorf("member %d's roster has %d participants", i, len(g.Participants))
		}
		for _, o := range mem {
			if o == m {
				continue
			}
			f, p, bad := received(g, o.dev.ID().String(), "audio")
			if bad > 0 || f > p {
				t.Errorf("member %d from %s: %d frames, %d packets, %d undecryptable", i, o.dev.ID(), f, p, bad)
			}
		}
	}

	// The fourth leaves on its signalling stream but keeps its
	// connection open: nothing more reaches it.
	leaver := mem[3]
	var kids []uint64
	for _, m := range mem[:3] {
		g, _ := m.e.GetGroup(call)
		kids = append(kids, g.KeyID)
	}
	if err := leaver.conn.Send(&sfuproto.Message{Type: sfuproto.TypeLeave}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the roster to drop the leaver", func() bool {
		g, _ := mem[0].e.GetGroup(call)
		return len(g.Participants) == 3
	})
	time.Sleep(500 * time.Millisecond)
	gl, _ := leaver.e.GetGroup(call)
	_, before, _ := received(gl, mem[0].dev.ID().String(), "audio")
	g0, _ := mem[1].e.GetGroup(call)
	_, otherBefore, _ := received(g0, mem[0].dev.ID().String(), "audio")
	time.Sleep(1500 * time.Millisecond)
	gl, _ = leaver.e.GetGroup(call)
	_, after, _ := received(gl, mem[0].dev.ID().String(), "audio")
	if after != before {
		t.Errorf("the leaver still receives: %d then %d packets", before, after)
	}
	g0, _ = mem[1].e.GetGroup(call)
	if _, otherAfter, _ := received(g0, mem[0].dev.ID().String(), "audio"); otherAfter <= otherBefore {
		t.Errorf("the others stopped receiving too: %d then %d packets", otherBefore, otherAfter)
	}
	// Those who stayed drew new keys.
	for i, m := range mem[:3] {
		g, _ := m.e.GetGroup(call)
		if g.KeyID == kids[i] {
			t.Errorf("member %d kept its key after a participant left", i)
		}
	}

	// A non-member is refused, and so is a member's join signed for
	// another call.
	outsider := newMember(t, relay, nil)
	if _, err := outsider.join(ctx, relay, group, call, calls.Media{}); !errors.Is(err, calls.ErrRefused) {
		t.Errorf("a non-member joined: %v", err)
	}
	replayer := newMember(t, relay, ms)
	conn, err := sfu.Dial(ctx, replayer.h, relay.ID(), group, newCallID(), replayer.dev, replayer.cert)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if err := replayJoin(ctx, replayer, relay, group, call); err == nil {
		t.Error("a join signed for another call was taken")
	}

	// A member removed from the group is dropped within the recheck.
	removed := mem[2]
	ms.remove(removed.dev.ID())
	waitFor(t, 5*time.Second, "the removed member to be dropped", func() bool {
		g, _ := removed.e.GetGroup(call)
		return g.State != calls.GroupJoined
	})
	waitFor(t, 5*time.Second, "the roster to drop the removed member", func() bool {
		g, _ := mem[0].e.GetGroup(call)
		return len(g.Participants) == 2
	})

	for _, m := range mem {
		m.e.Close()
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if tp.packets < 300 {
		t.Errorf("the SFU forwarded only %d packets", tp.packets)
	}
	if tp.leaks > 0 {
		t.Errorf("the SFU saw the test pattern in %d of %d packets", tp.leaks, tp.packets)
	}
	// The recordings are valid Ogg with the frames that opened.
	g, _ := mem[0].e.GetGroup(call)
	for _, tr := range g.Tracks {
		if tr.Direction != "received" || tr.Kind != "audio" {
			continue
		}
		pages := countOgg(t, tr.File)
		if pages < int(tr.Frames)*9/10 || pages == 0 {
			t.Errorf("%s: %d Ogg pages for %d frames", tr.File, pages, tr.Frames)
		}
		if b, _ := os.ReadFile(tr.File); !bytes.Contains(b, pattern) {
			t.Errorf("%s does not hold the decrypted frames", tr.File)
		}
	}
}

// replayJoin sends, on a new stream, a join whose signature was made for
// another call.
func replayJoin(ctx context.Context, m *member, relay host.Host, group [32]byte, call string) error {
	other := newCallID()
	raw, _ := m.cert.MarshalBinary()
	now := time.Now().UnixMilli()
	msg := &sfuproto.Message{Type: sfuproto.TypeJoin, Group: hex.EncodeToString(group[:]), Call: call, Cert: raw, Time: now,
		Sig: m.dev.Sign(sfuproto.JoinLabel, sfuproto.JoinSigned(relay.ID().String(), m.h.ID().String(), group, other, now))}
	str, err := m.h.NewStream(ctx, relay.ID(), sfuproto.ProtocolID)
	if err != nil {
		return err
	}
	defer str.Close()
	if err := sfuproto.Write(str, msg); err != nil {
		return err
	}
	ans, err := sfuproto.Read(str)
	if err != nil {
		return err
	}
	if ans.Type == sfuproto.TypeError {
		return errors.New(ans.Error)
	}
	return nil
}

func countOgg(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := oggreader.NewWith(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	n := 0
	for {
		if _, _, err := r.ParseNextPage(); err != nil {
			return n
		}
		n++
	}
}

// patternIVF writes an IVF/VP8 file of n frames at 30 fps, each of size
// bytes (several RTP packets), the first byte marking a key frame.
func patternIVF(t testing.TB, n, size int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pattern.ivf")
	w, err := ivfwriter.New(p, ivfwriter.WithCodec(webrtc.MimeTypeVP8))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		frame := bytes.Repeat(pattern, size/len(pattern)+1)[:size]
		frame[0] = 0 // a key frame
		pl := append([]byte{0x10}, frame...)
		if err := w.WriteRTP(&rtp.Packet{Header: rtp.Header{Timestamp: uint32(i * 3000), Marker: true}, Payload: pl}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestGroupCallBandwidth: a receiver whose REMB says it cannot take a
// video's bitrate stops getting that video (another receiver still
// does); when its estimate recovers the video comes back, at a frame
// boundary, and every frame it gets opens.
func TestGroupCallBandwidth(t *testing.T) {
	relay := newHost(t)
	ms := &members{dev: map[identity.DeviceID]identity.AccountID{}}
	srv, err := sfu.New(sfu.Config{Host: relay, Members: ms, Settings: loopback})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	video := patternIVF(t, 450, 3000) // 15 s, about 720 kbit/s
	var group [32]byte
	rand.Read(group[:])
	call := newCallID()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pub, slow, fast := newMember(t, relay, ms), newMember(t, relay, ms), newMember(t, relay, ms)
	if _, err := pub.join(ctx, relay, group, call, calls.Media{Video: video}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*member{slow, fast} {
		if _, err := m.join(ctx, relay, group, call, calls.Media{}); err != nil {
			t.Fatal(err)
		}
	}
	shareKeys(t, call, pub, slow, fast)
	from := pub.dev.ID().String()
	videoOf := func(m *member) (uint64, uint64, uint64) {
		g, _ := m.e.GetGroup(call)
		return received(g, from, "video")
	}
	waitFor(t, 15*time.Second, "both receivers to get video", func() bool {
		f1, _, _ := videoOf(slow)
		f2, _, _ := videoOf(fast)
		return f1 > 20 && f2 > 20
	})
	report := func(bps uint64) {
		if err := slow.e.ReportBandwidth(call, from, bps); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "the video to be withheld from the slow receiver", func() bool {
		report(50_000)
		return srv.Paused(call, pub.dev.ID(), slow.dev.ID())
	})
	time.Sleep(300 * time.Millisecond)
	_, slowBefore, _ := videoOf(slow)
	_, fastBefore, _ := videoOf(fast)
	time.Sleep(time.Second)
	_, slowAfter, _ := videoOf(slow)
	_, fastAfter, _ := videoOf(fast)
	if slowAfter != slowBefore {
		t.Errorf("the slow receiver still got %d video packets", slowAfter-slowBefore)
	}
	if fastAfter <= fastBefore+30 {
		t.Errorf("the other receiver got only %d video packets meanwhile", fastAfter-fastBefore)
	}
	framesBefore, _, _ := videoOf(slow)
	waitFor(t, 5*time.Second, "the video to come back", func() bool {
		report(100_000_000)
		return !srv.Paused(call, pub.dev.ID(), slow.dev.ID())
	})
	waitFor(t, 5*time.Second, "video frames to reach the slow receiver again", func() bool {
		f, _, _ := videoOf(slow)
		return f > framesBefore+20
	})
	if _, _, bad := videoOf(slow); bad > 0 {
		t.Errorf("%d video frames did not open after the video came back", bad)
	}
	// What was withheld is not seen as lost: sequence numbers were
	// shifted past it.
	g, _ := slow.e.GetGroup(call)
	for _, tr := range g.Tracks {
		if tr.Direction == "received" && tr.Device == from && tr.Lost > 5 {
			t.Errorf("the slow receiver counts %d packets lost", tr.Lost)
		}
	}
}

// TestGroupCallMuteAndSpeakers: the roster says who speaks; a muted
// member's audio stops at the others (the SFU withholds it even from a
// sender that keeps sending) and the roster says muted; unmuted, it
// flows again.
func TestGroupCallMuteAndSpeakers(t *testing.T) {
	relay := newHost(t)
	ms := &members{dev: map[identity.DeviceID]identity.AccountID{}}
	srv, err := sfu.New(sfu.Config{Host: relay, Members: ms, Settings: loopback})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	audio := patternOgg(t, 750) // 15 s
	var group [32]byte
	rand.Read(group[:])
	call := newCallID()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, b := newMember(t, relay, ms), newMember(t, relay, ms)
	if _, err := a.join(ctx, relay, group, call, calls.Media{Audio: audio}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.join(ctx, relay, group, call, calls.Media{}); err != nil {
		t.Fatal(err)
	}
	shareKeys(t, call, a, b)
	ad := a.dev.ID().String()
	roster := func(m *member, dev string) (sfuproto.Participant, bool) {
		g, _ := m.e.GetGroup(call)
		for _, p := range g.Participants {
			if p.Device == dev {
				return p, true
			}
		}
		return sfuproto.Participant{}, false
	}
	waitFor(t, 15*time.Second, "A speaking in B's roster", func() bool {
		p, ok := roster(b, ad)
		return ok && p.Speaking && !p.Muted
	})
	if p, _ := roster(b, b.dev.ID().String()); p.Speaking {
		t.Error("B, who sends nothing, is shown speaking")
	}
	// Muted on the signalling only (the engine would stop sending too):
	// the SFU must withhold what still comes.
	if err := a.conn.Send(&sfuproto.Message{Type: sfuproto.TypeMute, Muted: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "A muted, not speaking, in B's roster", func() bool {
		p, ok := roster(b, ad)
		return ok && p.Muted && !p.Speaking
	})
	time.Sleep(200 * time.Millisecond)
	g, _ := b.e.GetGroup(call)
	_, before, _ := received(g, ad, "audio")
	time.Sleep(time.Second)
	g, _ = b.e.GetGroup(call)
	if _, after, _ := received(g, ad, "audio"); after != before {
		t.Errorf("B still got %d audio packets from muted A", after-before)
	}
	if _, err := a.e.MuteGroup(ctx, call, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "A's audio again at B", func() bool {
		g, _ := b.e.GetGroup(call)
		_, n, _ := received(g, ad, "audio")
		p, _ := roster(b, ad)
		return n > before+20 && !p.Muted && p.Speaking
	})
	// Muting through the engine stops the sending itself.
	if _, err := a.e.MuteGroup(ctx, call, true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	g, _ = a.e.GetGroup(call)
	var sent uint64
	for _, tr := range g.Tracks {
		if tr.Direction == "sent" && tr.Kind == "audio" {
			sent = tr.Packets
		}
	}
	time.Sleep(time.Second)
	g, _ = a.e.GetGroup(call)
	for _, tr := range g.Tracks {
		if tr.Direction == "sent" && tr.Kind == "audio" && tr.Packets > sent+2 {
			t.Errorf("A, muted, sent %d more packets", tr.Packets-sent)
		}
	}
}

// TestGroupCallTimeouts: a participant that leaves an offer unanswered,
// or answers but never connects, is dropped, and its seat freed.
func TestGroupCallTimeouts(t *testing.T) {
	relay := newHost(t)
	ms := &members{dev: map[identity.DeviceID]identity.AccountID{}}
	srv, err := sfu.New(sfu.Config{Host: relay, Members: ms, Settings: loopback,
		AnswerTimeout: 500 * time.Millisecond, ConnectTimeout: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	var group [32]byte
	rand.Read(group[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	silent := newMember(t, relay, ms)
	conn, err := sfu.Dial(ctx, silent.h, relay.ID(), group, newCallID(), silent.dev, silent.cert)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := untilOffer(conn); err != nil {
		t.Fatalf("no offer: %+v, %v", m, err)
	}
	if why := untilError(conn); why != "no answer to the offer" {
		t.Errorf("a participant that never answered: %q", why)
	}

	// Answers, but has no interface to connect from.
	mute := newMember(t, relay, ms)
	conn, err = sfu.Dial(ctx, mute.h, relay.ID(), group, newCallID(), mute.dev, mute.cert)
	if err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetInterfaceFilter(func(string) bool { return false })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	m, err := untilOffer(conn)
	if err != nil {
		t.Fatalf("no offer: %+v, %v", m, err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP}); err != nil {
		t.Fatal(err)
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(ans); err != nil {
		t.Fatal(err)
	}
	if err := conn.Send(&sfuproto.Message{Type: sfuproto.TypeAnswer, SDP: ans.SDP}); err != nil {
		t.Fatal(err)
	}
	if why := untilError(conn); why != "no media connection" {
		t.Errorf("a participant that never connected: %q", why)
	}
	waitFor(t, 5*time.Second, "the calls to be gone", func() bool { return srv.Calls() == 0 })
}

// untilError reads conn until an error message (its text) or the end.
func untilError(conn *sfuproto.Conn) string {
	for {
		m, err := conn.Recv()
		if err != nil {
			return "closed: " + err.Error()
		}
		if m.Type == sfuproto.TypeError {
			return m.Error
		}
	}
}

// untilOffer reads conn past rosters to the SFU's offer.
func untilOffer(conn *sfuproto.Conn) (*sfuproto.Message, error) {
	for {
		m, err := conn.Recv()
		if err != nil || m.Type == sfuproto.TypeOffer {
			return m, err
		}
		if m.Type == sfuproto.TypeError {
			return m, errors.New(m.Error)
		}
	}
}

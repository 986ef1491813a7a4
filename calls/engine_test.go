package calls

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
)

// loopback keeps ICE on 127.0.0.1.
func loopback(se *webrtc.SettingEngine) {
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
}

// network carries signals between test engines as the node's sessions
// would: to every device of an account, in order per device; tamper
// may change a signal on the way.
type network struct {
	t       *testing.T
	mu      sync.Mutex
	devices map[string][]*device // account → devices
	tamper  func(from string, s *Signal)
	signals atomic.Int64 // signals sent
	log     testWriter
}

// sent counts the signals the engines sent.
func (n *network) sent() int64 { return n.signals.Load() }

type device struct {
	account, id string
	e           *Engine
	in          chan func()
	events      chan Call
	mu          sync.Mutex
	closed      bool
}

// deliver queues f for d's handler, unless d is gone.
func (d *device) deliver(f func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.closed {
		d.in <- f
	}
}

func newNetwork(t *testing.T) *network {
	return &network{t: t, devices: map[string][]*device{}, log: newTestWriter(t)}
}

type signaller struct {
	n    *network
	from *device
}

func (s signaller) Signal(ctx context.Context, peer string, sig Signal) error {
	s.n.signals.Add(1)
	if s.n.tamper != nil {
		s.n.tamper(s.from.account, &sig)
	}
	b, err := sig.Marshal()
	if err != nil {
		return err
	}
	s.n.mu.Lock()
	to := append([]*device(nil), s.n.devices[peer]...)
	s.n.mu.Unlock()
	for _, d := range to {
		d.deliver(func() {
			got, err := ParseSignal(b)
			if err != nil {
				s.n.t.Errorf("signal from %s: %v", s.from.id, err)
				return
			}
			if err := d.e.Handle(context.Background(), s.from.account, s.from.id, got); err != nil {
				s.n.t.Logf("%s handling %s: %v", d.id, got.Type, err)
			}
		})
	}
	return nil
}

// add starts an engine for a device of account.
func (n *network) add(account, id string, tweak func(*Config)) *device {
	d := &device{account: account, id: id, in: make(chan func(), 1024), events: make(chan Call, 1024)}
	cfg := Config{Signaller: signaller{n, d}, Device: id, Settings: loopback, Log: slog.New(slog.NewTextHandler(n.log, &slog.HandlerOptions{Level: slog.LevelDebug})).With("device", id), Events: func(c Call) {
		select {
		case d.events <- c:
		default:
		}
	}}
	if tweak != nil {
		tweak(&cfg)
	}
	e, err := NewEngine(cfg)
	if err != nil {
		n.t.Fatal(err)
	}
	d.e = e
	done := make(chan struct{})
	go func() {
		defer close(done)
		for f := range d.in {
			f()
		}
	}()
	n.t.Cleanup(func() {
		e.Close()
		d.mu.Lock()
		d.closed = true
		close(d.in)
		d.mu.Unlock()
		<-done
	})
	n.mu.Lock()
	n.devices[account] = append(n.devices[account], d)
	n.mu.Unlock()
	return d
}

// waitState waits for d's call id to reach state.
func waitState(t *testing.T, d *device, id string, want State) Call {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var c Call
	for time.Now().Before(deadline) {
		var err error
		if c, err = d.e.Get(id); err == nil && c.State == want {
			return c
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: call %s in state %q (%s), want %q", d.id, id, c.State, c.Reason, want)
	return c
}

// waitIncoming waits for a ringing incoming call on d.
func waitIncoming(t *testing.T, d *device) Call {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, c := range d.e.List() {
			if c.Direction == Incoming && c.State == StateRinging {
				return c
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: no incoming call rings", d.id)
	return Call{}
}

func testdata(name string) string { return filepath.Join("testdata", name) }

func ivfFrames(t *testing.T, p string) int {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, h, err := ivfreader.NewWith(f)
	if err != nil {
		t.Fatalf("%s: not IVF: %v", p, err)
	}
	if h.FourCC != "VP80" {
		t.Fatalf("%s: FourCC %q", p, h.FourCC)
	}
	n := 0
	for {
		frame, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) || (err == nil && frame == nil) {
			return n
		}
		if err != nil {
			t.Fatalf("%s: frame %d: %v", p, n, err)
		}
		n++
	}
}

// oggPackets counts the Opus packets (pages after the two headers).
func oggPackets(t *testing.T, p string) int {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, h, err := oggreader.NewWith(f)
	if err != nil {
		t.Fatalf("%s: not Ogg/Opus: %v", p, err)
	}
	if h.SampleRate != 48000 {
		t.Fatalf("%s: sample rate %d", p, h.SampleRate)
	}
	n := 0
	for {
		page, _, err := r.ParseNextPage()
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatalf("%s: page %d: %v", p, n, err)
		}
		if !strings.HasPrefix(string(page), "OpusTags") && len(page) > 0 {
			n++
		}
	}
}

// The samples' frame counts (testdata/README.md says how they were made).
const (
	audioPackets = 151 // 3 s of 20 ms Opus packets, and the encoder's lead-in
	videoFrames  = 45  // 3 s at 15 fps
	screenFrames = 30  // 3 s at 10 fps
)

// within says whether got is within 10 % below want (frames lost while
// the connection settles) and never above it.
func within(got, want int) bool { return got >= want*9/10 && got <= want }

// TestCall: Alice calls Bob; it rings; Bob answers; audio and video go
// both ways from the test files and are recorded as valid Ogg and IVF
// holding the files' frames (within 10 %); both show the same
// verification code; Alice hangs up and the call ends on both sides.
func TestCall(t *testing.T) {
	n := newNetwork(t)
	alice, bob := n.add("alice", "A1", nil), n.add("bob", "B1", nil)
	ctx := context.Background()
	recA, recB := t.TempDir(), t.TempDir()
	c, err := alice.e.Start(ctx, "bob", Media{Audio: testdata("audio.ogg"), Video: testdata("video.ivf"), Record: recA})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.ID) != 32 || c.Direction != Outgoing {
		t.Fatalf("started %+v", c)
	}
	waitState(t, alice, c.ID, StateRinging)
	in := waitIncoming(t, bob)
	if in.ID != c.ID || in.Peer != "alice" || !in.Video {
		t.Fatalf("incoming %+v", in)
	}
	if _, err := bob.e.Answer(ctx, c.ID, Media{Audio: testdata("audio.ogg"), Video: testdata("video.ivf"), Record: recB}); err != nil {
		t.Fatal(err)
	}
	ca, cb := waitState(t, alice, c.ID, StateAccepted), waitState(t, bob, c.ID, StateAccepted)
	if ca.Verification == "" || ca.Verification != cb.Verification {
		t.Fatalf("verification codes %q and %q", ca.Verification, cb.Verification)
	}
	if !regexp.MustCompile(`^(\S+ ){4}\d{6}$`).MatchString(ca.Verification) {
		t.Fatalf("verification code %q", ca.Verification)
	}
	// The files last 3 s; wait until both sides have sent them all.
	deadline := time.Now().Add(20 * time.Second)
	for {
		a, _ := alice.e.Get(c.ID)
		b, _ := bob.e.Get(c.ID)
		if frames(a, "sent") == audioPackets+videoFrames && frames(b, "sent") == audioPackets+videoFrames {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not all sent: %+v / %+v", a.Tracks, b.Tracks)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // the last packets in flight
	if err := alice.e.Hangup(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	ea := waitState(t, alice, c.ID, StateEnded)
	waitState(t, bob, c.ID, StateEnded)
	if ea.EndedAt == nil || ea.AcceptedAt == nil {
		t.Fatalf("times: %+v", ea)
	}
	for _, tr := range ea.Tracks {
		if tr.Packets == 0 {
			t.Errorf("alice's track %s %s: no packets", tr.Direction, tr.Name)
		}
	}
	for _, dir := range []string{recA, recB} {
		if got := ivfFrames(t, filepath.Join(dir, "video.ivf")); !within(got, videoFrames) {
			t.Errorf("%s: %d video frames recorded, want %d (−10 %%)", dir, got, videoFrames)
		}
		if got := oggPackets(t, filepath.Join(dir, "audio.ogg")); !within(got, audioPackets) {
			t.Errorf("%s: %d audio packets recorded, want %d (−10 %%)", dir, got, audioPackets)
		}
	}
	if err := alice.e.Hangup(ctx, c.ID); !errors.Is(err, ErrState) {
		t.Fatalf("hanging up twice: %v", err)
	}
}

func frames(c Call, dir string) int {
	n := 0
	for _, t := range c.Tracks {
		if t.Direction == dir {
			n += int(t.Frames)
		}
	}
	return n
}

// TestCallStates: declined, busy and missed calls end in those states on
// both sides.
func TestCallStates(t *testing.T) {
	n := newNetwork(t)
	short := func(c *Config) { c.RingTimeout = 1500 * time.Millisecond }
	alice, bob, carol := n.add("alice", "A1", short), n.add("bob", "B1", short), n.add("carol", "C1", short)
	ctx := context.Background()

	c, err := alice.e.Start(ctx, "bob", Media{})
	if err != nil {
		t.Fatal(err)
	}
	waitIncoming(t, bob)
	if err := bob.e.Decline(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	waitState(t, alice, c.ID, StateDeclined)
	waitState(t, bob, c.ID, StateDeclined)

	// Bob in a call with Carol: Alice's call is busy.
	cc, err := carol.e.Start(ctx, "bob", Media{})
	if err != nil {
		t.Fatal(err)
	}
	waitIncoming(t, bob)
	if _, err := bob.e.Answer(ctx, cc.ID, Media{}); err != nil {
		t.Fatal(err)
	}
	waitState(t, carol, cc.ID, StateAccepted)
	c2, err := alice.e.Start(ctx, "bob", Media{})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, alice, c2.ID, StateBusy)
	waitState(t, bob, c2.ID, StateBusy)
	if _, err := bob.e.Start(ctx, "alice", Media{}); !errors.Is(err, ErrBusy) {
		t.Fatalf("a second call from a busy engine: %v", err)
	}
	if err := carol.e.Hangup(ctx, cc.ID); err != nil {
		t.Fatal(err)
	}
	waitState(t, bob, cc.ID, StateEnded)

	// Nobody answers: missed on both sides after the ring timeout.
	c3, err := alice.e.Start(ctx, "bob", Media{})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, bob, c3.ID, StateRinging)
	waitState(t, alice, c3.ID, StateMissed)
	waitState(t, bob, c3.ID, StateMissed)
	if _, err := bob.e.Answer(ctx, c3.ID, Media{}); !errors.Is(err, ErrState) {
		t.Fatalf("answering a missed call: %v", err)
	}

	// An offer that arrives after the ring timeout (a mailbox held it)
	// does not ring: it is a missed call at once.
	late := Signal{Call: newCallID(), Type: SignalOffer, SDP: "v=0\r\na=fingerprint:sha-256 AA:BB\r\n", At: time.Now().Add(-time.Minute).UnixMilli()}
	if err := bob.e.Handle(ctx, "alice", "A1", &late); err != nil {
		t.Fatal(err)
	}
	if got, err := bob.e.Get(late.Call); err != nil || got.State != StateMissed {
		t.Fatalf("a late offer: %+v (%v)", got, err)
	}

	// Calls list newest first.
	list := bob.e.List()
	for i := 1; i < len(list); i++ {
		if list[i].StartedAt.After(list[i-1].StartedAt) {
			t.Fatalf("calls not newest first: %v then %v", list[i-1].StartedAt, list[i].StartedAt)
		}
	}
}

// TestCallFingerprintMITM: a man in the middle of the signalling (as a
// relay would be without the end-to-end session) replaces the DTLS
// fingerprint in Bob's answer with his own: the call fails and no media
// reaches either side; the codes the two sides compute differ.
func TestCallFingerprintMITM(t *testing.T) {
	n := newNetwork(t)
	alice, bob := n.add("alice", "A1", nil), n.add("bob", "B1", nil)
	// Mallory's certificate, whose fingerprint goes into the answer.
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	pc.Close()
	if err != nil {
		t.Fatal(err)
	}
	fp := regexp.MustCompile(`a=fingerprint:[^\r\n]+`)
	mallory := fp.FindString(offer.SDP)
	n.tamper = func(from string, s *Signal) {
		if s.Type == SignalAnswer {
			s.SDP = fp.ReplaceAllString(s.SDP, mallory)
		}
	}
	ctx := context.Background()
	c, err := alice.e.Start(ctx, "bob", Media{Audio: testdata("audio.ogg")})
	if err != nil {
		t.Fatal(err)
	}
	waitIncoming(t, bob)
	cb, err := bob.e.Answer(ctx, c.ID, Media{Audio: testdata("audio.ogg")})
	if err != nil {
		t.Fatal(err)
	}
	got := waitState(t, alice, c.ID, StateFailed)
	if got.Verification == cb.Verification {
		t.Fatal("the codes agree although the answer was changed")
	}
	final, _ := bob.e.Get(c.ID)
	for _, side := range []Call{got, final} {
		for _, tr := range side.Tracks {
			if tr.Direction == "received" && tr.Packets > 0 {
				t.Fatalf("ATTACK WORKS: media received through a substituted key: %+v", side.Tracks)
			}
		}
	}
}

// TestCallScreenShare: a screen track is added to a running call and
// removed again (two renegotiations); Bob receives and records it.
func TestCallScreenShare(t *testing.T) {
	n := newNetwork(t)
	alice, bob := n.add("alice", "A1", nil), n.add("bob", "B1", nil)
	ctx := context.Background()
	rec := t.TempDir()
	c, err := alice.e.Start(ctx, "bob", Media{Audio: testdata("audio.ogg")})
	if err != nil {
		t.Fatal(err)
	}
	waitIncoming(t, bob)
	if _, err := bob.e.Answer(ctx, c.ID, Media{Record: rec}); err != nil {
		t.Fatal(err)
	}
	waitState(t, alice, c.ID, StateAccepted)
	if _, err := bob.e.Start(ctx, "alice", Media{Audio: testdata("video.ivf")}); !errors.Is(err, ErrMedia) {
		t.Fatalf("video given as audio: %v", err)
	}
	if err := alice.e.Share(ctx, c.ID, testdata("audio.ogg")); !errors.Is(err, ErrMedia) {
		t.Fatalf("sharing audio: %v", err)
	}
	if err := alice.e.Share(ctx, c.ID, testdata("screen.ivf")); err != nil {
		t.Fatal(err)
	}
	if err := alice.e.Share(ctx, c.ID, testdata("screen.ivf")); !errors.Is(err, ErrState) {
		t.Fatalf("sharing twice: %v", err)
	}
	// The screen arrives at Bob as a track of its own.
	screen := func() (Track, bool) {
		b, _ := bob.e.Get(c.ID)
		for _, tr := range b.Tracks {
			if tr.Direction == "received" && tr.Kind == "video" {
				return tr, true
			}
		}
		return Track{}, false
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		a, _ := alice.e.Get(c.ID)
		if tr, ok := screen(); ok && tr.Packets > 0 && frames(a, "sent") >= audioPackets+screenFrames {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no screen at Bob: %+v", a.Tracks)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if err := alice.e.Unshare(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	// Renegotiated: Bob's screen recording is closed and holds the frames.
	tr, _ := screen()
	deadline = time.Now().Add(10 * time.Second)
	for {
		if got := ivfFramesQuiet(tr.File); within(got, screenFrames) {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("screen recording %s: %d frames, want %d (−10 %%)", tr.File, got, screenFrames)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if a, _ := alice.e.Get(c.ID); a.Sharing || a.State != StateAccepted {
		t.Fatalf("after unsharing: %+v", a)
	}
	if err := alice.e.Unshare(ctx, c.ID); !errors.Is(err, ErrState) {
		t.Fatalf("unsharing twice: %v", err)
	}
	// Bob shares back in the same call (the callee offers this time).
	if err := bob.e.Share(ctx, c.ID, testdata("screen.ivf")); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(20 * time.Second)
	for {
		a, _ := alice.e.Get(c.ID)
		var got uint64
		for _, tr := range a.Tracks {
			if tr.Direction == "received" && tr.Kind == "video" {
				got += tr.Packets
			}
		}
		if got > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Bob's screen never reached Alice: %+v", a.Tracks)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ivfFramesQuiet counts an IVF file's frames, -1 when unreadable.
func ivfFramesQuiet(p string) int {
	f, err := os.Open(p)
	if err != nil {
		return -1
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		return -1
	}
	n := 0
	for {
		frame, _, err := r.ParseNextFrame()
		if err != nil || frame == nil {
			return n
		}
		n++
	}
}

// TestCallDevices: a call rings on both of Bob's devices; the second
// answers and takes it; the first stops ringing. A third party's signal
// for the call is ignored.
func TestCallDevices(t *testing.T) {
	n := newNetwork(t)
	alice := n.add("alice", "A1", nil)
	b1, b2 := n.add("bob", "B1", nil), n.add("bob", "B2", nil)
	ctx := context.Background()
	c, err := alice.e.Start(ctx, "bob", Media{Audio: testdata("audio.ogg")})
	if err != nil {
		t.Fatal(err)
	}
	waitIncoming(t, b1)
	waitIncoming(t, b2)
	// Mallory, who knows the call's ID, tries to hang it up.
	bogus := Signal{Call: c.ID, Type: SignalDecline, At: time.Now().UnixMilli()}
	if err := alice.e.Handle(ctx, "mallory", "M1", &bogus); !errors.Is(err, ErrNoCall) {
		t.Fatalf("a stranger's signal: %v", err)
	}
	if _, err := b2.e.Answer(ctx, c.ID, Media{Audio: testdata("audio.ogg")}); err != nil {
		t.Fatal(err)
	}
	a := waitState(t, alice, c.ID, StateAccepted)
	if a.Device != "B2" {
		t.Fatalf("taken by %q", a.Device)
	}
	e1 := waitState(t, b1, c.ID, StateEnded)
	if e1.Reason != "answered on another device" {
		t.Fatalf("B1: %+v", e1)
	}
	if _, err := b1.e.Answer(ctx, c.ID, Media{}); !errors.Is(err, ErrState) {
		t.Fatalf("B1 answering after B2: %v", err)
	}
	// B1, Bob's other device, is not on the call: its hangup (a node
	// modified, or lagging) does not end it.
	stray := Signal{Call: c.ID, Type: SignalHangup, At: time.Now().UnixMilli()}
	if err := alice.e.Handle(ctx, "bob", "B1", &stray); err != nil {
		t.Fatal(err)
	}
	if a, _ := alice.e.Get(c.ID); a.State != StateAccepted {
		t.Fatalf("ATTACK WORKS: a device not on the call ended it: %+v", a)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := b2.e.Get(c.ID)
		var got uint64
		for _, tr := range b.Tracks {
			if tr.Direction == "received" {
				got += tr.Packets
			}
		}
		if got > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no media at B2: %+v", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSignalRefusals: signals breaking the limits are refused.
func TestSignalRefusals(t *testing.T) {
	id := newCallID()
	mid := "0"
	cases := map[string]Signal{
		"bad ID":            {Call: "xyz", Type: SignalHangup},
		"upper-case ID":     {Call: strings.ToUpper(id), Type: SignalHangup},
		"unknown type":      {Call: id, Type: "teleport"},
		"offer without SDP": {Call: id, Type: SignalOffer},
		"huge SDP":          {Call: id, Type: SignalAnswer, SDP: strings.Repeat("a", MaxSDP+1)},
		"empty candidate":   {Call: id, Type: SignalCandidate},
		"huge candidate":    {Call: id, Type: SignalCandidate, Candidate: &webrtc.ICECandidateInit{Candidate: strings.Repeat("c", MaxCandidate+1), SDPMid: &mid}},
		"SDP in a hangup":   {Call: id, Type: SignalHangup, SDP: "v=0"},
		"taken by nobody":   {Call: id, Type: SignalTaken},
		"negative time":     {Call: id, Type: SignalHangup, At: -1},
	}
	for name, s := range cases {
		if _, err := s.Marshal(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: marshalled (%v)", name, err)
		}
	}
	for _, b := range []string{"", "{", `{"call":1}`, fmt.Sprintf(`{"call":%q,"type":"hangup","at":"x"}`, id), strings.Repeat(" ", maxSignal+1)} {
		if _, err := ParseSignal([]byte(b)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%.20q parsed (%v)", b, err)
		}
	}
}

// FuzzParseSignal: signals from peers decode or fail, never panic, and
// what decodes encodes and decodes to the same.
func FuzzParseSignal(f *testing.F) {
	mid, idx := "0", uint16(0)
	for _, s := range []Signal{
		{Call: newCallID(), Type: SignalOffer, SDP: "v=0\r\na=fingerprint:sha-256 AA\r\n", Video: true, At: 1},
		{Call: newCallID(), Type: SignalCandidate, Candidate: &webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host", SDPMid: &mid, SDPMLineIndex: &idx}},
		{Call: newCallID(), Type: SignalTaken, Device: "B2"},
	} {
		b, err := s.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSignal(b)
		if err != nil {
			return
		}
		again, err := s.Marshal()
		if err != nil {
			t.Fatalf("re-encoding a parsed signal: %v", err)
		}
		if _, err := ParseSignal(again); err != nil {
			t.Fatalf("re-parsing: %v", err)
		}
	})
}

// testWriter sends log lines to the test's log until the test ends:
// Pion runs state callbacks on goroutines of their own, and one that
// logs after the test's end races with the testing package (a CI run
// under -race).
type testWriter struct {
	t    *testing.T
	mu   *sync.Mutex
	done *bool
}

func newTestWriter(t *testing.T) testWriter {
	w := testWriter{t: t, mu: new(sync.Mutex), done: new(bool)}
	t.Cleanup(func() { // registered first: runs after every other cleanup
		w.mu.Lock()
		*w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !*w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

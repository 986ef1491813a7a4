package sfu_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/peergram/peergram/calls"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/relay/sfu"
)

// fakeBrowser is the client end of a bridge: a Pion peer connection
// that answers the daemon's offers, sends pattern frames as its
// microphone and counts what it receives per stream (sending device).
type fakeBrowser struct {
	t  *testing.T
	pc *webrtc.PeerConnection
	mu sync.Mutex
	// per stream ID: packets, and those holding the test pattern
	got, plain map[string]int
	streams    map[string]bool
}

func newFakeBrowser(t *testing.T) *fakeBrowser {
	se := webrtc.SettingEngine{}
	loopback(&se)
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	b := &fakeBrowser{t: t, pc: pc, got: map[string]int{}, plain: map[string]int{}, streams: map[string]bool{}}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.got[tr.StreamID()]++
			if bytes.Contains(p.Payload, pattern) {
				b.plain[tr.StreamID()]++
			}
			b.mu.Unlock()
		}
	})
	return b
}

// answer answers the daemon's offer; the first answer adds the
// microphone, whose frames carry the pattern.
func (b *fakeBrowser) answer(o calls.BridgeOffer, mic bool) calls.BridgeSignal {
	b.t.Helper()
	if err := b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: o.SDP}); err != nil {
		b.t.Fatal(err)
	}
	if mic {
		track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, "mic", "browser")
		if err != nil {
			b.t.Fatal(err)
		}
		if _, err := b.pc.AddTrack(track); err != nil {
			b.t.Fatal(err)
		}
		go func() {
			for i := 0; ; i++ {
				frame := append(append([]byte{0xfc}, pattern...), fmt.Sprintf("-browser-%05d", i)...)
				if err := track.WriteSample(media.Sample{Data: frame, Duration: 20 * time.Millisecond}); err != nil {
					return
				}
				if b.pc.ConnectionState() == webrtc.PeerConnectionStateClosed {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	ans, err := b.pc.CreateAnswer(nil)
	if err != nil {
		b.t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(b.pc)
	if err := b.pc.SetLocalDescription(ans); err != nil {
		b.t.Fatal(err)
	}
	<-gathered
	return calls.BridgeSignal{Type: calls.SignalAnswer, SDP: b.pc.LocalDescription().SDP, Version: o.Version}
}

func (b *fakeBrowser) counts(stream string) (got, plain int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.got[stream], b.plain[stream]
}

// TestGroupCallBridge: a client (a browser, here a Pion peer connection
// standing in for one) takes part in a group call through its daemon's
// bridge. What it sends is sealed by the daemon — the SFU never sees the
// pattern in it — and opens at the other members; what they send reaches
// it opened, one stream per sending device, added by a new offer as
// participants come and taken off as they go. Answers to an old offer,
// unknown calls and daemon-run calls are refused.
func TestGroupCallBridge(t *testing.T) {
	relay := newHost(t)
	ms := &members{dev: map[identity.DeviceID]identity.AccountID{}}
	tp := &tap{}
	srv, err := sfu.New(sfu.Config{Host: relay, Members: ms, Settings: loopback, Tap: tp.see})
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
	// The client's daemon: its engine hands the bridge's new offers on.
	c := newMember(t, relay, ms)
	offers := make(chan calls.BridgeOffer, 16)
	c.e.Close()
	c.e, err = calls.NewEngine(calls.Config{Signaller: nopSignaller{}, Device: c.dev.ID().String(), Settings: loopback,
		BridgeOffers: func(o calls.BridgeOffer) { offers <- o }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.e.Close() })

	// Both are in the call before the client: their tracks reach the
	// bridge together, the second while the offer for the first waits.
	for _, m := range []*member{a, b} {
		if _, err := m.join(ctx, relay, group, call, calls.Media{Audio: audio}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.join(ctx, relay, group, call, calls.Media{Client: true, Record: ""}); err == nil || !errors.Is(err, calls.ErrMedia) {
		t.Fatalf("a client's join that names a record directory: %v", err)
	}
	conn, err := sfu.Dial(ctx, c.h, relay.ID(), group, call, c.dev, c.cert)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.e.JoinGroup(ctx, call, fmt.Sprintf("%x", group), conn, calls.Media{Client: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.e.BridgeOffer(call); !errors.Is(err, calls.ErrState) {
		t.Errorf("a bridge offer of a call whose media runs in the daemon: %v", err)
	}
	if _, err := c.e.BridgeOffer("no-such-call"); !errors.Is(err, calls.ErrNoCall) {
		t.Errorf("a bridge offer of an unknown call: %v", err)
	}
	first, err := c.e.BridgeOffer(call)
	if err != nil {
		t.Fatal(err)
	}
	br := newFakeBrowser(t)
	ans := br.answer(first, true)
	stale := ans
	stale.Version = first.Version + 7
	if err := c.e.BridgeSignal(call, stale); !errors.Is(err, calls.ErrState) {
		t.Errorf("an answer to an offer never made: %v", err)
	}
	if err := c.e.BridgeSignal(call, calls.BridgeSignal{Type: calls.SignalOffer, SDP: ans.SDP}); !errors.Is(err, calls.ErrMalformed) {
		t.Errorf("a client's offer on the bridge: %v", err)
	}
	if err := c.e.BridgeSignal(call, ans); err != nil {
		t.Fatal(err)
	}
	if err := c.e.BridgeSignal(call, ans); !errors.Is(err, calls.ErrState) {
		t.Errorf("the same answer twice: %v", err)
	}
	// Every later offer (a participant's track came or went) is answered.
	// While hold is set, an offer waits until release is closed.
	var hold atomic.Bool
	held, release := make(chan int, 1), make(chan struct{})
	go func() {
		for {
			select {
			case o := <-offers:
				if hold.Load() {
					held <- o.Version
					<-release
				}
				if err := c.e.BridgeSignal(call, br.answer(o, false)); err != nil {
					t.Errorf("answering offer %d: %v", o.Version, err)
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	waitFor(t, 10*time.Second, "the bridge to connect", func() bool {
		return br.pc.ConnectionState() == webrtc.PeerConnectionStateConnected
	})
	if err := c.e.BridgeSignal(call, calls.BridgeSignal{Type: calls.ClientConnected}); err != nil {
		t.Fatal(err)
	}
	shareKeys(t, call, a, b, c)

	cdev, adev, bdev := c.dev.ID().String(), a.dev.ID().String(), b.dev.ID().String()
	waitFor(t, 20*time.Second, "the client's audio at both members, and theirs at the client", func() bool {
		for _, m := range []*member{a, b} {
			g, _ := m.e.GetGroup(call)
			if f, _, _ := received(g, cdev, "audio"); f < 50 {
				return false
			}
		}
		for _, d := range []string{adev, bdev} {
			if _, plain := br.counts(d); plain < 50 {
				return false
			}
		}
		return true
	})
	for i, m := range []*member{a, b} {
		g, _ := m.e.GetGroup(call)
		if f, p, bad := received(g, cdev, "audio"); bad > 0 || f > p {
			t.Errorf("member %d from the client: %d frames, %d packets, %d undecryptable", i, f, p, bad)
		}
	}
	gc, _ := c.e.GetGroup(call)
	for _, tr := range gc.Tracks {
		if tr.Direction == "sent" && tr.Kind == "audio" && tr.Frames < 50 {
			t.Errorf("the client's daemon sealed %d of its frames", tr.Frames)
		}
	}
	if o, err := c.e.BridgeOffer(call); err != nil || len(o.Tracks) != 2 {
		t.Errorf("the bridge's offer lists %d tracks (%v), want the two members' audio", len(o.Tracks), err)
	}

	// A leaves, and while the client has not yet answered the offer that
	// drops A, B leaves too: once that offer is answered the bridge
	// offers again, without B.
	hold.Store(true)
	if _, err := a.e.LeaveGroup(ctx, call); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("no offer dropped the leaver's track")
	}
	hold.Store(false)
	if _, err := b.e.LeaveGroup(ctx, call); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the bridge to take B's track off", func() bool {
		gc, _ := c.e.GetGroup(call)
		return len(gc.Participants) == 1
	})
	time.Sleep(200 * time.Millisecond)
	close(release)
	waitFor(t, 10*time.Second, "the bridge to drop both leavers' tracks", func() bool {
		o, err := c.e.BridgeOffer(call)
		return err == nil && len(o.Tracks) == 0 &&
			!strings.Contains(o.SDP, "msid:"+adev) && !strings.Contains(o.SDP, "msid:"+bdev)
	})
	got1, _ := br.counts(adev)
	time.Sleep(500 * time.Millisecond)
	if got2, _ := br.counts(adev); got2 > got1+5 {
		t.Errorf("the client still gets the leaver's audio: %d then %d packets", got1, got2)
	}

	// The client leaves: the bridge closes.
	if _, err := c.e.LeaveGroup(ctx, call); err != nil {
		t.Fatal(err)
	}
	if err := c.e.BridgeSignal(call, calls.BridgeSignal{Type: calls.ClientConnected}); !errors.Is(err, calls.ErrNoCall) {
		t.Errorf("a signal after leaving: %v", err)
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if tp.leaks > 0 {
		t.Errorf("the SFU saw the test pattern in %d of %d packets", tp.leaks, tp.packets)
	}
}

// TestGroupCallBridgeNeverConnected: a client that joins and never
// connects its bridge (a tab closed at once) does not keep the device in
// the call.
func TestGroupCallBridgeNeverConnected(t *testing.T) {
	relay := newHost(t)
	ms := &members{dev: map[identity.DeviceID]identity.AccountID{}}
	srv, err := sfu.New(sfu.Config{Host: relay, Members: ms, Settings: loopback})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	var group [32]byte
	rand.Read(group[:])
	call := newCallID()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := newMember(t, relay, ms)
	c.e.Close()
	c.e, err = calls.NewEngine(calls.Config{Signaller: nopSignaller{}, Device: c.dev.ID().String(), Settings: loopback, RingTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.e.Close() })
	conn, err := sfu.Dial(ctx, c.h, relay.ID(), group, call, c.dev, c.cert)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.e.JoinGroup(ctx, call, fmt.Sprintf("%x", group), conn, calls.Media{Client: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.e.BridgeSignal(call, calls.BridgeSignal{Type: calls.ClientConnected}); !errors.Is(err, calls.ErrState) {
		t.Errorf("a client that says it is connected before it is: %v", err)
	}
	waitFor(t, 5*time.Second, "the call to end", func() bool {
		g, _ := c.e.GetGroup(call)
		return g.State == calls.GroupFailed
	})
}

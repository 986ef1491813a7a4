package calls

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// chanSignaller hands the victim's signals to the test (the attacker).
type chanSignaller struct{ ch chan Signal }

func (s chanSignaller) Signal(_ context.Context, _ string, sig Signal) error {
	s.ch <- sig
	return nil
}

// hostile is a raw Pion peer of Mallory's that speaks the signalling.
type hostile struct {
	t      *testing.T
	pc     *webrtc.PeerConnection
	victim *Engine
	out    chan Signal
	callID string
	mu     sync.Mutex
	tracks []*webrtc.TrackLocalStaticSample
	sends  []*webrtc.RTPSender
}

func newHostile(t *testing.T) (*hostile, *Engine, chan Signal) {
	out := make(chan Signal, 4096)
	e, err := NewEngine(Config{Signaller: chanSignaller{out}, Device: "B1", Settings: loopback, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, PayloadType: 111}, webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	loopback(&se)
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	h := &hostile{t: t, pc: pc, victim: e, out: out, callID: newCallID()}
	go func() {
		for s := range out {
			switch s.Type {
			case SignalAnswer:
				if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: s.SDP}); err != nil {
					t.Logf("mallory: answer: %v", err)
				}
			case SignalCandidate:
				pc.AddICECandidate(*s.Candidate)
			}
		}
	}()
	return h, e, out
}

func (h *hostile) addTracks(prefix string, n int) {
	for i := range n {
		tr, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, fmt.Sprintf("%s%d", prefix, i), "s")
		if err != nil {
			h.t.Fatal(err)
		}
		tx, err := h.pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			h.t.Fatal(err)
		}
		h.mu.Lock()
		h.tracks = append(h.tracks, tr)
		h.sends = append(h.sends, tx.Sender())
		h.mu.Unlock()
	}
}

// offer sends a (full-gathered) offer to the victim.
func (h *hostile) offer(ctx context.Context, opening bool) int {
	o, err := h.pc.CreateOffer(nil)
	if err != nil {
		h.t.Fatal(err)
	}
	g := webrtc.GatheringCompletePromise(h.pc)
	if err := h.pc.SetLocalDescription(o); err != nil {
		h.t.Fatal(err)
	}
	<-g
	sdp := h.pc.LocalDescription().SDP
	s := &Signal{Call: h.callID, Type: SignalOffer, SDP: sdp, At: time.Now().UnixMilli()}
	if err := h.victim.Handle(ctx, "mallory", "M1", s); err != nil {
		h.t.Fatalf("offer of %d bytes: %v", len(sdp), err)
	}
	return len(sdp)
}

// pump writes Opus samples on every track until ctx ends.
func (h *hostile) pump(ctx context.Context) {
	go func() {
		for ctx.Err() == nil {
			h.mu.Lock()
			ts := append([]*webrtc.TrackLocalStaticSample(nil), h.tracks...)
			h.mu.Unlock()
			for _, tr := range ts {
				tr.WriteSample(media.Sample{Data: []byte{0xfc, 0xff, 0xfe}, Duration: 20 * time.Millisecond})
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
}

func countFiles(t *testing.T, dir string) []string {
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestReview3RecordTraversal: track IDs with path separators and dots
// cannot leave the record directory (refused: names are sanitised).
func TestReview3RecordTraversal(t *testing.T) {
	parent := t.TempDir()
	rec := filepath.Join(parent, "rec")
	os.Mkdir(rec, 0o700)
	h, e, _ := newHostile(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, id := range []string{"../escape", "..", "/tmp/abs", "a/../../b", "..\\win", ".hidden"} {
		tr, _ := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, id, "s")
		if _, err := h.pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
		h.tracks = append(h.tracks, tr)
	}
	h.offer(ctx, true)
	if _, err := e.Answer(ctx, h.callID, Media{Record: rec}); err != nil {
		t.Fatal(err)
	}
	h.pump(ctx)
	time.Sleep(3 * time.Second)
	c, _ := e.Get(h.callID)
	t.Logf("call %s, tracks %+v", c.State, c.Tracks)
	for _, f := range countFiles(t, parent) {
		if filepath.Dir(f) != rec {
			t.Fatalf("ATTACK WORKS: a recording outside the record directory: %s", f)
		}
	}
}

// TestReview3RecordFlood: a caller's offers (the opening one and
// renegotiations, which the callee always takes from the caller) add
// track after track; each gets its own recording file, open file and
// goroutine, with no limit.
func TestReview3RecordFlood(t *testing.T) {
	rec := t.TempDir()
	h, e, _ := newHostile(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const perRound = 60
	h.addTracks("a", perRound)
	size := h.offer(ctx, true)
	t.Logf("opening offer with %d tracks: %d bytes", perRound, size)
	if _, err := e.Answer(ctx, h.callID, Media{Record: rec}); err != nil {
		t.Fatal(err)
	}
	h.pump(ctx)
	time.Sleep(2 * time.Second)
	for round := 1; round <= 3; round++ {
		// Swap every track for a new one and re-offer: transceivers are
		// reused (the SDP does not grow) but each new track is a new file.
		h.mu.Lock()
		for i, s := range h.sends {
			tr, _ := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, fmt.Sprintf("r%dt%d", round, i), fmt.Sprintf("s%d", round))
			if err := h.pc.RemoveTrack(s); err != nil {
				t.Fatal(err)
			}
			_ = tr
		}
		h.tracks, h.sends = nil, nil
		h.mu.Unlock()
		h.offer(ctx, false)
		time.Sleep(500 * time.Millisecond)
		for i := range perRound {
			tr, _ := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, fmt.Sprintf("r%dt%d", round, i), fmt.Sprintf("s%d", round))
			snd, err := h.pc.AddTrack(tr) // reuses a free transceiver
			if err != nil {
				t.Fatal(err)
			}
			h.mu.Lock()
			h.tracks, h.sends = append(h.tracks, tr), append(h.sends, snd)
			h.mu.Unlock()
		}
		size = h.offer(ctx, false)
		t.Logf("round %d: offer of %d bytes", round, size)
		time.Sleep(2 * time.Second)
	}
	files := countFiles(t, rec)
	c, _ := e.Get(h.callID)
	t.Logf("call %s, %d tracks received", c.State, len(c.Tracks))
	if len(files) > 4*perRound-10 {
		names := []string{}
		for _, f := range files[:5] {
			names = append(names, filepath.Base(f))
		}
		t.Fatalf("ATTACK WORKS: one call made %d recording files (e.g. %s) and %d received tracks; no limit on tracks or files", len(files), strings.Join(names, ", "), len(c.Tracks))
	}
	t.Logf("%d files", len(files))
}

// TestReview3RecordOverwrite: record files are named after the peer's
// track IDs only (not the call): a peer picks a name that already exists
// in the record directory (a recording of an earlier call with someone
// else, or any <name>.ogg) and the file is truncated and overwritten.
func TestReview3RecordOverwrite(t *testing.T) {
	rec := t.TempDir()
	precious := filepath.Join(rec, "audio.ogg") // Carol's call, recorded earlier
	if err := os.WriteFile(precious, []byte("carol's recording"), 0o600); err != nil {
		t.Fatal(err)
	}
	h, e, _ := newHostile(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr, _ := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, "audio", "s")
	if _, err := h.pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	h.tracks = append(h.tracks, tr)
	h.offer(ctx, true)
	if _, err := e.Answer(ctx, h.callID, Media{Record: rec}); err != nil {
		t.Fatal(err)
	}
	h.pump(ctx)
	time.Sleep(2 * time.Second)
	b, _ := os.ReadFile(precious)
	if string(b) != "carol's recording" {
		t.Fatalf("ATTACK WORKS: the peer's track \"audio\" overwrote the existing %s (now %d bytes, starts %q)", precious, len(b), b[:min(8, len(b))])
	}
}

package main

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"

	"github.com/peergram/peergram/calls"
	"github.com/peergram/peergram/node/chat"
)

// callAudio is calls/testdata/audio.ogg (3 s of Ogg/Opus; its README
// says how it was made), the media both sides of C2 send.
//
//go:embed testdata/audio.ogg
var callAudio []byte

// c2Rounds is how many calls each side of C2 makes per run.
const c2Rounds = 10

// runC2 measures call setup: from `POST /v1/calls` at Alice's daemon to
// the first audio packet at Bob's — the offer, candidates and answer
// going through both daemons' sealed sessions and outboxes, Bob's
// daemon answering (POST /v1/calls/{id}/answer) as soon as it rings —
// against the same two ends as raw Pion peer connections in this
// process exchanging offer and answer in memory (target ≤ 5×).
func runC2(ctx context.Context, cfg config) (string, error) {
	r, err := newDaemonRig(ctx)
	if err != nil {
		return "", err
	}
	defer r.close()
	dir, err := tempDir(&r.c)
	if err != nil {
		return "", err
	}
	audio := filepath.Join(dir, "audio.ogg")
	if err := os.WriteFile(audio, callAudio, 0o600); err != nil {
		return "", err
	}
	rounds := max(cfg.rounds*c2Rounds/3, c2Rounds)
	var o, a []float64
	for i := range rounds {
		steps := []func() (time.Duration, error){
			func() (time.Duration, error) { return r.callSetup(ctx, audio) },
			func() (time.Duration, error) { return rawCallSetup(ctx) },
		}
		if i%2 == 1 {
			steps[0], steps[1] = steps[1], steps[0]
		}
		var d [2]time.Duration
		for j, f := range steps {
			var err error
			if d[j], err = f(); err != nil {
				return "", fmt.Errorf("round %d: %w", i+1, err)
			}
		}
		if i%2 == 1 {
			d[0], d[1] = d[1], d[0]
		}
		o, a = append(o, float64(d[0].Microseconds())/1000), append(a, float64(d[1].Microseconds())/1000)
	}
	mo, ma := median(o), median(a)
	return fmt.Sprintf("C2 ratio=%.2f target=<=5 ours=%.1fms anchor=%.1fms calls=%d", mo/ma, mo, ma, rounds), nil
}

// callSetup makes one call Alice → Bob through the daemons' APIs and
// returns the time to Bob's first audio packet; then hangs up. Bob's
// side is driven by his event stream, as a UI is: the call event that
// says it rings, then the one that says media flows (media_at).
func (r *daemonRig) callSetup(ctx context.Context, audio string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	evs, err := r.bob.api.Events(ctx)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	c, err := r.alice.api.StartCall(ctx, "bob", calls.Media{Audio: audio})
	if err != nil {
		return 0, err
	}
	tStart := time.Since(start)
	wait := func(done func(*calls.Call) bool) error {
		for {
			select {
			case ev, ok := <-evs:
				if !ok {
					return fmt.Errorf("call %s: Bob's event stream ended", c.ID)
				}
				if ev.Type == chat.EventCall && ev.Call != nil && ev.Call.ID == c.ID && done(ev.Call) {
					return nil
				}
			case <-ctx.Done():
				return fmt.Errorf("call %s: %w", c.ID, ctx.Err())
			}
		}
	}
	if err := wait(func(c *calls.Call) bool { return c.State == calls.StateRinging }); err != nil {
		return 0, err
	}
	tRing := time.Since(start)
	if _, err := r.bob.api.AnswerCall(ctx, c.ID, calls.Media{Audio: audio}); err != nil {
		return 0, err
	}
	tAns := time.Since(start)
	if err := wait(func(c *calls.Call) bool { return c.MediaAt != nil }); err != nil {
		return 0, err
	}
	d := time.Since(start)
	if os.Getenv("C2DEBUG") != "" {
		fmt.Fprintf(os.Stderr, "start %v ring %v answered %v media %v\n", tStart, tRing, tAns, d)
	}
	if _, err := r.alice.api.HangupCall(ctx, c.ID); err != nil {
		return 0, err
	}
	if err := wait(func(c *calls.Call) bool { return c.State == calls.StateEnded }); err != nil {
		return 0, err
	}
	return d, nil
}

// rawCallSetup is the anchor: two Pion peer connections in this process,
// loopback ICE, the offer and answer (with all candidates) handed over
// in memory; the time from creating them to the first audio packet at
// the answerer.
func rawCallSetup(ctx context.Context) (time.Duration, error) {
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se))
	start := time.Now()
	caller, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return 0, err
	}
	defer caller.Close()
	callee, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return 0, err
	}
	defer callee.Close()
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, "audio", "raw")
	if err != nil {
		return 0, err
	}
	if _, err := caller.AddTrack(track); err != nil {
		return 0, err
	}
	got := make(chan struct{})
	callee.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if _, _, err := t.ReadRTP(); err == nil {
			close(got)
		}
		for {
			if _, _, err := t.ReadRTP(); err != nil {
				return
			}
		}
	})
	connected := make(chan struct{})
	caller.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			close(connected)
		}
	})
	offer, err := caller.CreateOffer(nil)
	if err != nil {
		return 0, err
	}
	gathered := webrtc.GatheringCompletePromise(caller)
	if err := caller.SetLocalDescription(offer); err != nil {
		return 0, err
	}
	<-gathered
	if err := callee.SetRemoteDescription(*caller.LocalDescription()); err != nil {
		return 0, err
	}
	answer, err := callee.CreateAnswer(nil)
	if err != nil {
		return 0, err
	}
	gathered = webrtc.GatheringCompletePromise(callee)
	if err := callee.SetLocalDescription(answer); err != nil {
		return 0, err
	}
	<-gathered
	if err := caller.SetRemoteDescription(*callee.LocalDescription()); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	select {
	case <-connected:
	case <-ctx.Done():
		return 0, errors.New("raw: not connected")
	}
	// Send the file's pages as the engine does until the first arrives.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		ogg, _, err := oggreader.NewWith(bytes.NewReader(callAudio))
		if err != nil {
			return
		}
		for {
			page, _, err := ogg.ParseNextPage()
			if err != nil {
				return
			}
			_ = track.WriteSample(media.Sample{Data: page, Duration: 20 * time.Millisecond})
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	select {
	case <-got:
		return time.Since(start), nil
	case <-ctx.Done():
		return 0, errors.New("raw: no packet")
	}
}

package sfu_test

// Review 7 (all fixed; each test now checks its fix): helpers for the
// attacks on the client group call bridge
// (calls/bridge.go). A real SFU, real engines and a Pion peer connection
// standing in for the browser, all on loopback.

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/peergram/peergram/calls"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/relay/sfu"
)

type r7Env struct {
	t          *testing.T
	relay      host.Host
	joinClient func() error
	joinMember func(*member, calls.Media) error
	ms         *members
	tp         *tap
	group      [32]byte
	call       string
	ctx        context.Context
	c          *member
	offers     chan calls.BridgeOffer
	mk         func() *member
}

// r7Setup starts an SFU and the client's daemon c (its engine's bridge
// offers go to env.offers); cfg may change c's engine config.
func r7Setup(t *testing.T, timeout time.Duration, cfg func(*calls.Config)) *r7Env {
	t.Helper()
	relay := newHost(t)
	ms := &members{dev: map[identity.DeviceID]identity.AccountID{}}
	tp := &tap{}
	srv, err := sfu.New(sfu.Config{Host: relay, Members: ms, Settings: loopback, Tap: tp.see})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	var group [32]byte
	rand.Read(group[:])
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	env := &r7Env{t: t, ms: ms, tp: tp, group: group, call: newCallID(), ctx: ctx, offers: make(chan calls.BridgeOffer, 256)}
	env.relay = relay
	env.mk = func() *member { return newMember(t, relay, ms) }
	c := newMember(t, relay, ms)
	c.e.Close()
	cc := calls.Config{Signaller: nopSignaller{}, Device: c.dev.ID().String(), Settings: loopback,
		BridgeOffers: func(o calls.BridgeOffer) {
			select {
			case env.offers <- o:
			default:
			}
		}}
	if cfg != nil {
		cfg(&cc)
	}
	c.e, err = calls.NewEngine(cc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.e.Close() })
	env.c = c
	env.joinClient = func() error {
		conn, err := sfu.Dial(ctx, c.h, relay.ID(), group, env.call, c.dev, c.cert)
		if err != nil {
			return err
		}
		_, err = c.e.JoinGroup(ctx, env.call, fmt.Sprintf("%x", group), conn, calls.Media{Client: true})
		return err
	}
	env.joinMember = func(m *member, media calls.Media) error {
		_, err := m.join(ctx, relay, group, env.call, media)
		return err
	}
	return env
}

// r7Browser is the client end of the bridge. jsLike makes it behave as
// node/webclient/app/groupcalls.js does: the microphone goes on the
// daemon's first audio m-line with the direction "sendonly".
type r7Browser struct {
	t      *testing.T
	pc     *webrtc.PeerConnection
	jsLike bool
	mic    *webrtc.TrackLocalStaticSample
	mu     sync.Mutex
	got    map[string]int // packets per stream (device)
	first  bool
}

func newR7Browser(t *testing.T, jsLike bool, settings func(*webrtc.SettingEngine)) *r7Browser {
	se := webrtc.SettingEngine{}
	loopback(&se)
	if settings != nil {
		settings(&se)
	}
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	b := &r7Browser{t: t, pc: pc, jsLike: jsLike, got: map[string]int{}, first: true}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			b.mu.Lock()
			b.got[tr.StreamID()]++
			b.mu.Unlock()
		}
	})
	return b
}

func (b *r7Browser) count(stream string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.got[stream]
}

// answer answers o; the first answer adds the microphone.
func (b *r7Browser) answer(o calls.BridgeOffer) (calls.BridgeSignal, error) {
	b.mu.Lock()
	first := b.first
	b.first = false
	b.mu.Unlock()
	if first {
		track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, "mic", "browser")
		if err != nil {
			return calls.BridgeSignal{}, err
		}
		b.mic = track
		if b.jsLike {
			// As the page: the mic's transceiver is sendonly.
			if _, err := b.pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
				return calls.BridgeSignal{}, err
			}
		}
	}
	if err := b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: o.SDP}); err != nil {
		return calls.BridgeSignal{}, err
	}
	if first {
		if !b.jsLike {
			if _, err := b.pc.AddTrack(b.mic); err != nil {
				return calls.BridgeSignal{}, err
			}
		}
		go func() {
			for i := 0; ; i++ {
				frame := append(append([]byte{0xfc}, pattern...), fmt.Sprintf("-r7-%05d", i)...)
				if err := b.mic.WriteSample(media.Sample{Data: frame, Duration: 20 * time.Millisecond}); err != nil {
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
		return calls.BridgeSignal{}, err
	}
	gathered := webrtc.GatheringCompletePromise(b.pc)
	if err := b.pc.SetLocalDescription(ans); err != nil {
		return calls.BridgeSignal{}, err
	}
	<-gathered
	return calls.BridgeSignal{Type: calls.SignalAnswer, SDP: b.pc.LocalDescription().SDP, Version: o.Version}, nil
}

// autoAnswer answers every offer env.offers delivers until ctx ends.
func (env *r7Env) autoAnswer(b *r7Browser) {
	go func() {
		for {
			select {
			case o := <-env.offers:
				s, err := b.answer(o)
				if err != nil {
					if env.ctx.Err() == nil {
						env.t.Logf("answering offer %d: %v", o.Version, err)
					}
					continue
				}
				if err := env.c.e.BridgeSignal(env.call, s); err != nil && env.ctx.Err() == nil {
					env.t.Logf("the answer to offer %d: %v", o.Version, err)
				}
			case <-env.ctx.Done():
				return
			}
		}
	}()
}

// connectBrowser answers the bridge's first offer, then every later one,
// and reports the client connected.
func (env *r7Env) connectBrowser(b *r7Browser) {
	t := env.t
	t.Helper()
	first, err := env.c.e.BridgeOffer(env.call)
	if err != nil {
		t.Fatal(err)
	}
	s, err := b.answer(first)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.c.e.BridgeSignal(env.call, s); err != nil {
		t.Fatal(err)
	}
	env.autoAnswer(b)
	waitFor(t, 10*time.Second, "the bridge to connect", func() bool {
		return b.pc.ConnectionState() == webrtc.PeerConnectionStateConnected
	})
	if err := env.c.e.BridgeSignal(env.call, calls.BridgeSignal{Type: calls.ClientConnected}); err != nil {
		t.Fatal(err)
	}
}

// sdpSections splits an SDP into its media sections, by mid.
func sdpSections(sdp string) map[string]string {
	out := map[string]string{}
	parts := strings.Split(sdp, "\r\nm=")
	for _, p := range parts[1:] {
		mid := ""
		for _, l := range strings.Split(p, "\r\n") {
			if strings.HasPrefix(l, "a=mid:") {
				mid = strings.TrimPrefix(l, "a=mid:")
			}
		}
		out[mid] = "m=" + p
	}
	return out
}

func sdpDirection(section string) string {
	for _, d := range []string{"sendrecv", "sendonly", "recvonly", "inactive"} {
		if strings.Contains(section, "\r\na="+d) {
			return d
		}
	}
	return ""
}

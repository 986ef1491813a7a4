package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/peergram/peergram/calls/sfuproto"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/relay/sfu"
)

// C3: the SFU's forwarding. Four participants of one call each publish
// an audio track as fast as they can (160-byte payloads) and receive the
// other three: 12 forwarded streams. The figure is the packets the SFU
// forwards per second; the anchor is a raw RTP forward loop in this
// process (UDP on loopback, the RTP header parsed and its SSRC rewritten,
// no SRTP) with the same four senders and fan-out, for the same time.
// Both lines also give the process CPU per forwarded stream (the
// senders and receivers are in the process too).

const (
	c3Participants = 4
	c3Payload      = 160
)

// runC3 measures SFU forwarding against the raw loop.
func runC3(ctx context.Context, cfg config) (string, error) {
	d := time.Duration(max(cfg.rounds, 1)) * time.Second
	var ours, anchor, oursCPU, anchorCPU []float64
	rounds := max(cfg.rounds, 1)
	for i := range rounds {
		steps := []func() (float64, float64, error){
			func() (float64, float64, error) { return sfuForward(ctx, d) },
			func() (float64, float64, error) { return rawForward(ctx, d) },
		}
		if i%2 == 1 {
			steps[0], steps[1] = steps[1], steps[0]
		}
		var pps, cpu [2]float64
		for j, f := range steps {
			var err error
			if pps[j], cpu[j], err = f(); err != nil {
				return "", fmt.Errorf("round %d: %w", i+1, err)
			}
		}
		if i%2 == 1 {
			pps[0], pps[1], cpu[0], cpu[1] = pps[1], pps[0], cpu[1], cpu[0]
		}
		ours, anchor = append(ours, pps[0]), append(anchor, pps[1])
		oursCPU, anchorCPU = append(oursCPU, cpu[0]), append(anchorCPU, cpu[1])
	}
	mo, ma := median(ours), median(anchor)
	// CPU per forwarded stream: the share of one core that forwarding
	// one 50 packet/s audio stream costs, from the CPU per packet.
	perStream := func(cpu, pps []float64) float64 {
		var per []float64
		for i := range cpu {
			per = append(per, cpu[i]/pps[i]*50*100)
		}
		return median(per)
	}
	return fmt.Sprintf("C3 ratio=%.2f target=>=0.20 ours=%.0f pkt/s anchor=%.0f pkt/s streams=%d cpu_per_stream=%.3f%% anchor_cpu_per_stream=%.3f%%",
		mo/ma, mo, ma, c3Participants*(c3Participants-1), perStream(oursCPU, ours), perStream(anchorCPU, anchor)), nil
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loopbackICE(se *webrtc.SettingEngine) {
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
}

// benchMembers are the devices C3 lets in.
type benchMembers struct {
	mu sync.Mutex
	m  map[identity.DeviceID]identity.AccountID
}

func (b *benchMembers) add(d identity.DeviceID, a identity.AccountID) {
	b.mu.Lock()
	b.m[d] = a
	b.mu.Unlock()
}

func (b *benchMembers) Member(_ [32]byte, d identity.DeviceID) (identity.AccountID, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, ok := b.m[d]
	if !ok {
		return identity.AccountID{}, errors.New("not a member")
	}
	return a, nil
}

// sfuPeer is a bare participant: a Pion connection that answers the
// SFU's offers, publishes one track and counts what it receives.
type sfuPeer struct {
	h     host.Host
	pc    *webrtc.PeerConnection
	conn  *sfuproto.Conn
	track *webrtc.TrackLocalStaticRTP
	got   atomic.Uint64
	conns atomic.Bool
}

func newSFUPeer(ctx context.Context, relay host.Host, members *benchMembers, group [32]byte, call string) (*sfuPeer, error) {
	acct, err := identity.NewAccountKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	dev, err := identity.NewDeviceKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	cert, err := acct.CertifyDevice(dev, "bench", time.Now().Unix())
	if err != nil {
		return nil, err
	}
	members.add(dev.ID(), acct.ID())
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		return nil, err
	}
	p := &sfuPeer{h: h}
	if err := h.Connect(ctx, peer.AddrInfo{ID: relay.ID(), Addrs: relay.Addrs()}); err != nil {
		p.close()
		return nil, err
	}
	se := webrtc.SettingEngine{}
	loopbackICE(&se)
	if p.pc, err = webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{}); err != nil {
		p.close()
		return nil, err
	}
	if p.track, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, "audio", "bench"); err != nil {
		p.close()
		return nil, err
	}
	p.pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		for {
			if _, _, err := t.Read(buf); err != nil {
				return
			}
			p.got.Add(1)
		}
	})
	p.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			p.conns.Store(true)
		}
	})
	if p.conn, err = sfu.Dial(ctx, h, relay.ID(), group, call, dev, cert); err != nil {
		p.close()
		return nil, err
	}
	p.pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			init := c.ToJSON()
			_ = p.conn.Send(&sfuproto.Message{Type: sfuproto.TypeCandidate, Candidate: &init})
		}
	})
	go p.signal()
	return p, nil
}

// signal answers the SFU until the stream ends.
func (p *sfuPeer) signal() {
	added := false
	for {
		m, err := p.conn.Recv()
		if err != nil {
			return
		}
		switch m.Type {
		case sfuproto.TypeOffer:
			if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP}); err != nil {
				return
			}
			if !added {
				added = true
				s, err := p.pc.AddTrack(p.track)
				if err != nil {
					return
				}
				go func() {
					buf := make([]byte, 1500)
					for {
						if _, _, err := s.Read(buf); err != nil {
							return
						}
					}
				}()
			}
			ans, err := p.pc.CreateAnswer(nil)
			if err != nil || p.pc.SetLocalDescription(ans) != nil {
				return
			}
			_ = p.conn.Send(&sfuproto.Message{Type: sfuproto.TypeAnswer, SDP: ans.SDP})
		case sfuproto.TypeCandidate:
			_ = p.pc.AddICECandidate(*m.Candidate)
		}
	}
}

func (p *sfuPeer) close() {
	if p.conn != nil {
		p.conn.Close()
	}
	if p.pc != nil {
		p.pc.Close()
	}
	p.h.Close()
}

// sfuForward runs the call and returns the SFU's forwarded packets per
// second and the process CPU used per second of the measured window.
func sfuForward(ctx context.Context, d time.Duration) (float64, float64, error) {
	relay, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		return 0, 0, err
	}
	defer relay.Close()
	members := &benchMembers{m: map[identity.DeviceID]identity.AccountID{}}
	srv, err := sfu.New(sfu.Config{Host: relay, Members: members, Settings: loopbackICE})
	if err != nil {
		return 0, 0, err
	}
	defer srv.Close()
	var group [32]byte
	rand.Read(group[:])
	call := fmt.Sprintf("%032x", group[:16])
	var peers []*sfuPeer
	defer func() {
		for _, p := range peers {
			p.close()
		}
	}()
	for range c3Participants {
		p, err := newSFUPeer(ctx, relay, members, group, call)
		if err != nil {
			return 0, 0, err
		}
		peers = append(peers, p)
	}
	// Until every connection is up and every track is forwarded.
	probe, stopProbe := context.WithCancel(ctx)
	var wg sync.WaitGroup
	send := func(ctx context.Context, p *sfuPeer, pace time.Duration) {
		defer wg.Done()
		payload := make([]byte, c3Payload)
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111}, Payload: payload}
		for ctx.Err() == nil {
			pkt.SequenceNumber++
			pkt.Timestamp += 960
			_ = p.track.WriteRTP(pkt)
			if pace > 0 {
				time.Sleep(pace)
			}
		}
	}
	for _, p := range peers {
		wg.Add(1)
		go send(probe, p, 20*time.Millisecond)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ready := true
		for _, p := range peers {
			if p.got.Load() < 3*5 {
				ready = false
			}
		}
		if ready {
			break
		}
		if time.Now().After(deadline) {
			stopProbe()
			wg.Wait()
			return 0, 0, errors.New("C3: the call did not come up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopProbe()
	wg.Wait()
	run, stop := context.WithCancel(ctx)
	f0, c0, t0 := srv.Forwarded(), cpuTime(), time.Now()
	for _, p := range peers {
		wg.Add(1)
		go send(run, p, 0)
	}
	time.Sleep(d)
	f1, c1, el := srv.Forwarded(), cpuTime(), time.Since(t0)
	stop()
	wg.Wait()
	return float64(f1-f0) / el.Seconds(), (c1 - c0).Seconds() / el.Seconds(), nil
}

// rawForward is the anchor: four UDP senders, each to a forwarder
// socket of its own whose loop (one goroutine per sender, as the SFU
// has one per track) parses each RTP header, rewrites the SSRC for each
// of the other three and writes it to them; four receivers counting.
func rawForward(ctx context.Context, d time.Duration) (float64, float64, error) {
	type part struct {
		fwd, out, in *net.UDPConn // fwd forwards what out sends; in receives
	}
	udp := func() (*net.UDPConn, error) {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err == nil {
			_ = c.SetReadBuffer(4 << 20)
		}
		return c, err
	}
	parts := make([]*part, c3Participants)
	defer func() {
		for _, p := range parts {
			if p == nil {
				continue
			}
			for _, c := range []*net.UDPConn{p.fwd, p.out, p.in} {
				if c != nil {
					c.Close()
				}
			}
		}
	}()
	for i := range parts {
		p := &part{}
		parts[i] = p
		var err error
		if p.fwd, err = udp(); err != nil {
			return 0, 0, err
		}
		if p.in, err = udp(); err != nil {
			return 0, 0, err
		}
		if p.out, err = net.DialUDP("udp4", nil, p.fwd.LocalAddr().(*net.UDPAddr)); err != nil {
			return 0, 0, err
		}
	}
	var forwarded atomic.Uint64
	for src, sp := range parts {
		go func() {
			buf := make([]byte, 1500)
			out := make([]byte, 1500)
			var pkt rtp.Packet
			for {
				n, err := sp.fwd.Read(buf)
				if err != nil {
					return
				}
				if pkt.Unmarshal(buf[:n]) != nil {
					continue
				}
				for j, p := range parts {
					if j == src {
						continue
					}
					pkt.SSRC = uint32(1000*src + j)
					m, err := pkt.MarshalTo(out)
					if err != nil {
						continue
					}
					if _, err := sp.fwd.WriteToUDP(out[:m], p.in.LocalAddr().(*net.UDPAddr)); err == nil {
						forwarded.Add(1)
					}
				}
			}
		}()
	}
	for _, p := range parts {
		go func() {
			buf := make([]byte, 1500)
			for {
				if _, err := p.in.Read(buf); err != nil {
					return
				}
			}
		}()
	}
	run, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	f0, c0, t0 := forwarded.Load(), cpuTime(), time.Now()
	for _, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: 1}, Payload: make([]byte, c3Payload)}
			buf := make([]byte, 1500)
			for run.Err() == nil {
				pkt.SequenceNumber++
				pkt.Timestamp += 960
				n, _ := pkt.MarshalTo(buf)
				_, _ = p.out.Write(buf[:n])
			}
		}()
	}
	time.Sleep(d)
	f1, c1, el := forwarded.Load(), cpuTime(), time.Since(t0)
	stop()
	wg.Wait()
	return float64(f1-f0) / el.Seconds(), (c1 - c0).Seconds() / el.Seconds(), nil
}

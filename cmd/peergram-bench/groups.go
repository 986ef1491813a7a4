package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/senderkey"
	"github.com/peergram/peergram/relay/groupnet"
)

// Group scenarios (issue 8). Each runs ours — relay/groupnet with its
// validators, every message sealed with Sender Keys in a signed envelope
// and opened by every member — and the anchor — raw gossipsub, unsigned,
// content message IDs, default parameters and queues, the 1 KiB
// plaintext as the message — on two sets of loopback TCP hosts joined in
// the same random graph (a host runs one gossipsub router, so the two
// cannot share hosts), one after the other in the same run.

const (
	gossipDegree = 6                // random connections each host makes
	g1Rate       = 100              // messages per second in G1 and G4
	g2Burst      = 1000             // messages in G2's burst
	g2Window     = 30 * time.Second // G2 counts what arrives within this
)

// groupSize is the members of a group scenario: 50, or 8 for the test
// run's small sizes.
func groupSize(cfg config) int {
	if cfg.n < 1000 {
		return 8
	}
	return 50
}

type gossipRun struct {
	latencies []time.Duration // one per delivery
	delivered int             // deliveries (message × receiving member)
	expected  int
	bytesOut  int64         // sent by every host during the publishing
	cpu       time.Duration // process CPU time (user+system) from the first publish to the end
	wall      time.Duration
}

// gossipSide is one of the two sides of a group scenario on a rig.
type gossipSide interface {
	publish(ctx context.Context, i int, at time.Time) error
	// next blocks for member m's next message and returns its index.
	next(ctx context.Context, m int) (int, error)
}

type gossipRig struct {
	hosts []host.Host
	bw    []*metrics.BandwidthCounter
}

func newGossipRig(ctx context.Context, n int, seed uint64) (*gossipRig, error) {
	r := &gossipRig{}
	for range n {
		bw := metrics.NewBandwidthCounter()
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.BandwidthReporter(bw))
		if err != nil {
			r.close()
			return nil, err
		}
		r.hosts, r.bw = append(r.hosts, h), append(r.bw, bw)
	}
	rnd := mrand.New(mrand.NewPCG(seed, 1))
	for i, h := range r.hosts {
		// A ring keeps the graph connected; random links make it a mesh.
		for k := range gossipDegree / 2 {
			j := rnd.IntN(n)
			if k == 0 {
				j = (i + 1) % n
			}
			if j == i {
				continue
			}
			o := r.hosts[j]
			if err := h.Connect(ctx, peer.AddrInfo{ID: o.ID(), Addrs: o.Addrs()}); err != nil {
				r.close()
				return nil, err
			}
		}
	}
	return r, nil
}

func (r *gossipRig) close() {
	for _, h := range r.hosts {
		_ = h.Close()
	}
}

func (r *gossipRig) bytesOut() int64 {
	var t int64
	for _, bw := range r.bw {
		t += bw.GetBandwidthTotals().TotalOut
	}
	return t
}

// oursSide: groupnet on every host, host 0 publishing Sender Keys
// messages in envelopes.
type oursSide struct {
	group  [32]byte
	nets   []*groupnet.Net
	dev    *identity.DeviceKey
	cert   *identity.DeviceCert
	sender *senderkey.Sender
	recv   []*senderkey.Receiver
	body   []byte
}

type allMembers struct{}

func (allMembers) MayPublish([32]byte, identity.DeviceID, groupmsg.Kind) (identity.AccountID, error) {
	return identity.AccountID{}, nil
}

func newOurs(ctx context.Context, r *gossipRig) (*oursSide, error) {
	s := &oursSide{body: make([]byte, msgSize)}
	_, _ = rand.Read(s.group[:])
	_, _ = rand.Read(s.body)
	acct, err := identity.NewAccountKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if s.dev, err = identity.NewDeviceKey(rand.Reader); err != nil {
		return nil, err
	}
	if s.cert, err = acct.CertifyDevice(s.dev, "bench", time.Now().Unix()); err != nil {
		return nil, err
	}
	if s.sender, err = senderkey.NewSender(rand.Reader, s.group, s.dev.ID(), 1); err != nil {
		return nil, err
	}
	for _, h := range r.hosts {
		n, err := groupnet.New(ctx, groupnet.Config{Host: h, Members: allMembers{}})
		if err != nil {
			return nil, err
		}
		if err := n.Join(s.group); err != nil {
			return nil, err
		}
		rc, err := senderkey.NewReceiver(s.sender.Distribution())
		if err != nil {
			return nil, err
		}
		s.nets, s.recv = append(s.nets, n), append(s.recv, rc)
	}
	return s, nil
}

func (s *oursSide) publish(ctx context.Context, i int, at time.Time) error {
	binary.BigEndian.PutUint32(s.body, uint32(i))
	ct, err := s.sender.Seal(s.body)
	if err != nil {
		return err
	}
	env, err := groupmsg.Seal(s.dev, s.group, groupmsg.KindSenderKey, at.UnixMilli(), ct)
	if err != nil {
		return err
	}
	return s.nets[0].Publish(ctx, s.group, env)
}

func (s *oursSide) next(ctx context.Context, m int) (int, error) {
	msg, err := s.nets[m].Next(ctx, s.group)
	if err != nil {
		return 0, err
	}
	pt, err := s.recv[m].Open(msg.Payload)
	if err != nil {
		return 0, err
	}
	return int(binary.BigEndian.Uint32(pt)), nil
}

// anchorSide: raw gossipsub.
type anchorSide struct {
	topics []*pubsub.Topic
	subs   []*pubsub.Subscription
	body   []byte
	// priv signs each message (G1S's anchor); nil: unsigned.
	priv ed25519.PrivateKey
}

// newAnchor starts raw gossipsub on every host. sideAnchorValidated
// gives its topic a validator that accepts everything, run inline as
// ours is (G1V: what having a validator at all costs per hop, apart
// from what our checks cost); sideAnchorSigned has the publisher sign
// each message with Ed25519 and the validator check that signature at
// every hop, and nothing else (G1S: what our checks cost beyond the
// one signature check each member must make).
func newAnchor(ctx context.Context, r *gossipRig, kind sideKind) (*anchorSide, error) {
	s := &anchorSide{body: make([]byte, msgSize)}
	_, _ = rand.Read(s.body)
	name := fmt.Sprintf("/bench/anchor/%x", s.body[:8])
	var validate func(context.Context, peer.ID, *pubsub.Message) bool
	switch kind {
	case sideAnchorValidated:
		validate = func(context.Context, peer.ID, *pubsub.Message) bool { return true }
	case sideAnchorSigned:
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		s.priv = priv
		validate = func(_ context.Context, _ peer.ID, m *pubsub.Message) bool {
			n := len(m.Data) - ed25519.SignatureSize
			return n >= 4 && ed25519.Verify(pub, m.Data[:n], m.Data[n:])
		}
	}
	for _, h := range r.hosts {
		ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithNoAuthor(),
			pubsub.WithMessageIdFn(func(m *pb.Message) string { return groupmsg.ID(m.Data) }))
		if err != nil {
			return nil, err
		}
		if validate != nil {
			if err := ps.RegisterTopicValidator(name, validate, pubsub.WithValidatorInline(true)); err != nil {
				return nil, err
			}
		}
		t, err := ps.Join(name)
		if err != nil {
			return nil, err
		}
		sub, err := t.Subscribe()
		if err != nil {
			return nil, err
		}
		s.topics, s.subs = append(s.topics, t), append(s.subs, sub)
	}
	return s, nil
}

func (s *anchorSide) publish(ctx context.Context, i int, _ time.Time) error {
	b := append([]byte(nil), s.body...)
	binary.BigEndian.PutUint32(b, uint32(i))
	if s.priv != nil {
		b = append(b, ed25519.Sign(s.priv, b)...)
	}
	return s.topics[0].Publish(ctx, b)
}

func (s *anchorSide) next(ctx context.Context, m int) (int, error) {
	msg, err := s.subs[m].Next(ctx)
	if err != nil {
		return 0, err
	}
	return int(binary.BigEndian.Uint32(msg.Data)), nil
}

// runGossip publishes msgs messages from member 0 (every 1/perSecond, or
// all at once if perSecond is 0) and records every other member's
// deliveries until all arrived, window ended, or nothing arrived for 3 s
// after the last publish.
func runGossip(ctx context.Context, kind sideKind, members, msgs int, perSecond int, window time.Duration, seed uint64) (*gossipRun, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rig, err := newGossipRig(ctx, members, seed)
	if err != nil {
		return nil, err
	}
	defer rig.close()
	var side gossipSide
	if kind == sideOurs {
		side, err = newOurs(ctx, rig)
	} else {
		side, err = newAnchor(ctx, rig, kind)
	}
	if err != nil {
		return nil, err
	}
	time.Sleep(2 * time.Second) // heartbeats build the mesh
	sent := make([]atomic.Int64, msgs)
	res := &gossipRun{expected: msgs * (members - 1)}
	var mu sync.Mutex
	var last atomic.Int64
	var wg sync.WaitGroup
	rctx, rcancel := context.WithTimeout(ctx, window)
	defer rcancel()
	for m := 1; m < members; m++ {
		wg.Go(func() {
			for got := 0; got < msgs; got++ {
				i, err := side.next(rctx, m)
				if err != nil {
					return
				}
				now := time.Now()
				last.Store(now.UnixNano())
				if i < 0 || i >= msgs {
					continue
				}
				lat := now.Sub(time.Unix(0, sent[i].Load()))
				mu.Lock()
				res.latencies = append(res.latencies, lat)
				res.delivered++
				mu.Unlock()
			}
		})
	}
	// The counters' totals are updated by a sweep once a second: read
	// them a sweep after everything settled.
	time.Sleep(1100 * time.Millisecond)
	before := rig.bytesOut()
	cpu0 := cpuTime()
	start := time.Now()
	for i := range msgs {
		if perSecond > 0 {
			if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(perSecond))); d > 0 {
				time.Sleep(d)
			}
		}
		at := time.Now()
		sent[i].Store(at.UnixNano())
		if err := side.publish(ctx, i, at); err != nil {
			return nil, fmt.Errorf("publish %d: %w", i, err)
		}
	}
	last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-rctx.Done():
			waiting = false
		case <-time.After(100 * time.Millisecond):
			if time.Since(time.Unix(0, last.Load())) > 3*time.Second {
				waiting = false
			}
		}
	}
	res.cpu, res.wall = cpuTime()-cpu0, time.Since(start)
	time.Sleep(1100 * time.Millisecond)
	res.bytesOut = rig.bytesOut() - before
	rcancel()
	wg.Wait()
	return res, nil
}

// sideKind is what a group scenario's run measures.
type sideKind int

const (
	sideOurs            sideKind = iota // groupnet, validators, envelopes
	sideAnchor                          // raw gossipsub, no validator
	sideAnchorValidated                 // raw gossipsub, a validator that accepts all (G1V)
	sideAnchorSigned                    // raw gossipsub, each message signed, checked at every hop (G1S)
)

// sideOf is the kind a round runs: ours, or the scenario's anchor.
func sideOf(anchor bool, anchorKind sideKind) sideKind {
	if !anchor {
		return sideOurs
	}
	return anchorKind
}

func sideName(anchor bool) string {
	if anchor {
		return "anchor"
	}
	return "ours"
}

// cpuShare is the cores the process kept busy while a run published
// and delivered (1.0 = one core).
func (r *gossipRun) cpuShare() float64 {
	if r.wall <= 0 {
		return 0
	}
	return float64(r.cpu) / float64(r.wall)
}

func runG1(ctx context.Context, cfg config) (string, error) {
	return runLatency(ctx, cfg, "G1", sideAnchor)
}

// runG1V is G1 against an anchor whose topic has a validator that
// accepts everything (inline, as ours): ours still verifies a signature,
// checks membership and replays and opens each message, the anchor
// only takes the per-hop detour through gossipsub's validation pipeline.
// It tells apart the cost of having a validator (G1 minus G1V) from
// the cost of our checks (G1V).
func runG1V(ctx context.Context, cfg config) (string, error) {
	return runLatency(ctx, cfg, "G1V", sideAnchorValidated)
}

// runG1S is G1 against an anchor that does the one check every member
// of a signed group must make: its publisher signs each message with
// Ed25519 and every hop verifies the signature before forwarding. What
// G1S's ratio shows beyond 1 is the rest of ours (membership, replay
// and rate checks, peer scoring, flood publishing, Sender Keys);
// G1 over G1S is the cost of the signature itself, which on this rig
// every member pays on the same two cores (docs/performance.md).
func runG1S(ctx context.Context, cfg config) (string, error) {
	return runLatency(ctx, cfg, "G1S", sideAnchorSigned)
}

// runLatency is G1 against anchorKind's anchor.
func runLatency(ctx context.Context, cfg config, id string, anchorKind sideKind) (string, error) {
	members, msgs := groupSize(cfg), min(cfg.n, 1000)
	var ratios, o50, o99, a50, a99, od, ad, ocpu, acpu []float64
	for round := range cfg.rounds {
		var res [2]*gossipRun
		for k, anchor := range []bool{round%2 == 1, round%2 == 0} {
			var r *gossipRun
			var err error
			// Labels tell the two sides apart in a -cpuprofile (every
			// goroutine a side's hosts start inherits them).
			pprof.Do(ctx, pprof.Labels("side", sideName(anchor)), func(ctx context.Context) {
				r, err = runGossip(ctx, sideOf(anchor, anchorKind), members, msgs, g1Rate, time.Duration(msgs/g1Rate+30)*time.Second, uint64(round+1))
			})
			if err != nil {
				return "", err
			}
			if anchor {
				res[1] = r
			} else {
				res[0] = r
			}
			_ = k
		}
		op99, ap99 := percentile(res[0].latencies, 0.99), percentile(res[1].latencies, 0.99)
		if ap99 <= 0 {
			return "", fmt.Errorf("anchor delivered nothing")
		}
		ratios = append(ratios, float64(op99)/float64(ap99))
		o50, o99 = append(o50, float64(percentile(res[0].latencies, 0.5))), append(o99, float64(op99))
		a50, a99 = append(a50, float64(percentile(res[1].latencies, 0.5))), append(a99, float64(ap99))
		od = append(od, 100*float64(res[0].delivered)/float64(res[0].expected))
		ad = append(ad, 100*float64(res[1].delivered)/float64(res[1].expected))
		ocpu, acpu = append(ocpu, res[0].cpuShare()), append(acpu, res[1].cpuShare())
	}
	ms := func(ns float64) string { return fmt.Sprintf("%.1fms", ns/1e6) }
	return fmt.Sprintf("%s ratio=%.3f target=<=1.5 ours=p50:%s,p99:%s,delivered:%.2f%% anchor=p50:%s,p99:%s,delivered:%.2f%% members=%d rate=%d/s cpu_ours=%.2f cpu_anchor=%.2f",
		id, median(ratios), ms(median(o50)), ms(median(o99)), median(od), ms(median(a50)), ms(median(a99)), median(ad), members, g1Rate, median(ocpu), median(acpu)), nil
}

func runG2(ctx context.Context, cfg config) (string, error) {
	members, msgs := groupSize(cfg), g2Burst
	if cfg.n < 1000 {
		msgs = cfg.n
	}
	var of, af []float64
	for round := range cfg.rounds {
		for _, anchor := range []bool{round%2 == 1, round%2 == 0} {
			r, err := runGossip(ctx, sideOf(anchor, sideAnchor), members, msgs, 0, g2Window, uint64(round+1))
			if err != nil {
				return "", err
			}
			f := float64(r.delivered) / float64(r.expected)
			if anchor {
				af = append(af, f)
			} else {
				of = append(of, f)
			}
		}
	}
	return fmt.Sprintf("G2 ratio=%.3f target=>=1.00 ours=delivered:%.2f%% anchor=delivered:%.2f%% members=%d burst=%d",
		median(of), 100*median(of), 100*median(af), members, msgs), nil
}

func runG4(ctx context.Context, cfg config) (string, error) {
	members, msgs := groupSize(cfg), min(cfg.n, 500)
	var ratios, ob, ab []float64
	for round := range cfg.rounds {
		var per [2]float64
		for _, anchor := range []bool{round%2 == 1, round%2 == 0} {
			var r *gossipRun
			var err error
			// Labels tell the two sides apart in a -cpuprofile (every
			// goroutine a side's hosts start inherits them).
			pprof.Do(ctx, pprof.Labels("side", sideName(anchor)), func(ctx context.Context) {
				r, err = runGossip(ctx, sideOf(anchor, sideAnchor), members, msgs, g1Rate, time.Duration(msgs/g1Rate+30)*time.Second, uint64(round+1))
			})
			if err != nil {
				return "", err
			}
			b := float64(r.bytesOut) / float64(msgs*(members-1))
			if anchor {
				per[1] = b
			} else {
				per[0] = b
			}
		}
		ratios, ob, ab = append(ratios, per[0]/per[1]), append(ob, per[0]), append(ab, per[1])
	}
	return fmt.Sprintf("G4 ratio=%.3f target=<=1.2 ours=%.0fB/member/msg anchor=%.0fB/member/msg members=%d plaintext=%dB",
		median(ratios), median(ob), median(ab), members, msgSize), nil
}

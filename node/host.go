package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/peergram/peergram/relay/directory"
	"github.com/peergram/peergram/relay/mailbox"
)

// mdnsService is the mDNS service name Peergram nodes announce on the LAN.
const mdnsService = "peergram"

// newHost builds the node's libp2p host: TCP and QUIC, Noise and TLS,
// yamux, the default resource manager, circuit relay v2 client and hole
// punching (DCUtR).
func newHost(key crypto.PrivKey, listen []string) (host.Host, error) {
	h, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(listen...),
		libp2p.EnableRelay(),
		libp2p.EnableHolePunching(),
		libp2p.UserAgent("peergram"),
	)
	if err != nil {
		return nil, fmt.Errorf("node: libp2p host: %w", err)
	}
	return h, nil
}

type mdnsNotifee struct {
	h   host.Host
	log *slog.Logger
}

func (m mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) {
	if ai.ID == m.h.ID() {
		return
	}
	m.h.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
	m.log.Debug("mDNS peer found", "peer", ai.ID)
}

func startMDNS(h host.Host, log *slog.Logger) (func(), error) {
	svc := mdns.NewMdnsService(h, mdnsService, mdnsNotifee{h, log})
	if err := svc.Start(); err != nil {
		return nil, err
	}
	return func() { svc.Close() }, nil
}

// relayState is what the node knows of one home relay.
type relayState struct {
	published  atomic.Bool // keys published to its directory
	subscribed atomic.Bool // mailbox subscription running
	publishing atomic.Bool // a publish loop runs
	// drained: the running subscription has handed over everything the
	// mailbox held (mailbox.SubscribeOptions.OnDrained).
	drained atomic.Bool
	// downSince is when the node last had no subscription there (unix
	// ns, local clock): at start, and when one ended.
	downSince atomic.Int64
}

// drainGrace is how long a home relay that cannot be reached holds back
// direct deliveries (its mailbox may hold older messages of the same
// senders); after it, contacts online reach the node directly whatever
// the relay's state.
const drainGrace = 10 * time.Second

// takesDirect reports whether the node takes envelopes directly from
// other devices now: not while it reads a mailbox's backlog, nor while a
// home relay has been out of reach for less than drainGrace. A message
// taken directly would overtake older ones of its sender waiting on the
// relay, and the ratchet keeps keys for at most ratchet.MaxSkippedKeys
// skipped messages: the oldest of a larger backlog would then be lost.
// Refused, the sender deposits in the mailbox, behind the backlog.
func (n *Node) takesDirect() bool {
	now := time.Now().UnixNano()
	for i := range n.relayState {
		st := &n.relayState[i]
		switch {
		case st.drained.Load():
		case st.subscribed.Load():
			return false
		case now-st.downSince.Load() < int64(drainGrace):
			return false
		}
	}
	return true
}

// ready reports whether others can find this device through the relay and
// reach its mailbox there.
func (s *relayState) ready() bool { return s.published.Load() && s.subscribed.Load() }

// keepRelay keeps the node connected to one home relay with a circuit
// reservation (so peers can reach it through the relay and hole punch),
// its own mailbox subscribed, and its keys published to the relay's
// directory. It retries with backoff until ctx ends. Publishing runs on
// its own: a directory that refuses the node's keys does not stop the node
// from reading its mailbox.
func (n *Node) keepRelay(ctx context.Context, r peer.AddrInfo, st *relayState) {
	log := n.log.With("relay", r.ID)
	backoff := n.cfg.RetryMin
	st.downSince.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		n.host.Peerstore().AddAddrs(r.ID, r.Addrs, peerstore.PermanentAddrTTL)
		// Past the swarm's dial backoff (quadratic, up to 5 minutes, and
		// grown by every stream any part of the node tried to open while
		// the relay was down): this loop keeps its own pace, and a relay
		// that restarted is reached again at its next try. (Forced only
		// when not connected: a forced dial dials even then.)
		cctx := ctx
		if n.host.Network().Connectedness(r.ID) != network.Connected {
			cctx = network.WithForceDirectDial(ctx, "home relay")
		}
		err := n.host.Connect(cctx, r)
		if err == nil && !st.published.Load() && st.publishing.CompareAndSwap(false, true) {
			wg.Go(func() {
				defer st.publishing.Store(false)
				n.publishLoop(ctx, r.ID, st)
			})
		}
		var expire time.Time
		if err == nil {
			var rsvp *client.Reservation
			rsvp, err = client.Reserve(ctx, n.host, r)
			if err == nil {
				expire = rsvp.Expiration
			}
		}
		if err == nil {
			backoff = n.cfg.RetryMin
			// Reached (again): the group history loops, which may be
			// waiting out a backoff grown while the relay was away, go
			// now (outside review 23: one waited past half a minute).
			n.wakeHistory()
			subCtx, cancel := context.WithCancel(ctx)
			if !expire.IsZero() {
				// Renewed a minute before it ends, or halfway for a
				// reservation shorter than two minutes (a relay granting
				// 30 s had this loop reserve thousands of times a
				// second: outside review 23).
				refresh := expire.Add(-time.Minute)
				if half := time.Now().Add(time.Until(expire) / 2); refresh.Before(half) {
					refresh = half
				}
				if soonest := time.Now().Add(n.cfg.RetryMin); refresh.Before(soonest) {
					refresh = soonest
				}
				subCtx, cancel = context.WithDeadline(ctx, refresh)
			}
			tok, changed := n.currentToken()
			go func() {
				select {
				case <-changed: // a new delivery token: subscribe again to register it
					cancel()
				case <-subCtx.Done():
				}
			}()
			st.drained.Store(false)
			st.subscribed.Store(true)
			err = n.mbox.SubscribeWith(subCtx, r.ID, n.keys.device.SigningKey(), mailbox.SubscribeOptions{
				Tokens: []mailbox.Token{tok}, Batch: n.handleMailboxBatch, OnDrained: func() { st.drained.Store(true) },
			}, n.handleMailbox)
			st.drained.Store(false)
			st.downSince.Store(time.Now().UnixNano())
			st.subscribed.Store(false)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if subCtx.Err() != nil {
				continue // reservation refresh, or a new token
			}
		}
		log.Warn("relay connection lost; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(jitter(backoff)):
		}
		backoff = min(backoff*2, n.cfg.RetryMax)
	}
}

// publishLoop publishes the node's keys to one relay until it succeeds.
// A directory that holds a newer list of the account (another device
// changed it) refuses ours as a rollback or fork: the node then fetches
// the account's list first and publishes again.
func (n *Node) publishLoop(ctx context.Context, relay peer.ID, st *relayState) {
	// Directories allow a few publishes, then about one a minute.
	backoff := max(n.cfg.RetryMin, 2*time.Second)
	for ctx.Err() == nil {
		err := n.publish(ctx, relay)
		if errors.Is(err, directory.ErrRollback) || errors.Is(err, directory.ErrFork) || errors.Is(err, directory.ErrGap) {
			if _, rerr := n.refreshOwnList(ctx); rerr != nil {
				err = fmt.Errorf("%w; fetching the account's list: %w", err, rerr)
			} else {
				err = n.publish(ctx, relay)
			}
		}
		if err == nil {
			st.published.Store(true)
			return
		}
		wait := backoff
		if errors.Is(err, directory.ErrRateLimited) {
			wait = max(wait, time.Minute)
		}
		n.log.Warn("publish keys failed; retrying", "relay", relay, "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(jitter(wait)):
		}
		backoff = min(backoff*2, max(n.cfg.RetryMax, 5*time.Minute))
	}
}

func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	j, err := rand.Int(rand.Reader, big.NewInt(int64(d/4)+1))
	if err != nil {
		return d
	}
	return d + time.Duration(j.Int64())
}

// relayAddrs are the node's home relays as full multiaddrs, for its
// directory record.
func (n *Node) relayAddrs() []string {
	return append([]string(nil), n.cfg.Relays...)
}

// addCircuitAddrs lets the host dial a peer through its home relays.
func (n *Node) addCircuitAddrs(p peer.ID, relays []string) {
	for _, s := range relays {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			continue
		}
		ai, err := peer.AddrInfoFromP2pAddr(a)
		if err != nil || ai.ID == n.host.ID() {
			continue
		}
		n.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
		circ, err := ma.NewMultiaddr("/p2p/" + ai.ID.String() + "/p2p-circuit")
		if err != nil {
			continue
		}
		for _, base := range ai.Addrs {
			n.host.Peerstore().AddAddr(p, base.Encapsulate(circ), peerstore.TempAddrTTL)
		}
	}
}

package relay_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/relay"
	"github.com/peergram/peergram/relay/directory"
	"github.com/peergram/peergram/relay/mailbox"
	"github.com/peergram/peergram/relay/relaytest"
)

// The three kinds of stream an attacker holds: a mailbox stream with a
// Subscribe sent (the relay answers with a Challenge and waits for Auth),
// a directory stream with the first bytes of a frame header (the relay
// waits for the rest), and a stream whose protocol is never negotiated
// (libp2p waits up to 10 s, counting it against its transient scope).
const (
	heldMailbox = iota
	heldDirectory
	heldRaw
	kinds
)

// attackSlots is how many streams of each kind one attacker tries to
// hold: above libp2p's default per-peer protocol limit (64 + 4 per GiB
// of the resource manager's memory share), and, all kinds together,
// above the relay's per-peer inbound stream limit, so that only explicit
// limits stop it.
const attackSlots = 80

// attacker is an anonymous peer that opens as many streams as it can and
// holds them, opening a new one whenever the relay ends one, as long as
// the attack lasts.
type attacker struct {
	h    host.Host
	held [kinds]atomic.Int64 // streams the relay accepted and keeps open, by kind
}

func startAttack(ctx context.Context, t *testing.T, target peer.AddrInfo, n int) ([]*attacker, *sync.WaitGroup) {
	t.Helper()
	var wg sync.WaitGroup
	as := make([]*attacker, n)
	for i := range as {
		h, err := libp2p.New(
			libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
			libp2p.Transport(tcp.NewTCPTransport),
			libp2p.DisableMetrics(),
			libp2p.DisableRelay(),
		)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.Close() })
		if err := h.Connect(ctx, target); err != nil {
			t.Fatal(err)
		}
		as[i] = &attacker{h: h}
	}
	// Connected first, then the protocol streams, then the unnegotiated
	// ones. Until its protocol is negotiated a stream counts against the
	// relay's transient scope, which the unnegotiated streams fill: they
	// retry at once while a refused protocol stream backs off, so on a
	// loaded machine (a CI run) the directory streams started beside them
	// once never got a transient slot and the attack held none of them.
	start := func(kind int) {
		for _, a := range as {
			for range attackSlots {
				wg.Go(func() { a.hold(ctx, target.ID, kind) })
			}
		}
	}
	start(heldMailbox)
	start(heldDirectory)
	for until := time.Now().Add(30 * time.Second); time.Now().Before(until) && ctx.Err() == nil; time.Sleep(100 * time.Millisecond) {
		var mb, dir int64
		for _, a := range as {
			mb += a.held[heldMailbox].Load()
			dir += a.held[heldDirectory].Load()
		}
		if mb > 0 && dir > 0 {
			break
		}
	}
	start(heldRaw)
	return as, &wg
}

// hold keeps one stream of a kind open: it opens it, writes the first
// bytes and waits until the relay ends it, then opens the next. A refused
// protocol stream is retried after a pause that doubles up to 8 s, as a
// patient attacker would (and so that refused slots do not load the
// machine running the test); a refused unnegotiated stream at once, to
// take any transient slot that frees.
func (a *attacker) hold(ctx context.Context, relay peer.ID, kind int) {
	pause := time.Second
	for ctx.Err() == nil {
		var str network.Stream
		var err error
		var first []byte
		switch kind {
		case heldMailbox:
			str, err = a.h.NewStream(ctx, relay, mailbox.ProtocolID)
			first = []byte{0, 0, 0, 1, 0x03} // Subscribe
		case heldDirectory:
			str, err = a.h.NewStream(ctx, relay, directory.ProtocolID)
			first = []byte{0, 0} // half a frame header
		case heldRaw:
			str, err = a.h.Network().NewStream(ctx, relay)
			first = []byte{0x13} // the length of a multistream header
		}
		if err == nil {
			stop := context.AfterFunc(ctx, func() { _ = str.Reset() })
			if _, err = str.Write(first); err == nil {
				var b [1]byte
				switch kind {
				case heldMailbox:
					_, err = io.ReadFull(str, b[:]) // the Challenge
				case heldRaw:
					_, err = io.ReadFull(str, b[:]) // libp2p's multistream header
				default:
					// The relay says nothing until the frame is whole: a
					// stream it did not reset within a moment is held.
					_ = str.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
					var ne net.Error
					if _, err = str.Read(b[:]); errors.As(err, &ne) && ne.Timeout() {
						err = nil
					} else if err == nil {
						err = errors.New("unexpected answer")
					}
					_ = str.SetReadDeadline(time.Time{})
				}
				if err == nil {
					a.held[kind].Add(1)
					_, _ = io.Copy(io.Discard, str) // until the relay ends it
					a.held[kind].Add(-1)
					pause = time.Second
				}
			}
			stop()
			_ = str.Reset()
		}
		switch {
		case err != nil && kind == heldRaw:
			pause = 20 * time.Millisecond
		case err != nil:
			pause = min(2*pause, 8*time.Second)
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}

// TestAnonymousStreamFlood is the attack of issue 6: anonymous peers
// open as many unauthenticated mailbox and directory streams as they can
// and hold them. The relay must keep serving a legitimate peer: deposit,
// subscribe and fetch.
func TestAnonymousStreamFlood(t *testing.T) {
	const attackers = 20 // × libp2p's default 75 per peer > its default 1,262 per protocol here
	r := relaytest.Start(t, relay.Config{MetricsAddr: "127.0.0.1:0"})
	target := peer.AddrInfo{ID: r.ID(), Addrs: nil}
	for _, a := range r.Addrs() {
		info, err := peer.AddrInfoFromP2pAddr(a)
		if err != nil {
			t.Fatal(err)
		}
		target.Addrs = append(target.Addrs, info.Addrs...)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	attackCtx, stopAttack := context.WithCancel(ctx)
	as, wg := startAttack(attackCtx, t, target, attackers)
	defer func() {
		stopAttack()
		wg.Wait()
	}()

	// Let the attackers take what they can.
	// Unnegotiated streams are reset together when libp2p's negotiation
	// timeout ends them, so a single look may catch none of that kind:
	// the most held at any look is what shows the attack took some.
	var held, peak [kinds]int64
	deadline := time.Now().Add(15 * time.Second)
	for prev := int64(-1); time.Now().Before(deadline); {
		time.Sleep(time.Second)
		held = [kinds]int64{}
		for _, a := range as {
			for k := range held {
				held[k] += a.held[k].Load()
			}
		}
		for k := range peak {
			peak[k] = max(peak[k], held[k])
		}
		if sum := held[0] + held[1] + held[2]; sum == prev && min(peak[0], peak[1], peak[2]) > 0 {
			break // steady, every kind taken
		} else {
			prev = sum
		}
	}
	t.Logf("%d attackers hold %d mailbox, %d directory and %d unnegotiated streams (at most %d, %d and %d)",
		attackers, held[heldMailbox], held[heldDirectory], held[heldRaw], peak[heldMailbox], peak[heldDirectory], peak[heldRaw])
	lim := relay.OperatorLimits()
	// An attacker counts a stream as held once the relay has not reset it
	// for 500 ms; under load (a CI run) the relay may reset one over the
	// limit later than that, so a count over the limit must last: three
	// looks, 300 ms apart.
	least := make([][kinds]int64, len(as))
	for i := range least {
		for k := range least[i] {
			least[i][k] = math.MaxInt64
		}
	}
	for look := range 3 {
		if look > 0 {
			time.Sleep(300 * time.Millisecond)
		}
		for i, a := range as {
			for k := range least[i] {
				least[i][k] = min(least[i][k], a.held[k].Load())
			}
		}
	}
	for i := range as {
		if n := least[i][heldMailbox]; n > int64(lim.Mailbox.StreamsPerPeer) {
			t.Errorf("attacker %d holds %d mailbox streams, over the per-peer limit %d", i, n, lim.Mailbox.StreamsPerPeer)
		}
		if n := least[i][heldDirectory]; n > int64(lim.Directory.StreamsPerPeer) {
			t.Errorf("attacker %d holds %d directory streams, over the per-peer limit %d", i, n, lim.Directory.StreamsPerPeer)
		}
	}
	if peak[heldMailbox] == 0 || peak[heldDirectory] == 0 || peak[heldRaw] == 0 {
		t.Fatal("the attack held no streams of some kind: it tests nothing")
	}
	// The operator sees the flood: the streams held and the refusals
	// (counted as they come: under load, as in a CI run, the attackers
	// take a while to reach every limit, so the counters are awaited).
	wants := []string{
		`peergram_relay_rcmgr_refused_total{name="/peergram/mailbox/1.0.0",resource="stream",scope="protocol_peer"}`,
		`peergram_relay_rcmgr_refused_total{name="/peergram/directory/1.0.0",resource="stream",scope="protocol_peer"}`,
		`peergram_relay_rcmgr_refused_total{name="",resource="stream",scope="open"}`,
	}
	var body string
	for until := time.Now().Add(90 * time.Second); ; time.Sleep(time.Second) {
		body = scrape(t, r)
		missing := slices.DeleteFunc(slices.Clone(wants), func(w string) bool { return strings.Contains(body, w) })
		if len(missing) == 0 {
			break
		}
		if time.Now().After(until) {
			t.Fatalf("/metrics lacks %s", strings.Join(missing, ", "))
		}
	}
	// (The relay may be ending and replacing some of them as it scrapes.)
	gauge := regexp.MustCompile(`(?m)^peergram_relay_streams\{dir="inbound",name="/peergram/mailbox/1.0.0",scope="protocol"\} (\d+)$`).FindStringSubmatch(body)
	var n int
	if gauge != nil {
		n, _ = strconv.Atoi(gauge[1])
	}
	if max := attackers*lim.Mailbox.StreamsPerPeer + 1; n < 1 || n > max {
		t.Errorf("mailbox streams gauge %q, want 1..%d", gauge, max)
	}

	h := clientHost(t)
	defer h.Close()
	if err := h.Connect(ctx, target); err != nil {
		t.Fatal(err)
	}
	opCtx, opCancel := context.WithTimeout(ctx, time.Minute)
	defer opCancel()

	// Deposit.
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mc := mailbox.NewClient(h, nil)
	defer mc.Close()
	env := []byte("sealed envelope for the legitimate peer")
	if err := mc.Deposit(opCtx, r.ID(), mailbox.AddressOf(pub), mailbox.EnvelopeID{1}, env); err != nil {
		t.Fatalf("legitimate deposit during the flood: %v", err)
	}
	// Subscribe and receive it.
	subCtx, subCancel := context.WithCancel(opCtx)
	got := make(chan []byte, 1)
	subErr := make(chan error, 1)
	go func() {
		subErr <- mc.Subscribe(subCtx, r.ID(), key, func(_ context.Context, d mailbox.Delivery) error {
			select {
			case got <- d.Envelope:
			default:
			}
			return nil
		})
	}()
	select {
	case b := <-got:
		if string(b) != string(env) {
			t.Errorf("received %q, want %q", b, env)
		}
	case err := <-subErr:
		t.Fatalf("legitimate subscribe during the flood: %v", err)
	case <-opCtx.Done():
		t.Fatal("legitimate subscriber received nothing during the flood")
	}
	subCancel()
	<-subErr
	// Fetch: an unknown account is answered NotFound, which takes a
	// stream the relay served.
	var acct identity.AccountID
	if _, err := directory.NewClient(h).Fetch(opCtx, r.ID(), acct); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("legitimate fetch during the flood: %v, want ErrNotFound", err)
	}
}

// scrape returns the relay's /metrics.
func scrape(t *testing.T, r *relay.Relay) string {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{}, Timeout: testTimeout}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://" + r.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

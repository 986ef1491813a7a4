package mailbox

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/peergram/peergram/storage"
)

// testLogger shows logs with -v when MAILBOX_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("MAILBOX_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// newHost starts a libp2p host on loopback, closed at cleanup.
func newHost(t testing.TB, key crypto.PrivKey) host.Host {
	t.Helper()
	opts := []libp2p.Option{libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay()}
	if key != nil {
		opts = append(opts, libp2p.Identity(key))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// testRelay is a Server with its DB and host.
type testRelay struct {
	t   testing.TB
	dir string
	key crypto.PrivKey
	cfg Config
	db  *storage.DB
	h   host.Host
	srv *Server

	tweak   func(*Server) // run between NewServer and Start
	minFree int64         // storage.Options.MinFreeBytes at the next start
}

// startRelay starts a relay on dir with cfg's limits (DB and Host are
// filled in). The same key keeps the peer ID across restarts.
func startRelay(t testing.TB, dir string, key crypto.PrivKey, cfg Config, tweak ...func(*Server)) *testRelay {
	t.Helper()
	if key == nil {
		var err error
		key, _, err = crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
	}
	r := &testRelay{t: t, dir: dir, key: key, cfg: cfg}
	if len(tweak) > 0 {
		r.tweak = tweak[0]
	}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *testRelay) start() {
	t := r.t
	t.Helper()
	db, err := storage.Open(storage.Options{Dir: r.dir, MinFreeBytes: r.minFree})
	if err != nil {
		t.Fatal(err)
	}
	r.db = db
	r.h = newHost(t, r.key)
	cfg := r.cfg
	cfg.DB, cfg.Host = db, r.h
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	r.srv, err = NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.tweak != nil {
		r.tweak(r.srv)
	}
	if err := r.srv.Start(); err != nil {
		t.Fatal(err)
	}
}

// stop closes the server, host and DB; idempotent.
func (r *testRelay) stop() {
	if r.srv == nil {
		return
	}
	if err := r.srv.Close(); err != nil {
		r.t.Error(err)
	}
	_ = r.h.Close()
	if err := r.db.Close(); err != nil {
		r.t.Error(err)
	}
	r.srv = nil
}

func (r *testRelay) restart() {
	r.stop()
	r.start()
}

// stats fails the test on error.
func (r *testRelay) stats(addr Address) (int, int64) {
	r.t.Helper()
	n, b, err := r.srv.Stats(addr)
	if err != nil {
		r.t.Fatal(err)
	}
	return n, b
}

// newClient returns a client host that knows the relay's addresses.
func newClient(t testing.TB, r *testRelay) (*Client, host.Host) {
	t.Helper()
	h := newHost(t, nil)
	learn(h, r)
	c := NewClient(h, testLogger())
	t.Cleanup(func() { _ = c.Close() })
	return c, h
}

func learn(h host.Host, r *testRelay) {
	h.Peerstore().AddAddrs(r.h.ID(), r.h.Addrs(), peerstore.PermanentAddrTTL)
}

func newDevice(t testing.TB) (ed25519.PrivateKey, Address) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv, AddressOf(pub)
}

func envID(i int) EnvelopeID {
	var id EnvelopeID
	copy(id[:], fmt.Sprintf("env-%011d", i))
	return id
}

func envBody(i, size int) []byte {
	b := make([]byte, size)
	copy(b, fmt.Sprintf("body-%d-", i))
	return b
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// collector gathers deliveries from a Subscribe run in the background.
type collector struct {
	mu     sync.Mutex
	got    []Delivery
	reject func(Delivery) error // nil accepts everything
	more   chan struct{}        // poked on each delivery
	errc   chan error           // Subscribe's result
	cancel context.CancelFunc
}

// subscribe runs c.Subscribe in the background until stop.
func subscribe(t testing.TB, c *Client, r *testRelay, key ed25519.PrivateKey, reject func(Delivery) error) *collector {
	t.Helper()
	return subscribeWith(t, c, r, key, SubscribeOptions{}, reject)
}

// subscribeWith runs c.SubscribeWith in the background until stop.
func subscribeWith(t testing.TB, c *Client, r *testRelay, key ed25519.PrivateKey, opts SubscribeOptions, reject func(Delivery) error) *collector {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	col := &collector{reject: reject, more: make(chan struct{}, 1), errc: make(chan error, 1), cancel: cancel}
	go func() {
		col.errc <- c.SubscribeWith(ctx, r.h.ID(), key, opts, func(_ context.Context, d Delivery) error {
			col.mu.Lock()
			col.got = append(col.got, d)
			col.mu.Unlock()
			select {
			case col.more <- struct{}{}:
			default:
			}
			if col.reject != nil {
				return col.reject(d)
			}
			return nil
		})
	}()
	t.Cleanup(func() { col.stop() })
	return col
}

// stop cancels the subscription and returns its error (nil for a clean
// cancellation).
func (col *collector) stop() error {
	col.cancel()
	err, ok := <-col.errc
	if !ok {
		return nil
	}
	close(col.errc)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func (col *collector) deliveries() []Delivery {
	col.mu.Lock()
	defer col.mu.Unlock()
	return append([]Delivery(nil), col.got...)
}

// waitFor waits until at least n deliveries arrived.
func (col *collector) waitFor(t testing.TB, n int) []Delivery {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if got := col.deliveries(); len(got) >= n {
			return got
		}
		select {
		case <-col.more:
		case err := <-col.errc:
			col.errc <- err
			t.Fatalf("subscription ended after %d deliveries: %v", len(col.deliveries()), err)
		case <-deadline:
			t.Fatalf("timed out with %d of %d deliveries", len(col.deliveries()), n)
		}
	}
}

// eventually polls cond for up to 10s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// rawStream speaks the protocol by hand, for tests of misbehaving peers.
type rawStream struct {
	t   testing.TB
	str network.Stream
	fr  *frameReader
}

func openRaw(t testing.TB, h host.Host, r *testRelay) *rawStream {
	t.Helper()
	learn(h, r)
	str, err := h.NewStream(testCtx(t), r.h.ID(), ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = str.Reset() })
	return &rawStream{t: t, str: str, fr: newFrameReader(str, 32<<10)}
}

func (rs *rawStream) write(b []byte) {
	rs.t.Helper()
	if _, err := rs.str.Write(b); err != nil {
		rs.t.Fatalf("write: %v", err)
	}
}

func (rs *rawStream) send(m message) { rs.t.Helper(); rs.write(appendFrame(nil, m)) }

func (rs *rawStream) next() (message, error) {
	_ = rs.str.SetReadDeadline(time.Now().Add(10 * time.Second))
	return rs.fr.next(clientFrameCeiling)
}

func (rs *rawStream) mustNext() message {
	rs.t.Helper()
	m, err := rs.next()
	if err != nil {
		rs.t.Fatalf("read frame: %v", err)
	}
	return m
}

// expectRefusal reads until an Error frame with code, then expects the
// relay to close the stream.
func (rs *rawStream) expectRefusal(code Code) {
	rs.t.Helper()
	for {
		m, err := rs.next()
		if err != nil {
			rs.t.Fatalf("want Error frame %v, got read error %v", code, err)
		}
		if e, ok := m.(*errorMsg); ok {
			if e.Code != code {
				rs.t.Fatalf("Error code = %v (%q), want %v", e.Code, e.Message, code)
			}
			break
		}
	}
	rs.expectEOF()
}

func (rs *rawStream) expectEOF() {
	rs.t.Helper()
	for {
		_, err := rs.next()
		if err == nil {
			continue // deliveries already in flight
		}
		if err != io.EOF {
			rs.t.Fatalf("want EOF, got %v", err)
		}
		return
	}
}

// auth opens a subscription as key, for relay id signer.
func (rs *rawStream) auth(key ed25519.PrivateKey, relay peer.ID) *challengeMsg {
	rs.t.Helper()
	rs.send(&subscribeMsg{})
	ch, ok := rs.mustNext().(*challengeMsg)
	if !ok {
		rs.t.Fatal("want Challenge")
	}
	rs.send(signAuth(key, relay, ch.Nonce))
	return ch
}

// waitSubscribed waits until the relay has a session for addr.
func (r *testRelay) waitSubscribed(addr Address) {
	r.t.Helper()
	eventually(r.t, "subscription", func() bool {
		r.srv.mu.Lock()
		defer r.srv.mu.Unlock()
		return r.srv.subs[addr] != nil
	})
}

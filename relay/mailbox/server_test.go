package mailbox

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/peergram/peergram/storage"
)

func TestSubscribeAuthRefused(t *testing.T) {
	r := startRelay(t, t.TempDir(), nil, Config{})
	c, _ := newClient(t, r)
	key, addr := newDevice(t)
	other, _ := newDevice(t)
	ctx := testCtx(t)
	if err := c.Deposit(ctx, r.h.ID(), addr, envID(1), []byte("secret")); err != nil {
		t.Fatal(err)
	}
	otherRelay := newHost(t, nil).ID()
	tests := []struct {
		name string
		auth func(ch *challengeMsg) message
		want Code
	}{
		{"another key's signature", func(ch *challengeMsg) message {
			m := signAuth(other, r.h.ID(), ch.Nonce)
			m.Address = addr
			return m
		}, CodeUnauthorized},
		{"signature for another relay", func(ch *challengeMsg) message {
			return signAuth(key, otherRelay, ch.Nonce)
		}, CodeUnauthorized},
		{"signature over another challenge", func(ch *challengeMsg) message {
			n := ch.Nonce
			n[0] ^= 1
			return signAuth(key, r.h.ID(), n)
		}, CodeUnauthorized},
		{"no signature", func(*challengeMsg) message {
			return &authMsg{Address: addr}
		}, CodeUnauthorized},
		{"ack instead of auth", func(*challengeMsg) message {
			return &ackMsg{IDs: []EnvelopeID{envID(1)}}
		}, CodeMalformed},
		{"truncated auth", func(*challengeMsg) message {
			return rawMsg{byte(typeAuth), addr[:]}
		}, CodeMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := openRaw(t, newHost(t, nil), r)
			raw.send(&subscribeMsg{})
			ch, ok := raw.mustNext().(*challengeMsg)
			if !ok {
				t.Fatal("want Challenge")
			}
			raw.send(tc.auth(ch))
			// Nothing is delivered: the very next frame is the refusal.
			e, ok := raw.mustNext().(*errorMsg)
			if !ok || e.Code != tc.want || e.Message == "" {
				t.Fatalf("got %#v, want Error %v", e, tc.want)
			}
			raw.expectEOF()
		})
	}
	if n, _ := r.stats(addr); n != 1 {
		t.Fatalf("mailbox holds %d after refused reads", n)
	}
	// A Client whose key does not own the mailbox just reads its own
	// (empty) mailbox; the owner still gets the envelope.
	col := subscribe(t, c, r, key, nil)
	if got := col.waitFor(t, 1); got[0].ID != envID(1) {
		t.Fatalf("owner got %v", got[0].ID)
	}
}

func TestClientSubscribeErrors(t *testing.T) {
	r := startRelay(t, t.TempDir(), nil, Config{})
	c, _ := newClient(t, r)
	ctx := testCtx(t)
	err := c.Subscribe(ctx, r.h.ID(), ed25519.PrivateKey{1, 2}, nil)
	if !errors.Is(err, ErrBadKey) {
		t.Fatalf("short key: %v", err)
	}
	// A relay that does not speak the protocol.
	plain := newHost(t, nil)
	c.h.Peerstore().AddAddrs(plain.ID(), plain.Addrs(), time.Hour)
	key, _ := newDevice(t)
	if err := c.Subscribe(ctx, plain.ID(), key, nil); err == nil {
		t.Fatal("subscribed to a host without the protocol")
	}
	if err := c.Deposit(ctx, plain.ID(), Address{}, EnvelopeID{}, nil); err == nil {
		t.Fatal("deposited to a host without the protocol")
	}
}

func TestAckForeignEnvelopeDeletesNothing(t *testing.T) {
	r := startRelay(t, t.TempDir(), nil, Config{})
	c, _ := newClient(t, r)
	keyA, addrA := newDevice(t)
	_, addrB := newDevice(t)
	ctx := testCtx(t)
	for i := range 2 {
		if err := c.Deposit(ctx, r.h.ID(), addrA, envID(i), []byte("for A")); err != nil {
			t.Fatal(err)
		}
		if err := c.Deposit(ctx, r.h.ID(), addrB, envID(10+i), []byte("for B")); err != nil {
			t.Fatal(err)
		}
	}
	raw := openRaw(t, newHost(t, nil), r)
	raw.auth(keyA, r.h.ID())
	if d := raw.mustNext().(*deliveryMsg); d.ID != envID(0) {
		t.Fatalf("first delivery %v", d.ID)
	}
	// B's IDs, an unknown ID, and one of A's own.
	raw.send(&ackMsg{IDs: []EnvelopeID{envID(10), envID(11), envID(99), envID(0)}})
	if err := raw.str.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	raw.expectEOF() // the relay commits acks before closing
	if n, _ := r.stats(addrB); n != 2 {
		t.Fatalf("B's mailbox holds %d, want 2", n)
	}
	if n, _ := r.stats(addrA); n != 1 {
		t.Fatalf("A's mailbox holds %d, want 1", n)
	}
	if got := counterValue(t, r.srv.met.acksIgnored); got != 3 {
		t.Errorf("ignored acks = %v, want 3", got)
	}
}

func TestBadFramesRefused(t *testing.T) {
	r := startRelay(t, t.TempDir(), nil, Config{MaxEnvelopeSize: 1000})
	good, _ := newClient(t, r)
	key, addr := newDevice(t)
	col := subscribe(t, good, r, key, nil)
	r.waitSubscribed(addr)
	ctx := testCtx(t)
	dep := func(i int) message { return &depositMsg{To: addr, ID: envID(1000 + i), Envelope: []byte("raw")} }
	header := func(n uint32, typ byte) []byte {
		return []byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), typ}
	}
	tests := []struct {
		name      string
		subscribe bool // authenticate first
		frames    [][]byte
		want      Code
		results   int // Results expected before the Error
	}{
		{"first frame of unknown type", false, [][]byte{appendFrame(nil, rawMsg{0x42, nil})}, CodeMalformed, 0},
		{"first frame zero length", false, [][]byte{{0, 0, 0, 0, 1}}, CodeMalformed, 0},
		{"first frame huge, not a deposit", false, [][]byte{header(1<<30, byte(typeSubscribe))}, CodeTooLarge, 0},
		{"deposit: zero length after a deposit", false, [][]byte{appendFrame(nil, dep(0)), {0, 0, 0, 0, 1}}, CodeMalformed, 1},
		{"deposit: truncated body", false, [][]byte{appendFrame(nil, rawMsg{byte(typeDeposit), make([]byte, 20)})}, CodeMalformed, 0},
		{"deposit: Result from the client", false, [][]byte{appendFrame(nil, dep(1)), appendFrame(nil, &resultMsg{})}, CodeMalformed, 1},
		{"deposit: mandatory unknown type", false, [][]byte{appendFrame(nil, dep(2)), appendFrame(nil, rawMsg{0x33, nil})}, CodeMalformed, 1},
		{"deposit: 1 GiB frame", false, [][]byte{appendFrame(nil, dep(3)), header(1<<30, byte(typeDeposit))}, CodeTooLarge, 1},
		{"subscribe: 1 GiB frame", true, [][]byte{header(1<<30, byte(typeAck))}, CodeTooLarge, 0},
		{"subscribe: ack count beyond body", true, [][]byte{appendFrame(nil, rawMsg{byte(typeAck), []byte{0, 5, 1, 2}})}, CodeMalformed, 0},
		{"subscribe: deposit frame", true, [][]byte{appendFrame(nil, dep(4))}, CodeMalformed, 0},
		{"subscribe: mandatory unknown type", true, [][]byte{appendFrame(nil, rawMsg{0x50, nil})}, CodeMalformed, 0},
		{"subscribe: oversized Subscribe", false, [][]byte{header(controlFrameMax+10, byte(typeSubscribe))}, CodeTooLarge, 0},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := openRaw(t, newHost(t, nil), r)
			if tc.subscribe {
				// Its own mailbox: a second session of the good
				// subscriber's would replace it.
				badKey, _ := newDevice(t)
				raw.auth(badKey, r.h.ID())
			}
			for _, f := range tc.frames {
				raw.write(f)
			}
			for range tc.results {
				if res, ok := raw.mustNext().(*resultMsg); !ok || res.Code != CodeOK {
					t.Fatalf("want Result OK first, got %#v", res)
				}
			}
			raw.expectRefusal(tc.want)
			// The relay keeps serving a well-behaved client.
			if err := good.Deposit(ctx, r.h.ID(), addr, envID(i), []byte("good")); err != nil {
				t.Fatalf("well-behaved deposit after a bad stream: %v", err)
			}
		})
	}
	got := col.waitFor(t, len(tests))
	if len(got) < len(tests) {
		t.Fatalf("well-behaved subscriber got %d", len(got))
	}
	if err := col.stop(); err != nil {
		t.Fatalf("well-behaved subscriber: %v", err)
	}
}

func TestOptionalFramesSkipped(t *testing.T) {
	r := startRelay(t, t.TempDir(), nil, Config{})
	_, addr := newDevice(t)
	raw := openRaw(t, newHost(t, nil), r)
	raw.send(&depositMsg{To: addr, ID: envID(1), Envelope: []byte("a")})
	raw.send(rawMsg{0x99, []byte("a future extension")})
	raw.send(&depositMsg{To: addr, ID: envID(2), Envelope: []byte("b")})
	for i := 1; i <= 2; i++ {
		res, ok := raw.mustNext().(*resultMsg)
		if !ok || res.ID != envID(i) || res.Code != CodeOK {
			t.Fatalf("result %d = %#v", i, res)
		}
	}
	_ = raw.str.CloseWrite()
	raw.expectEOF()
}

func TestStreamDeadlines(t *testing.T) {
	const idle = time.Second
	r := startRelay(t, t.TempDir(), nil, Config{}, func(s *Server) {
		s.idleTimeout, s.authTimeout = idle, idle
	})
	key, addr := newDevice(t)

	t.Run("silent before auth", func(t *testing.T) {
		raw := openRaw(t, newHost(t, nil), r)
		raw.send(&subscribeMsg{})
		raw.mustNext() // Challenge
		start := time.Now()
		if _, err := raw.next(); err == nil || time.Since(start) > 5*time.Second {
			t.Fatalf("stuck subscriber kept for %v (%v)", time.Since(start), err)
		}
	})
	t.Run("silent subscriber", func(t *testing.T) {
		raw := openRaw(t, newHost(t, nil), r)
		raw.auth(key, r.h.ID())
		raw.mustNext() // Drained
		start := time.Now()
		raw.expectEOF()
		if time.Since(start) > 5*time.Second {
			t.Fatalf("idle subscriber kept for %v", time.Since(start))
		}
	})
	t.Run("client keepalive and idle deposit stream", func(t *testing.T) {
		c, _ := newClient(t, r)
		c.pingInterval = idle / 10
		col := subscribe(t, c, r, key, nil)
		r.waitSubscribed(addr)
		ctx := testCtx(t)
		if err := c.Deposit(ctx, r.h.ID(), addr, envID(1), []byte("1")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * idle) // the relay closes the idle deposit stream meanwhile
		if err := c.Deposit(ctx, r.h.ID(), addr, envID(2), []byte("2")); err != nil {
			t.Fatalf("deposit after the idle stream was closed: %v", err)
		}
		col.waitFor(t, 2) // the subscription survived on keepalives
		if err := col.stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestServerLifecycle(t *testing.T) {
	db, err := storage.Open(storage.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	h := newHost(t, nil)

	for _, cfg := range []Config{
		{},
		{DB: db},
		{DB: db, Host: h, MaxEnvelopeSize: -1},
		{DB: db, Host: h, TTL: -time.Second},
		{DB: db, Host: h, MaxEnvelopeSize: 1 << 30},
	} {
		if _, err := NewServer(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewServer(%+v) = %v, want ErrInvalidConfig", cfg, err)
		}
	}

	s, err := NewServer(Config{DB: db, Host: h})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // never started
		t.Fatal(err)
	}
	if err := s.Start(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close = %v", err)
	}

	reg := prometheus.NewRegistry()
	s, err = NewServer(Config{DB: db, Host: h, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Fatal("second Start succeeded")
	}
	// Close with a live subscriber and a live deposit stream.
	r := &testRelay{t: t, h: h, srv: s, db: db}
	c, _ := newClient(t, r)
	key, addr := newDevice(t)
	ctx := testCtx(t)
	if err := c.Deposit(ctx, h.ID(), addr, envID(1), []byte("x")); err != nil {
		t.Fatal(err)
	}
	col := subscribe(t, c, r, key, nil)
	col.waitFor(t, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	select {
	case err := <-col.errc:
		col.errc <- err
		if err == nil {
			t.Fatal("Subscribe returned nil when the relay closed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Subscribe still running after the relay closed")
	}
	// Metrics were unregistered: a new server registers again.
	s2, err := NewServer(Config{DB: db, Host: h, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Deposit(ctx, h.ID(), addr, envID(2), []byte("x")); err == nil {
		t.Fatal("deposit to a closed relay succeeded")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Deposit(ctx, h.ID(), addr, envID(2), []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("deposit on a closed client = %v", err)
	}
}

func TestClientCloseEndsSubscribe(t *testing.T) {
	r := startRelay(t, t.TempDir(), nil, Config{})
	c, _ := newClient(t, r)
	key, addr := newDevice(t)
	col := subscribe(t, c, r, key, nil)
	r.waitSubscribed(addr)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-col.errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("Subscribe after Client.Close = %v", err)
	}
	close(col.errc)
}

// TestMocknet runs many depositors and one device over an in-memory network.
func TestMocknet(t *testing.T) {
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	const peers = 5
	for range peers + 1 {
		if _, err := mn.GenPeer(); err != nil {
			t.Fatal(err)
		}
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if err := mn.ConnectAllButSelf(); err != nil {
		t.Fatal(err)
	}
	hosts := mn.Hosts()
	db, err := storage.Open(storage.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	srv, err := NewServer(Config{DB: db, Host: hosts[0], Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	relay := hosts[0].ID()
	key, addr := newDevice(t)
	ctx := testCtx(t)
	errs := make(chan error, peers)
	for p := 1; p <= peers; p++ {
		c := NewClient(hosts[p], nil)
		t.Cleanup(func() { _ = c.Close() })
		go func() {
			for i := range 20 {
				if err := c.Deposit(ctx, relay, addr, envID(p*100+i), []byte("m")); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range peers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	dev := NewClient(hosts[1], nil)
	t.Cleanup(func() { _ = dev.Close() })
	sctx, cancel := context.WithCancel(ctx)
	got := 0
	err = dev.Subscribe(sctx, relay, key, func(context.Context, Delivery) error {
		if got++; got == peers*20 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe = %v", err)
	}
	if n, _, _ := srv.Stats(addr); n != 0 {
		t.Fatalf("mailbox holds %d after draining over mocknet", n)
	}
}

var _ = io.EOF

func TestConfigDefaults(t *testing.T) {
	db, err := storage.Open(storage.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	h := newHost(t, nil)
	s, err := NewServer(Config{DB: db, Host: h})
	if err != nil {
		t.Fatal(err)
	}
	c := s.cfg
	if c.AuthTimeout != 5*time.Second || c.MaxStoreBytes != 4<<30 || c.UnknownTTL != 7*24*time.Hour ||
		c.StrangerPercent != 10 || c.DepositBudgets != DefaultDepositBudgets || c.StrangerBudgets != DefaultStrangerBudgets {
		t.Fatalf("defaults: %+v", c)
	}
	if st := s.st; st.strangerCount != 10_000 || st.strangerBytes != 256<<20/10 || st.keyTTL != DefaultTTL+backstopTTL {
		t.Fatalf("derived limits: %d, %d, %v", st.strangerCount, st.strangerBytes, st.keyTTL)
	}
	s, err = NewServer(Config{DB: db, Host: h, TTL: time.Hour, StrangerBudgets: Budgets{Peer: Budget{Envelopes: -1}}})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.UnknownTTL != time.Hour || s.cfg.StrangerBudgets.Peer.Envelopes != -1 || s.cfg.StrangerBudgets.Peer.Bytes != DefaultStrangerBudgets.Peer.Bytes {
		t.Fatalf("UnknownTTL %v (at most TTL), stranger peer budget %+v", s.cfg.UnknownTTL, s.cfg.StrangerBudgets.Peer)
	}
	for _, bad := range []Config{
		{DB: db, Host: h, StrangerPercent: 101},
		{DB: db, Host: h, StrangerPercent: -1},
		{DB: db, Host: h, AuthTimeout: -time.Second},
		{DB: db, Host: h, MaxStoreBytes: -1},
		{DB: db, Host: h, UnknownTTL: -time.Second},
	} {
		if _, err := NewServer(bad); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewServer(%+v) = %v", bad, err)
		}
	}
}

// TestMetricsLabels: the Server's metrics carry only fixed label values
// (no path, address or peer ID), and the gauges follow what is held and
// what is open.
func TestMetricsLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := startRelay(t, t.TempDir(), nil, Config{Registerer: reg, MaxEnvelopeSize: 100, StrangerPercent: 100})
	c, _ := newClient(t, r)
	key, addr := newDevice(t)
	ctx := testCtx(t)
	for i := range 3 {
		if err := c.Deposit(ctx, r.h.ID(), addr, envID(i), []byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Deposit(ctx, r.h.ID(), addr, envID(9), make([]byte, 101)); !errors.Is(err, ErrTooLarge) {
		t.Fatal(err)
	}
	col := subscribe(t, c, r, key, nil)
	col.waitFor(t, 3)
	eventually(t, "gauges", func() bool {
		return gaugeValue(t, r.srv.met.streams.WithLabelValues(streamSubscribe)) == 1 &&
			gaugeValue(t, r.srv.met.streams.WithLabelValues(streamDeposit)) >= 1 &&
			gaugeValue(t, r.srv.met.heldEnvelopes) == 0
	})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{}
	for _, v := range []string{"stored", "duplicate", "handed_off", streamPending, streamDeposit, streamSubscribe, "auth_timeout"} {
		allowed[v] = true
	}
	for c := Code(0); c < 32; c++ {
		allowed[c.String()] = true
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if !allowed[l.GetValue()] || strings.ContainsAny(l.GetValue(), "/\\.") {
					t.Errorf("%s{%s=%q}: not a fixed label value", mf.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
	for _, want := range []string{"peergram_mailbox_held_envelopes", "peergram_mailbox_held_bytes", "peergram_mailbox_streams", "peergram_mailbox_refusals_total"} {
		if !names[want] {
			t.Errorf("metric %s not registered", want)
		}
	}
	if got := counterValue(t, r.srv.met.refusals.WithLabelValues("too_large")); got != 1 {
		t.Errorf("refusals{reason=too_large} = %v", got)
	}
}

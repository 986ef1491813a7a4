package directory

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/pqxdh"
	"github.com/peergram/peergram/relay/internal/ratelimit"
	"github.com/peergram/peergram/relay/internal/serve"
)

// ProtocolID is the libp2p protocol of the directory.
const ProtocolID = "/peergram/directory/1.0.0"

// ServiceName is the libp2p resource-manager service directory streams
// are attached to; a relay sets its limits (see relay.OperatorLimits).
const ServiceName = "peergram.directory"

// streamTimeout bounds a whole request on the relay: reading it, serving
// it and writing the answer. A 2 MiB publish needs ~35 KB/s to make it.
const streamTimeout = time.Minute

// Server is the relay side of the directory protocol: it stores what
// devices publish and answers fetches. It is safe for concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	met     *metrics
	st      *store
	streams *serve.Streams
	timeout time.Duration // streamTimeout; a field so tests can shorten it

	// Rate limits (see Config): requests per peer, and one-time prekeys
	// handed out per requesting peer and per device.
	publishes, fetches *ratelimit.Limiter[peer.ID]
	otkPeer            *ratelimit.Limiter[peer.ID]
	otkDevice          *ratelimit.Limiter[[64]byte] // account | device

	mu      sync.Mutex // guards the fields below
	started bool
	closed  bool
	stop    context.CancelFunc // ends the expiry loop
	loop    sync.WaitGroup
}

// NewServer validates cfg and returns a Server. It starts nothing; call
// Start.
func NewServer(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		timeout:   streamTimeout,
		met:       newMetrics(),
		st:        newStore(cfg.DB, cfg.MaxOneTime, cfg.AccountQuota),
		publishes: ratelimit.New[peer.ID](cfg.PublishRate.Burst, cfg.PublishRate.Every, maxRateKeys),
		fetches:   ratelimit.New[peer.ID](cfg.FetchRate.Burst, cfg.FetchRate.Every, maxRateKeys),
		otkPeer:   ratelimit.New[peer.ID](cfg.OneTimePerPeer.Burst, cfg.OneTimePerPeer.Every, maxRateKeys),
		otkDevice: ratelimit.New[[64]byte](cfg.OneTimePerDevice.Burst, cfg.OneTimePerDevice.Every, maxRateKeys),
	}
	s.streams = serve.New(serve.Config{
		Host:     cfg.Host,
		Protocol: ProtocolID,
		Service:  ServiceName,
		Logger:   cfg.Logger,
	}, s.handleStream)
	s.met.open = s.streams.Open
	return s, nil
}

// Start finishes deletions a crash interrupted, brings an older store's
// schema up to date, registers the metrics, starts deleting expired
// accounts and devices every ExpiryInterval, and registers the stream
// handler.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrClosed
	case s.started:
		return errors.New("directory: start: already started")
	}
	if err := s.st.sweep(nil); err != nil {
		return fmt.Errorf("directory: start: %w", err)
	}
	if err := s.st.migrate(s.cfg.Now().Unix()); err != nil {
		return fmt.Errorf("directory: start: %w", err)
	}
	if err := s.met.register(s.cfg.Registerer); err != nil {
		return fmt.Errorf("directory: start: %w", err)
	}
	if err := s.streams.Start(); err != nil {
		s.met.unregister(s.cfg.Registerer)
		return fmt.Errorf("directory: start: %w", err)
	}
	s.started = true
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.loop.Go(func() { s.expireLoop(ctx) })
	return nil
}

// Close removes the stream handler, resets open streams and waits for
// their handlers (a request already in a transaction finishes it) and for
// the expiry loop. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	started := s.started
	s.mu.Unlock()
	s.streams.Close()
	if !started {
		return nil
	}
	s.stop()
	s.loop.Wait()
	s.met.unregister(s.cfg.Registerer)
	return nil
}

// expireLoop deletes expired accounts and devices now and every
// ExpiryInterval until ctx is done.
func (s *Server) expireLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.ExpiryInterval)
	defer t.Stop()
	for {
		if _, err := s.Expire(); err != nil {
			s.log.Warn("directory: expiry", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Expired counts what one expiry pass deleted.
type Expired struct {
	Accounts int // accounts not published to for Config.Expiry
	Devices  int // listed devices whose bundle and record were not published for Config.Expiry
}

// Expire deletes every account and device not published for
// Config.Expiry, as the Server does every Config.ExpiryInterval.
func (s *Server) Expire() (Expired, error) {
	before := s.cfg.Now().Add(-s.cfg.Expiry).Unix()
	e, err := s.st.expire(before)
	s.met.expired.WithLabelValues("account").Add(float64(e.Accounts))
	s.met.expired.WithLabelValues("device").Add(float64(e.Devices))
	if e != (Expired{}) {
		s.log.Info("directory: expired", "accounts", e.Accounts, "devices", e.Devices)
	}
	if err != nil {
		return e, fmt.Errorf("directory: expire: %w", err)
	}
	return e, nil
}

// handleStream serves one request: one frame in, one frame out.
func (s *Server) handleStream(str network.Stream, log *slog.Logger) {
	_ = str.SetDeadline(time.Now().Add(s.timeout))
	fr := newFrameReader(str)
	t, n, err := fr.header()
	if err != nil {
		s.refuseErr(str, log, "none", err)
		return
	}
	op := "none"
	switch t {
	case typePublish:
		op = "publish"
	case typeFetch:
		op = "fetch"
	case typeStock:
		op = "stock"
	case typeHistory:
		op = "history"
	default:
		s.reply(str, log, op, &statusMsg{Code: CodeMalformed, Message: fmt.Sprintf("frame type 0x%02x is not a request", uint8(t))})
		return
	}
	// Rate limits come before the body is read or stored.
	from := str.Conn().RemotePeer()
	lim := s.fetches
	if t == typePublish {
		lim = s.publishes
	}
	if now := s.cfg.Now(); !lim.Allow(from, now) {
		wait := lim.Wait(from, now).Round(time.Second)
		s.reply(str, log, op, &statusMsg{Code: CodeRateLimited, Message: fmt.Sprintf("too many %s requests from this peer; retry in %v", op, max(wait, time.Second))})
		return
	}
	// The body bound is per type (MaxPublishSize at most); the resource
	// manager decides whether this many bytes may be held right now.
	if err := str.Scope().ReserveMemory(n, network.ReservationPriorityAlways); err != nil {
		s.reply(str, log, op, &statusMsg{Code: CodeUnavailable, Message: "relay busy: out of stream memory"})
		return
	}
	defer str.Scope().ReleaseMemory(n)
	body, err := fr.body(n)
	if err != nil {
		s.refuseErr(str, log, op, err)
		return
	}
	m, err := decodeBody(t, body)
	if err != nil {
		s.refuseErr(str, log, op, err)
		return
	}
	switch m := m.(type) {
	case *publishMsg:
		s.reply(str, log, op, s.servePublish(log, from, m))
	case *fetchMsg:
		s.reply(str, log, op, s.serveFetch(log, from, m))
	case *stockMsg:
		s.reply(str, log, op, s.serveStock(log, from, m))
	case *historyMsg:
		s.reply(str, log, op, s.serveHistory(log, m))
	}
}

func (s *Server) servePublish(log *slog.Logger, from peer.ID, m *publishMsg) message {
	req, err := validatePublish(m)
	if err != nil {
		return status(log, err)
	}
	req.now = s.cfg.Now().Unix()
	out, err := s.st.publish(req)
	if err != nil {
		return status(log, err)
	}
	if out.sweepErr != nil {
		// The publish is committed; the next publish or Start retries.
		log.Warn("directory: dropping prekeys of removed devices", "err", out.sweepErr)
	}
	for i, n := range out.added {
		s.met.added.WithLabelValues(kindNames[i]).Add(float64(n))
		s.met.notStored.WithLabelValues(kindNames[i], "max_per_device").Add(float64(out.capped[i]))
		s.met.notStored.WithLabelValues(kindNames[i], "account_quota").Add(float64(out.overQuota[i]))
	}
	s.met.dropped.Add(float64(out.dropped))
	log.Debug("directory: published", "account", req.list.Account, "version", req.list.Version,
		"new_list", out.listStored, "dropped", out.dropped, "onetime", out.added[0], "onetime_pq", out.added[1])
	st := &statusMsg{Code: CodeOK, Message: fmt.Sprintf("stored device list v%d; %d+%d one-time prekeys added",
		req.list.Version, out.added[0], out.added[1])}
	if n := out.overQuota[0] + out.overQuota[1]; n > 0 {
		st.Message += fmt.Sprintf("; %d not stored: the account's quota of %d bytes is full", n, s.cfg.AccountQuota)
	}
	if req.bundle != nil {
		// The stock goes only to the device itself (see ErrForbidden).
		if x, pq, err := s.st.stock(req.bundle.Device, from); err == nil {
			st.HasStock, st.X25519, st.MLKEM = true, uint32(x), uint32(pq)
		}
	}
	return st
}

func (s *Server) serveFetch(log *slog.Logger, from peer.ID, m *fetchMsg) message {
	// One decision per device per request, kept across the transaction's
	// retries so a retry takes no second token.
	decided := make(map[identity.DeviceID]bool)
	allow := func(d identity.DeviceID) bool {
		ok, seen := decided[d]
		if seen {
			return ok
		}
		now := s.cfg.Now()
		var dev [64]byte
		copy(dev[:], deviceKey(m.Account, d))
		switch {
		case !s.otkPeer.Allow(from, now):
			s.met.withheld.WithLabelValues("peer_rate").Inc()
		case !s.otkDevice.Allow(dev, now):
			s.met.withheld.WithLabelValues("device_rate").Inc()
		default:
			ok = true
		}
		decided[d] = ok
		return ok
	}
	msg, out, err := s.st.fetch(m.Account, allow)
	if err != nil {
		return status(log, err)
	}
	for i, n := range out.taken {
		s.met.served.WithLabelValues(kindNames[i]).Add(float64(n))
		s.met.exhausted.WithLabelValues(kindNames[i]).Add(float64(out.empty[i]))
	}
	return msg
}

func (s *Server) serveHistory(log *slog.Logger, m *historyMsg) message {
	if m.From == 0 || m.To < m.From {
		return &statusMsg{Code: CodeMalformed, Message: fmt.Sprintf("history range %d..%d", m.From, m.To)}
	}
	lists, err := s.st.listHistory(m.Account, m.From, m.To)
	if err != nil {
		return status(log, fmt.Errorf("%w: %w", ErrInternal, err))
	}
	return &listsMsg{Lists: lists}
}

func (s *Server) serveStock(log *slog.Logger, from peer.ID, m *stockMsg) message {
	info, err := s.st.stockInfo(m.Device, from)
	if err != nil {
		return status(log, err)
	}
	return &statusMsg{Code: CodeOK, Message: fmt.Sprintf("%d+%d one-time prekeys stored", info.X25519, info.MLKEM),
		HasStock: true, X25519: uint32(info.X25519), MLKEM: uint32(info.MLKEM),
		HasNext: true, NextX25519: info.NextX25519, NextMLKEM: info.NextMLKEM}
}

// validatePublish decodes the objects of a Publish and checks every
// signature: the list by its account, the bundle against the certificate
// of its (listed) device, the record by its (listed) device. It needs no
// stored state; the store then checks the list against the stored one.
func validatePublish(m *publishMsg) (*publishReq, error) {
	list, err := identity.ParseDeviceList(m.List)
	if err != nil {
		return nil, foreign(err)
	}
	if err := list.Verify(list.Account); err != nil {
		return nil, foreign(err)
	}
	req := &publishReq{list: list, listRaw: m.List}
	if len(m.Bundle) > 0 {
		b, err := pqxdh.ParseBundle(m.Bundle)
		if err != nil {
			return nil, foreign(err)
		}
		cert, err := list.Lookup(b.Device)
		if err != nil {
			return nil, foreign(err)
		}
		if err := b.Verify(cert); err != nil {
			return nil, fmt.Errorf("bundle of %s: %w", b.Device, foreign(err))
		}
		req.bundle = b
	}
	if len(m.Record) > 0 {
		r, err := ParseRecord(m.Record)
		if err != nil {
			return nil, err
		}
		if _, err := list.Lookup(r.Device); err != nil {
			return nil, foreign(err)
		}
		if err := r.Verify(); err != nil {
			return nil, err
		}
		req.record, req.recordRaw = r, m.Record
	}
	return req, nil
}

// status turns a refusal into a Status frame. Internal errors are logged
// here and described to the client only by their code.
func status(log *slog.Logger, err error) *statusMsg {
	c := codeOf(err)
	if c == CodeInternal {
		log.Error("directory: request failed", "err", err)
		return &statusMsg{Code: c, Message: "internal error"}
	}
	return &statusMsg{Code: c, Message: err.Error()}
}

// reply writes m and closes the stream (not reset, so the frame arrives).
func (s *Server) reply(str network.Stream, log *slog.Logger, op string, m message) {
	code := CodeOK
	if st, ok := m.(*statusMsg); ok {
		code = st.Code
	}
	s.met.requests.WithLabelValues(op, code.String()).Inc()
	if code != CodeOK && code != CodeNotFound && code != CodeInternal {
		log.Debug("directory: refused", "op", op, "code", code, "reason", m.(*statusMsg).Message)
	}
	if _, err := str.Write(appendFrame(nil, m)); err != nil {
		log.Debug("directory: write answer", "err", err)
		_ = str.Reset()
		return
	}
	_ = str.Close()
}

// refuseErr answers a read or decode error: protocol errors get a Status;
// transport errors (the peer went away, the deadline passed) just end the
// stream.
func (s *Server) refuseErr(str network.Stream, log *slog.Logger, op string, err error) {
	switch {
	case errors.Is(err, ErrTooLarge):
		s.reply(str, log, op, &statusMsg{Code: CodeTooLarge, Message: err.Error()})
	case errors.Is(err, ErrMalformed):
		s.reply(str, log, op, &statusMsg{Code: CodeMalformed, Message: err.Error()})
	default:
		if err != io.EOF {
			log.Debug("directory: stream ended", "err", err)
		}
		_ = str.Reset()
	}
}

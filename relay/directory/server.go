package directory

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/pqxdh"
	"github.com/peergram/peergram/storage"
)

// ProtocolID is the libp2p protocol of the directory.
const ProtocolID = "/peergram/directory/1.0.0"

// ServiceName is the libp2p resource-manager service directory streams
// are attached to; a relay sets its limits (see relay.OperatorLimits).
const ServiceName = "peergram.directory"

// streamTimeout bounds a whole request on the relay: reading it, serving
// it and writing the answer. A 2 MiB publish needs ~35 KB/s to make it.
const streamTimeout = time.Minute

// Config configures a Server.
type Config struct {
	// DB stores lists, bundles and records. Required. The Server does not
	// close it.
	DB *storage.DB

	// Host serves the protocol. Required. The Server does not close it.
	Host host.Host

	// Logger receives the Server's logs; nil discards them.
	Logger *slog.Logger

	// Registerer receives the Server's counters at Start (and loses them
	// at Close); nil registers nothing.
	Registerer prometheus.Registerer
}

// Server is the relay side of the directory protocol: it stores what
// devices publish and answers fetches. It is safe for concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger
	met *metrics
	st  *store

	timeout time.Duration // streamTimeout; a field so tests can shorten it

	mu       sync.Mutex // guards the fields below
	started  bool
	closed   bool
	streams  map[network.Stream]struct{}
	handlers sync.WaitGroup
}

// NewServer validates cfg and returns a Server. It starts nothing; call
// Start.
func NewServer(cfg Config) (*Server, error) {
	if cfg.DB == nil || cfg.Host == nil {
		return nil, fmt.Errorf("%w: DB and Host are required", ErrInvalidConfig)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		met:     newMetrics(),
		st:      newStore(cfg.DB),
		timeout: streamTimeout,
		streams: make(map[network.Stream]struct{}),
	}, nil
}

// Start finishes deletions a crash interrupted, registers the metrics and
// then the stream handler.
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
	if err := s.met.register(s.cfg.Registerer); err != nil {
		return fmt.Errorf("directory: start: %w", err)
	}
	s.started = true
	s.cfg.Host.SetStreamHandler(ProtocolID, s.handleStream)
	return nil
}

// Close removes the stream handler, resets open streams and waits for
// their handlers (a request already in a transaction finishes it). It is
// idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if !s.started {
		s.mu.Unlock()
		return nil
	}
	s.cfg.Host.RemoveStreamHandler(ProtocolID)
	for str := range s.streams {
		_ = str.Reset()
	}
	s.mu.Unlock()
	s.handlers.Wait()
	s.met.unregister(s.cfg.Registerer)
	return nil
}

// track registers a handler; false once Close has begun.
func (s *Server) track(str network.Stream) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.handlers.Add(1)
	s.streams[str] = struct{}{}
	return true
}

func (s *Server) untrack(str network.Stream) {
	s.mu.Lock()
	delete(s.streams, str)
	s.mu.Unlock()
	s.handlers.Done()
}

// handleStream serves one request: one frame in, one frame out.
func (s *Server) handleStream(str network.Stream) {
	if !s.track(str) {
		_ = str.Reset()
		return
	}
	defer s.untrack(str)
	log := s.log.With("peer", str.Conn().RemotePeer())
	if err := str.Scope().SetService(ServiceName); err != nil {
		log.Debug("directory: attach stream to service", "err", err)
		_ = str.Reset()
		return
	}
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
	default:
		s.reply(str, log, op, &statusMsg{Code: CodeMalformed, Message: fmt.Sprintf("frame type 0x%02x is not a request", uint8(t))})
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
		s.reply(str, log, op, s.servePublish(log, m))
	case *fetchMsg:
		s.reply(str, log, op, s.serveFetch(log, m))
	}
}

func (s *Server) servePublish(log *slog.Logger, m *publishMsg) message {
	req, err := validatePublish(m)
	if err != nil {
		return status(log, err)
	}
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
	}
	s.met.dropped.Add(float64(out.dropped))
	log.Debug("directory: published", "account", req.list.Account, "version", req.list.Version,
		"new_list", out.listStored, "dropped", out.dropped, "onetime", out.added[0], "onetime_pq", out.added[1])
	return &statusMsg{Code: CodeOK, Message: fmt.Sprintf("stored device list v%d; %d+%d one-time prekeys added",
		req.list.Version, out.added[0], out.added[1])}
}

func (s *Server) serveFetch(log *slog.Logger, m *fetchMsg) message {
	msg, out, err := s.st.fetch(m.Account)
	if err != nil {
		return status(log, err)
	}
	for i, n := range out.taken {
		s.met.served.WithLabelValues(kindNames[i]).Add(float64(n))
		s.met.exhausted.WithLabelValues(kindNames[i]).Add(float64(out.bundles - n))
	}
	return msg
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

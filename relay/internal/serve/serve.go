// Package serve is the scaffolding every relay protocol server repeats
// around its stream handler: register the handler on the host, attach
// each stream to the protocol's resource-manager service (whose limits
// the relay sets), give it a deadline, keep track of the streams being
// served so that Close can reset them and wait for their handlers, and
// count them for the metrics. The directory server uses it; the mailbox
// server's own copy is to move here, and the protocols to come (group
// history, blobs) start from it.
//
// A server embeds a *Streams, made by New with its protocol, service,
// deadline and the handler for one stream, calls Start when it is ready
// to serve and Close when it stops:
//
//	s.streams = serve.New(serve.Config{Host: h, Protocol: ProtocolID,
//		Service: ServiceName, Timeout: time.Minute, Logger: log}, s.handle)
//	...
//	func (s *Server) handle(str network.Stream, log *slog.Logger) { ... }
package serve

import (
	"errors"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// ErrClosed reports Start after Close.
var ErrClosed = errors.New("serve: closed")

// ErrStarted reports a second Start.
var ErrStarted = errors.New("serve: already started")

// Config says what a Streams serves.
type Config struct {
	// Host is where the handler is registered. Required.
	Host host.Host

	// Protocol is the protocol served. Required.
	Protocol protocol.ID

	// Service is the libp2p resource-manager service each stream is
	// attached to before the handler runs; a stream the service's limits
	// refuse is reset. "" attaches none.
	Service string

	// Timeout is the deadline of a whole stream, from its start; 0 sets
	// none (the handler sets its own).
	Timeout time.Duration

	// Logger is the base of the logger each handler receives (with the
	// remote peer added); nil discards.
	Logger *slog.Logger
}

// Handler serves one stream and returns when it is done with it; it
// closes or resets the stream itself. log names the remote peer.
type Handler func(str network.Stream, log *slog.Logger)

// Streams registers a Handler for a protocol and keeps track of the
// streams it serves. It is safe for concurrent use.
type Streams struct {
	cfg Config
	h   Handler

	mu       sync.Mutex // guards the fields below
	started  bool
	closed   bool
	open     map[network.Stream]struct{}
	handlers sync.WaitGroup
}

// New returns a Streams serving cfg.Protocol with h. It registers
// nothing yet; call Start.
func New(cfg Config, h Handler) *Streams {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Streams{cfg: cfg, h: h, open: make(map[network.Stream]struct{})}
}

// Start registers the handler on the host.
func (s *Streams) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrClosed
	case s.started:
		return ErrStarted
	}
	s.started = true
	s.cfg.Host.SetStreamHandler(s.cfg.Protocol, s.serve)
	return nil
}

// Close removes the handler, resets the streams being served and waits
// for their handlers to return. It is idempotent.
func (s *Streams) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	if s.started {
		s.cfg.Host.RemoveStreamHandler(s.cfg.Protocol)
	}
	for str := range s.open {
		_ = str.Reset()
	}
	s.mu.Unlock()
	s.handlers.Wait()
}

// Open returns the number of streams being served now.
func (s *Streams) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.open)
}

// serve is the host's stream handler.
func (s *Streams) serve(str network.Stream) {
	if !s.track(str) {
		_ = str.Reset()
		return
	}
	defer s.untrack(str)
	log := s.cfg.Logger.With("peer", str.Conn().RemotePeer())
	if s.cfg.Service != "" {
		if err := str.Scope().SetService(s.cfg.Service); err != nil {
			// The resource manager counts the refusal (see relay's
			// rcmgr metrics); a busy relay logs nothing above Debug.
			log.Debug("attach stream to service", "service", s.cfg.Service, "err", err)
			_ = str.Reset()
			return
		}
	}
	if s.cfg.Timeout > 0 {
		_ = str.SetDeadline(time.Now().Add(s.cfg.Timeout))
	}
	// A handler's bug must cost one stream, not the process (an outside
	// review crashed a relay with one blob Get whose range overflowed).
	defer func() {
		if r := recover(); r != nil {
			log.Error("stream handler panicked; stream reset", "protocol", s.cfg.Protocol, "panic", r, "stack", string(debug.Stack()))
			_ = str.Reset()
		}
	}()
	s.h(str, log)
}

// track registers a handler; false once Close has begun.
func (s *Streams) track(str network.Stream) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.handlers.Add(1)
	s.open[str] = struct{}{}
	return true
}

func (s *Streams) untrack(str network.Stream) {
	s.mu.Lock()
	delete(s.open, str)
	s.mu.Unlock()
	s.handlers.Done()
}

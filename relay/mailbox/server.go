package mailbox

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/peergram/peergram/storage"
)

// serviceName attaches mailbox streams to a libp2p resource-manager service.
const serviceName = "peergram.mailbox"

const (
	// Stream deadlines. A deposit stream or a subscriber silent for
	// idleTimeout is closed (Clients send keepalives well within it).
	idleTimeout  = 2 * time.Minute
	writeTimeout = time.Minute

	// depositPipeline and depositBudget bound the deposits of one stream
	// awaiting their answer, by count and by bytes.
	depositPipeline = 1024
	depositBudget   = 8 << 20

	// Group-commit bounds: storage caps a transaction at 15% of a
	// memtable (2.4 MiB by default); a batch over it is split.
	maxBatchCount = 2048
	maxBatchBytes = 2 << 20

	// Delivery read-ahead per storage read.
	loadCount = 256
	loadBytes = 1 << 20

	// maxEnvelopeCeiling bounds Config.MaxEnvelopeSize so that every
	// Delivery fits what a Client accepts.
	maxEnvelopeCeiling = clientFrameCeiling - frameOverhead

	// Frame reader buffers: small until a stream proves itself (an
	// unauthenticated stream holds as little as possible), larger for
	// deposit streams, which carry many frames.
	pendingReadBuffer = 512
	depositReadBuffer = 32 << 10
)

// Defaults of Config fields left zero.
const (
	DefaultMaxEnvelopeSize     = 256 << 10
	DefaultMaxMailboxEnvelopes = 100_000
	DefaultMaxMailboxBytes     = 256 << 20
	DefaultTTL                 = 30 * 24 * time.Hour
	DefaultWindow              = 1024
	DefaultAuthTimeout         = 5 * time.Second
	DefaultMaxStoreBytes       = 4 << 30
	DefaultUnknownTTL          = 7 * 24 * time.Hour
	DefaultStrangerPercent     = 10
)

// Config configures a Server. Zero fields take the defaults named.
type Config struct {
	// DB stores the envelopes. Required. The Server does not close it.
	DB *storage.DB

	// Host serves the protocol. Required. The Server does not close it.
	Host host.Host

	// MaxEnvelopeSize is the largest envelope accepted, in bytes;
	// defaults to DefaultMaxEnvelopeSize (256 KiB).
	MaxEnvelopeSize int

	// MaxMailboxEnvelopes is the most envelopes one mailbox holds;
	// defaults to DefaultMaxMailboxEnvelopes (100,000).
	MaxMailboxEnvelopes int

	// MaxMailboxBytes is the most envelope bytes one mailbox holds;
	// defaults to DefaultMaxMailboxBytes (256 MiB).
	MaxMailboxBytes int64

	// StrangerPercent is the part, in percent of MaxMailboxEnvelopes and
	// of MaxMailboxBytes, that deposits without a valid delivery token may
	// fill in one mailbox, all strangers together; the rest is kept for
	// the owner's contacts. Defaults to DefaultStrangerPercent (10); 100
	// makes no difference between them.
	StrangerPercent int

	// MaxStoreBytes caps the envelope bytes of all mailboxes together;
	// defaults to DefaultMaxStoreBytes (4 GiB), sized for a small VPS disk
	// (Badger's files take up to about twice the envelope bytes). Above
	// it deposits are refused with CodeRelayFull; the last 5 % are kept
	// for deposits with a valid delivery token. Reads and acks go on.
	MaxStoreBytes int64

	// TTL is how long an unacked envelope is kept in a known mailbox (one
	// whose owner has authenticated at least once); defaults to
	// DefaultTTL (30 days).
	TTL time.Duration

	// UnknownTTL is how long an envelope is kept in a mailbox whose owner
	// has never authenticated to this relay (unknown mailboxes are where
	// junk goes); defaults to DefaultUnknownTTL (7 days), at most TTL. A
	// mailbox becomes known at its owner's first authentication, which
	// the relay keeps for 3×TTL after the last one.
	UnknownTTL time.Duration

	// DepositBudgets bound every deposit per remote peer and per remote
	// IP address (token buckets); zero fields default to
	// DefaultDepositBudgets. Over budget, deposits are refused with
	// CodeRateLimited.
	DepositBudgets Budgets

	// StrangerBudgets bound, in addition, deposits without a valid
	// delivery token; zero fields default to DefaultStrangerBudgets.
	StrangerBudgets Budgets

	// Window is the most deliveries a subscriber may leave unacked;
	// defaults to DefaultWindow (1024).
	Window int

	// AuthTimeout bounds the time from the opening of a stream to its
	// first frame and, on a subscribe stream, to a verified Auth; the
	// stream is then closed. Defaults to DefaultAuthTimeout (5 s).
	AuthTimeout time.Duration

	// NoHandoff stores every deposit before delivering it, even when its
	// owner is subscribed and could take it at once (see live.go). Default
	// false: hand-off on. Benchmarks of the durable path set it.
	NoHandoff bool

	// Logger receives the Server's logs; nil discards them.
	Logger *slog.Logger

	// Registerer receives the Server's metrics at Start (and loses them
	// at Close); nil registers nothing.
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() (Config, error) {
	if c.DB == nil || c.Host == nil {
		return c, fmt.Errorf("%w: DB and Host are required", ErrInvalidConfig)
	}
	if c.MaxEnvelopeSize < 0 || c.MaxMailboxEnvelopes < 0 || c.MaxMailboxBytes < 0 || c.TTL < 0 || c.Window < 0 ||
		c.AuthTimeout < 0 || c.MaxStoreBytes < 0 || c.UnknownTTL < 0 || c.StrangerPercent < 0 {
		return c, fmt.Errorf("%w: negative limit", ErrInvalidConfig)
	}
	if c.MaxEnvelopeSize > maxEnvelopeCeiling {
		return c, fmt.Errorf("%w: MaxEnvelopeSize %d > %d", ErrInvalidConfig, c.MaxEnvelopeSize, maxEnvelopeCeiling)
	}
	if c.StrangerPercent > 100 {
		return c, fmt.Errorf("%w: StrangerPercent %d > 100", ErrInvalidConfig, c.StrangerPercent)
	}
	set := func(p *int, d int) {
		if *p == 0 {
			*p = d
		}
	}
	set(&c.MaxEnvelopeSize, DefaultMaxEnvelopeSize)
	set(&c.MaxMailboxEnvelopes, DefaultMaxMailboxEnvelopes)
	set(&c.Window, DefaultWindow)
	set(&c.StrangerPercent, DefaultStrangerPercent)
	if c.MaxMailboxBytes == 0 {
		c.MaxMailboxBytes = DefaultMaxMailboxBytes
	}
	if c.MaxStoreBytes == 0 {
		c.MaxStoreBytes = DefaultMaxStoreBytes
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.UnknownTTL == 0 {
		c.UnknownTTL = DefaultUnknownTTL
	}
	c.UnknownTTL = min(c.UnknownTTL, c.TTL)
	if c.AuthTimeout == 0 {
		c.AuthTimeout = DefaultAuthTimeout
	}
	c.DepositBudgets = c.DepositBudgets.withDefaults(DefaultDepositBudgets)
	c.StrangerBudgets = c.StrangerBudgets.withDefaults(DefaultStrangerBudgets)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Server is the relay side of the mailbox protocol. It is safe for
// concurrent use.
type Server struct {
	cfg      Config
	log      *slog.Logger
	met      *metrics
	st       *store
	admit    *admission
	owners   *owners
	self     peer.ID
	maxFrame int // body bound of Deposit frames
	maxDrain int // Deposit bodies up to this are skipped, not fatal

	// Deadlines; fields so tests can shorten them.
	idleTimeout  time.Duration
	writeTimeout time.Duration
	authTimeout  time.Duration
	handoffWait  time.Duration // wait for a handed-off envelope's ack
	queueWait    time.Duration // wait for a hand-off to be written
	sweepEvery   time.Duration

	com        *committer    // set by Start
	reqs       chan request  // to the committer
	quit       chan struct{} // closed by Close
	stopCommit chan struct{} // closed by Close once handlers are gone

	mu      sync.Mutex // guards the fields below
	started bool
	closed  bool
	streams map[network.Stream]struct{}
	subs    map[Address]*session // one authenticated session per mailbox

	handlers  sync.WaitGroup
	committer sync.WaitGroup
	sweeper   sync.WaitGroup
}

// NewServer validates cfg and returns a Server. It starts nothing; call
// Start.
func NewServer(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	met := newMetrics()
	st := newStore(cfg.DB, &cfg, cfg.Logger, met)
	maxFrame := cfg.MaxEnvelopeSize + frameOverhead
	return &Server{
		cfg:          cfg,
		log:          cfg.Logger,
		met:          met,
		st:           st,
		admit:        newAdmission(cfg.DepositBudgets, cfg.StrangerBudgets),
		owners:       newOwners(st),
		self:         cfg.Host.ID(),
		maxFrame:     maxFrame,
		maxDrain:     max(4*maxFrame, 16<<20),
		idleTimeout:  idleTimeout,
		writeTimeout: writeTimeout,
		authTimeout:  cfg.AuthTimeout,
		handoffWait:  handoffTimeout,
		queueWait:    handoffQueueTimeout,
		sweepEvery:   sweepInterval(cfg.UnknownTTL),
		reqs:         make(chan request, maxBatchCount),
		quit:         make(chan struct{}),
		stopCommit:   make(chan struct{}),
		streams:      make(map[network.Stream]struct{}),
		subs:         make(map[Address]*session),
	}, nil
}

// Start leases the storage sequence, counts what the store holds,
// registers the metrics, starts the committer and the expiry sweep, and
// registers the stream handler.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrClosed
	case s.started:
		return errors.New("mailbox: start: already started")
	}
	if err := s.st.open(); err != nil {
		return fmt.Errorf("mailbox: start: %w", err)
	}
	if err := s.met.register(s.cfg.Registerer); err != nil {
		_ = s.st.close()
		return fmt.Errorf("mailbox: start: %w", err)
	}
	s.com = newCommitter(s.st, s.met, s.reqs, s.stopCommit, s.notify)
	if err := s.com.init(); err != nil {
		s.met.unregister(s.cfg.Registerer)
		_ = s.st.close()
		return fmt.Errorf("mailbox: start: %w", err)
	}
	s.started = true
	s.committer.Add(1)
	go func() {
		defer s.committer.Done()
		s.com.run()
	}()
	s.sweeper.Add(1)
	go func() {
		defer s.sweeper.Done()
		s.runSweep()
	}()
	s.cfg.Host.SetStreamHandler(ProtocolID, s.handleStream)
	return nil
}

// Close removes the stream handler, resets open streams, waits for their
// handlers, the sweep and the committer (deposits already handed to it
// are committed), and returns the sequence lease. It is idempotent.
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
	close(s.quit)
	for str := range s.streams {
		_ = str.Reset()
	}
	s.mu.Unlock()

	s.handlers.Wait()
	s.sweeper.Wait()
	close(s.stopCommit)
	s.committer.Wait()
	s.met.unregister(s.cfg.Registerer)
	if err := s.st.close(); err != nil {
		return fmt.Errorf("mailbox: close: %w", err)
	}
	return nil
}

// Stats returns how many envelopes addr's mailbox holds and their total
// size, counted exactly.
func (s *Server) Stats(addr Address) (count int, bytes int64, err error) {
	count, bytes, err = s.st.stats(addr)
	if err != nil {
		return 0, 0, fmt.Errorf("mailbox: stats: %w", err)
	}
	return count, bytes, nil
}

// submit hands r to the committer unless the Server is closing.
func (s *Server) submit(r request) bool {
	select {
	case s.reqs <- r:
		return true
	case <-s.quit:
		return false
	}
}

// notify wakes the subscribers of mailboxes that received envelopes.
func (s *Server) notify(addrs []Address) {
	if len(addrs) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range addrs {
		if sess := s.subs[a]; sess != nil {
			sess.poke()
		}
	}
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

// streamKind keeps the streams gauge: a stream is counted under one kind
// at a time.
type streamKind struct {
	g    *prometheus.GaugeVec
	kind string
}

func (k *streamKind) set(kind string) {
	if k.kind != "" {
		k.g.WithLabelValues(k.kind).Dec()
	}
	k.kind = kind
	if kind != "" {
		k.g.WithLabelValues(kind).Inc()
	}
}

func (s *Server) handleStream(str network.Stream) {
	if !s.track(str) {
		_ = str.Reset()
		return
	}
	defer s.untrack(str)
	kind := &streamKind{g: s.met.streams}
	kind.set(streamPending)
	defer kind.set("")
	log := s.log.With("peer", str.Conn().RemotePeer())
	if err := str.Scope().SetService(serviceName); err != nil {
		log.Debug("mailbox: attach stream to service", "err", err)
		_ = str.Reset()
		return
	}
	// One deadline from the stream's opening to its first frame and, on
	// a subscribe stream, to a verified Auth: a peer that does not
	// authenticate in time holds the stream (and its resource-manager
	// slot) no longer than that, however it dribbles its bytes.
	authDeadline := time.Now().Add(s.authTimeout)
	fr := newFrameReader(str, pendingReadBuffer)
	_ = str.SetReadDeadline(authDeadline)
	t, n, err := fr.header(s.maxFrame)
	switch {
	case t == typeDeposit && (err == nil || errors.Is(err, ErrFrameTooLarge)):
		kind.set(streamDeposit)
		fr.grow(depositReadBuffer)
		s.serveDeposits(str, fr, log, header{t, n, err})
	case err != nil:
		s.refuseErr(str, log, err)
	case t == typeSubscribe:
		if n > controlFrameMax {
			s.refuse(str, log, CodeTooLarge, "Subscribe frame too large")
			return
		}
		if err := fr.discard(n); err != nil { // body is empty in 1.0.0
			s.refuseErr(str, log, err)
			return
		}
		s.serveSubscribe(str, fr, log, authDeadline, kind)
	default:
		s.refuse(str, log, CodeMalformed, fmt.Sprintf("first frame is type 0x%02x, want Deposit or Subscribe", uint8(t)))
	}
}

// refuse sends an Error frame and closes the stream (not reset, so the
// frame arrives).
func (s *Server) refuse(str network.Stream, log *slog.Logger, code Code, text string) {
	s.met.refusal(code)
	log.Debug("mailbox: refusing stream", "code", code, "reason", text)
	_ = str.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	if _, err := str.Write(appendFrame(nil, &errorMsg{Code: code, Message: text})); err != nil {
		_ = str.Reset()
		return
	}
	_ = str.Close()
}

// refuseErr refuses a stream for a read or decode error: protocol errors
// get an Error frame; a missed authentication deadline and transport
// errors just end the stream.
func (s *Server) refuseErr(str network.Stream, log *slog.Logger, err error) {
	switch {
	case errors.Is(err, ErrFrameTooLarge):
		s.refuse(str, log, CodeTooLarge, err.Error())
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrUnknownFrame), errors.Is(err, ErrUnexpectedFrame):
		s.refuse(str, log, CodeMalformed, err.Error())
	case isTimeout(err):
		s.met.refusals.WithLabelValues("auth_timeout").Inc()
		log.Debug("mailbox: stream did not authenticate in time", "err", err)
		_ = str.Reset()
	default:
		log.Debug("mailbox: stream ended", "err", err)
		_ = str.Reset()
	}
}

// isTimeout reports a read or write deadline reached (yamux reports its
// own error type, other transports os.ErrDeadlineExceeded).
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &t) && t.Timeout()
}

package mailbox

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	authTimeout  = 30 * time.Second

	// depositPipeline and depositBudget bound the deposits of one stream
	// awaiting commit, by count and by bytes.
	depositPipeline = 1024
	depositBudget   = 8 << 20

	// Group-commit bounds: storage caps a transaction at 15% of a
	// memtable (2.4 MiB by default); a batch over it is split.
	maxBatchCount = 1024
	maxBatchBytes = 1 << 20

	// Delivery read-ahead per storage read.
	loadCount = 128
	loadBytes = 1 << 20

	// maxEnvelopeCeiling bounds Config.MaxEnvelopeSize so that every
	// Delivery fits what a Client accepts.
	maxEnvelopeCeiling = clientFrameCeiling - frameOverhead
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

	// TTL is how long an unacked envelope is kept; defaults to
	// DefaultTTL (30 days). Storage expiry has one-second granularity.
	TTL time.Duration

	// Window is the most deliveries a subscriber may leave unacked;
	// defaults to DefaultWindow (256).
	Window int

	// NoHandoff stores every deposit before delivering it, even when its
	// owner is subscribed and could take it at once (see live.go). Default
	// false: hand-off on. Benchmarks of the durable path set it.
	NoHandoff bool

	// Logger receives the Server's logs; nil discards them.
	Logger *slog.Logger

	// Registerer receives the Server's counters at Start (and loses them
	// at Close); nil registers nothing.
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() (Config, error) {
	if c.DB == nil || c.Host == nil {
		return c, fmt.Errorf("%w: DB and Host are required", ErrInvalidConfig)
	}
	if c.MaxEnvelopeSize < 0 || c.MaxMailboxEnvelopes < 0 || c.MaxMailboxBytes < 0 || c.TTL < 0 || c.Window < 0 {
		return c, fmt.Errorf("%w: negative limit", ErrInvalidConfig)
	}
	if c.MaxEnvelopeSize > maxEnvelopeCeiling {
		return c, fmt.Errorf("%w: MaxEnvelopeSize %d > %d", ErrInvalidConfig, c.MaxEnvelopeSize, maxEnvelopeCeiling)
	}
	if c.MaxEnvelopeSize == 0 {
		c.MaxEnvelopeSize = DefaultMaxEnvelopeSize
	}
	if c.MaxMailboxEnvelopes == 0 {
		c.MaxMailboxEnvelopes = DefaultMaxMailboxEnvelopes
	}
	if c.MaxMailboxBytes == 0 {
		c.MaxMailboxBytes = DefaultMaxMailboxBytes
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
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
	self     peer.ID
	maxFrame int // body bound of Deposit frames
	maxDrain int // Deposit bodies up to this are skipped, not fatal

	// Deadlines; fields so tests can shorten them.
	idleTimeout  time.Duration
	writeTimeout time.Duration
	authTimeout  time.Duration
	handoffWait  time.Duration // wait for a handed-off envelope's ack

	com        *committer    // set by Start
	reqs       chan request  // to the committer
	quit       chan struct{} // closed by Close
	stopCommit chan struct{} // closed by Close once handlers are gone

	mu      sync.Mutex // guards the fields below
	started bool
	closed  bool
	streams map[network.Stream]struct{}
	subs    map[Address]map[*session]struct{}

	liveMu sync.Mutex // guards live
	live   map[liveKey]*liveDep

	handlers  sync.WaitGroup
	committer sync.WaitGroup
}

// NewServer validates cfg and returns a Server. It starts nothing; call
// Start.
func NewServer(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	met := newMetrics()
	maxFrame := cfg.MaxEnvelopeSize + frameOverhead
	return &Server{
		cfg:          cfg,
		log:          cfg.Logger,
		met:          met,
		st:           newStore(cfg.DB, &cfg, cfg.Logger, met),
		self:         cfg.Host.ID(),
		maxFrame:     maxFrame,
		maxDrain:     max(4*maxFrame, 16<<20),
		idleTimeout:  idleTimeout,
		writeTimeout: writeTimeout,
		authTimeout:  authTimeout,
		handoffWait:  handoffTimeout,
		reqs:         make(chan request, maxBatchCount),
		quit:         make(chan struct{}),
		stopCommit:   make(chan struct{}),
		streams:      make(map[network.Stream]struct{}),
		subs:         make(map[Address]map[*session]struct{}),
		live:         make(map[liveKey]*liveDep),
	}, nil
}

// Start leases the storage sequence, registers the metrics, starts the
// committer and registers the stream handler.
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
	s.cfg.Host.SetStreamHandler(ProtocolID, s.handleStream)
	return nil
}

// Close removes the stream handler, resets open streams, waits for their
// handlers and the committer (deposits already handed to it are
// committed), and returns the sequence lease. It is idempotent.
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
	close(s.stopCommit)
	s.committer.Wait()
	s.met.unregister(s.cfg.Registerer)
	if err := s.st.close(); err != nil {
		return fmt.Errorf("mailbox: close: %w", err)
	}
	return nil
}

// Stats returns how many envelopes addr's mailbox holds and their total
// size, counted exactly (expired envelopes excluded).
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
		for sess := range s.subs[a] {
			sess.poke()
		}
	}
}

func (s *Server) addSub(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.subs[sess.addr]
	if m == nil {
		m = make(map[*session]struct{})
		s.subs[sess.addr] = m
	}
	m[sess] = struct{}{}
}

func (s *Server) removeSub(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.subs[sess.addr], sess)
	if len(s.subs[sess.addr]) == 0 {
		delete(s.subs, sess.addr)
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

func (s *Server) handleStream(str network.Stream) {
	if !s.track(str) {
		_ = str.Reset()
		return
	}
	defer s.untrack(str)
	log := s.log.With("peer", str.Conn().RemotePeer())
	if err := str.Scope().SetService(serviceName); err != nil {
		log.Debug("mailbox: attach stream to service", "err", err)
		_ = str.Reset()
		return
	}
	fr := newFrameReader(str)
	_ = str.SetReadDeadline(time.Now().Add(s.authTimeout))
	t, n, err := fr.header(s.maxFrame)
	switch {
	case t == typeDeposit && (err == nil || errors.Is(err, ErrFrameTooLarge)):
		s.serveDeposits(str, fr, log, header{t, n, err})
	case err != nil:
		s.refuseErr(str, log, err)
	case t == typeSubscribe:
		if n > controlFrameMax {
			s.refuse(str, log, CodeTooLarge, "Subscribe frame too large")
			return
		}
		if err := fr.discard(n); err != nil { // body is empty in 1.0.0
			_ = str.Reset()
			return
		}
		s.serveSubscribe(str, fr, log)
	default:
		s.refuse(str, log, CodeMalformed, fmt.Sprintf("first frame is type 0x%02x, want Deposit or Subscribe", uint8(t)))
	}
}

// refuse sends an Error frame and closes the stream (not reset, so the
// frame arrives).
func (s *Server) refuse(str network.Stream, log *slog.Logger, code Code, text string) {
	s.met.refusals.WithLabelValues(code.String()).Inc()
	log.Debug("mailbox: refusing stream", "code", code, "reason", text)
	_ = str.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	if _, err := str.Write(appendFrame(nil, &errorMsg{Code: code, Message: text})); err != nil {
		_ = str.Reset()
		return
	}
	_ = str.Close()
}

// refuseErr refuses a stream for a read or decode error: protocol errors
// get an Error frame; transport errors just end the stream.
func (s *Server) refuseErr(str network.Stream, log *slog.Logger, err error) {
	switch {
	case errors.Is(err, ErrFrameTooLarge):
		s.refuse(str, log, CodeTooLarge, err.Error())
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrUnknownFrame), errors.Is(err, ErrUnexpectedFrame):
		s.refuse(str, log, CodeMalformed, err.Error())
	default:
		log.Debug("mailbox: stream ended", "err", err)
		_ = str.Reset()
	}
}

// header is a frame header already read.
type header struct {
	t   frameType
	n   int
	err error
}

// pendingDep is a deposit awaiting its answer, in stream order.
type pendingDep struct {
	id       EnvelopeID
	res      chan outcome // nil when out is already known
	out      outcome
	fatal    bool // answer with an Error frame, then close
	reserved int  // budget to release
}

// budget bounds the bytes one deposit stream holds in memory, and
// accounts them to the stream's libp2p resource scope in 1 MiB steps (a
// reservation per frame costs more than the frame). A reader waits in
// acquire until the writer releases; the writer always does, because the
// committer outlives every handler.
type budget struct {
	scope    network.ResourceScope
	mu       sync.Mutex
	cond     sync.Cond
	used     int
	reserved int // held in scope
	limit    int
}

const budgetStep = 1 << 20

func newBudget(scope network.ResourceScope, limit int) *budget {
	b := &budget{scope: scope, limit: limit}
	b.cond.L = &b.mu
	return b
}

// acquire takes n bytes; a single request larger than the limit is
// admitted alone. It fails if the resource manager refuses the memory.
func (b *budget) acquire(n int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.used > 0 && b.used+n > b.limit {
		b.cond.Wait()
	}
	if need := b.used + n - b.reserved; need > 0 {
		step := (need + budgetStep - 1) / budgetStep * budgetStep
		if err := b.scope.ReserveMemory(step, network.ReservationPriorityAlways); err != nil {
			return err
		}
		b.reserved += step
	}
	b.used += n
	return nil
}

func (b *budget) release(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	if spare := b.reserved - b.used; spare > 2*budgetStep {
		give := spare - budgetStep
		b.scope.ReleaseMemory(give)
		b.reserved -= give
	}
	b.cond.Broadcast()
}

// close returns every reservation; the stream is done.
func (b *budget) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.reserved > 0 {
		b.scope.ReleaseMemory(b.reserved)
		b.reserved = 0
	}
}

func (s *Server) serveDeposits(str network.Stream, fr *frameReader, log *slog.Logger, h header) {
	pending := make(chan *pendingDep, depositPipeline)
	writerDone := make(chan struct{})
	mem := newBudget(str.Scope(), depositBudget)
	defer mem.close()
	go s.writeResults(str, pending, mem, writerDone)
	for {
		p, stop := s.readDeposit(str, fr, log, h, mem)
		if p != nil {
			pending <- p // the writer drains it, whatever happens
		}
		if stop {
			break
		}
		_ = str.SetReadDeadline(time.Now().Add(s.idleTimeout))
		t, n, err := fr.header(s.maxFrame)
		h = header{t, n, err}
	}
	close(pending)
	<-writerDone
	// After a fatal Error frame or the client's CloseWrite, all answers
	// are written: close (not reset) so they arrive.
	_ = str.Close()
}

// readDeposit reads the body of the frame whose header is h and turns it
// into a pendingDep (nil when nothing is to be answered). stop reports
// that the stream is done.
func (s *Server) readDeposit(str network.Stream, fr *frameReader, log *slog.Logger, h header, mem *budget) (p *pendingDep, stop bool) {
	fatal := func(code Code, text string) (*pendingDep, bool) {
		log.Debug("mailbox: refusing deposit stream", "code", code, "reason", text)
		return &pendingDep{out: outcome{code, text}, fatal: true}, true
	}
	switch {
	case h.err == io.EOF:
		return nil, true
	case errors.Is(h.err, ErrFrameTooLarge) && h.t == typeDeposit && h.n <= s.maxDrain:
		// Over the limit but small enough to skip: answer it, keep the stream.
		id, err := s.skipDeposit(fr, h.n)
		if err != nil {
			return nil, true
		}
		return &pendingDep{id: id, out: outcome{CodeTooLarge, fmt.Sprintf(
			"deposit frame of %d bytes; this relay accepts envelopes up to %d bytes", h.n, s.cfg.MaxEnvelopeSize)}}, false
	case errors.Is(h.err, ErrFrameTooLarge):
		return fatal(CodeTooLarge, h.err.Error())
	case errors.Is(h.err, ErrMalformed):
		return fatal(CodeMalformed, h.err.Error())
	case h.err != nil:
		log.Debug("mailbox: deposit stream ended", "err", h.err)
		return nil, true
	case h.t >= optionalFrame:
		if err := fr.discard(h.n); err != nil {
			return nil, true
		}
		return nil, false
	case h.t != typeDeposit:
		return fatal(CodeMalformed, fmt.Sprintf("frame type 0x%02x on a deposit stream", uint8(h.t)))
	}
	if err := mem.acquire(h.n); err != nil {
		id, err := s.skipDeposit(fr, h.n)
		if err != nil {
			return nil, true
		}
		return &pendingDep{id: id, out: outcome{CodeUnavailable, "relay busy: out of stream memory"}}, false
	}
	release := func() { mem.release(h.n) }
	body, err := fr.body(h.n)
	if err != nil {
		release()
		return nil, true
	}
	m, err := decodeBody(h.t, body)
	if err != nil {
		release()
		return fatal(CodeMalformed, err.Error())
	}
	d := m.(*depositMsg)
	if len(d.Envelope) > s.cfg.MaxEnvelopeSize {
		release()
		return &pendingDep{id: d.ID, out: outcome{CodeTooLarge, fmt.Sprintf(
			"envelope of %d bytes; this relay accepts up to %d", len(d.Envelope), s.cfg.MaxEnvelopeSize)}}, false
	}
	res := make(chan outcome, 1)
	if !s.deposit(d, res) {
		release()
		return &pendingDep{id: d.ID, out: outcome{CodeUnavailable, "relay shutting down"}}, true
	}
	return &pendingDep{id: d.ID, res: res, reserved: h.n}, false
}

// skipDeposit reads the ID of a Deposit body of n bytes and discards the rest.
func (s *Server) skipDeposit(fr *frameReader, n int) (EnvelopeID, error) {
	var id EnvelopeID
	var head [addressSize + idSize]byte
	if n < len(head) {
		return id, fr.discard(n)
	}
	if _, err := io.ReadFull(fr.r, head[:]); err != nil {
		return id, err
	}
	copy(id[:], head[addressSize:])
	return id, fr.discard(n - len(head))
}

// writeResults answers deposits in stream order, batching frames into one
// write while the next answer is already known.
func (s *Server) writeResults(str network.Stream, pending <-chan *pendingDep, mem *budget, done chan<- struct{}) {
	defer close(done)
	var buf []byte
	broken := false
	flush := func() {
		if broken || len(buf) == 0 {
			buf = buf[:0]
			return
		}
		_ = str.SetWriteDeadline(time.Now().Add(s.writeTimeout))
		if _, err := str.Write(buf); err != nil {
			broken = true
			_ = str.Reset() // also unblocks the reader
		}
		buf = buf[:0]
	}
	for {
		var p *pendingDep
		var ok bool
		select {
		case p, ok = <-pending:
		default:
			flush()
			p, ok = <-pending
		}
		if !ok {
			flush()
			return
		}
		out := p.out
		if p.res != nil {
			select {
			case out = <-p.res:
			default:
				flush()
				out = <-p.res // the committer outlives every handler
			}
		}
		if p.reserved > 0 {
			mem.release(p.reserved)
		}
		if p.fatal {
			s.met.refusals.WithLabelValues(out.code.String()).Inc()
			buf = appendFrame(buf, &errorMsg{Code: out.code, Message: out.text})
		} else {
			if p.res == nil { // refused before the committer
				s.met.refusals.WithLabelValues(out.code.String()).Inc()
			}
			buf = appendFrame(buf, &resultMsg{ID: p.id, Code: out.code, Message: out.text})
		}
	}
}

package mailbox

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/network"
)

// header is a frame header already read.
type header struct {
	t   frameType
	n   int
	err error
}

// depositStream is the relay's side of one deposit stream: a reader
// (serveDeposits) that admits deposits and hands them on, and a writer
// (writeResults) that answers them, in stream order or, when the client's
// first Deposit allowed it, as soon as each is decided.
type depositStream struct {
	s         *Server
	str       network.Stream
	fr        *frameReader
	log       *slog.Logger
	from      depositor
	mem       *budget
	unordered atomic.Bool // set from the first Deposit, before its answer

	slots   chan struct{}    // one per deposit awaiting its answer
	answers chan *pendingDep // decided deposits, to the writer
	issued  chan uint64      // the reader's final count, once it stops
}

// pendingDep is a deposit awaiting its answer.
type pendingDep struct {
	ds       *depositStream
	n        uint64 // position in the stream
	id       EnvelopeID
	out      outcome
	fatal    bool // answer with an Error frame, then close
	reserved int  // stream memory to release
}

// answer decides p; it never blocks (answers has room for every slot).
func (p *pendingDep) answer(o outcome) {
	p.out = o
	p.ds.answers <- p
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
	ds := &depositStream{
		s:       s,
		str:     str,
		fr:      fr,
		log:     log,
		from:    depositorOf(str.Conn().RemotePeer(), str.Conn().RemoteMultiaddr()),
		mem:     newBudget(str.Scope(), depositBudget),
		slots:   make(chan struct{}, depositPipeline),
		answers: make(chan *pendingDep, depositPipeline),
		issued:  make(chan uint64, 1),
	}
	defer ds.mem.close()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		ds.writeResults()
	}()
	var n uint64
	var idle lazyDeadline
	for {
		ds.slots <- struct{}{} // at most depositPipeline unanswered
		p, stop := ds.readDeposit(h, n)
		if p != nil {
			n++
		} else {
			<-ds.slots
		}
		if stop {
			break
		}
		idle.extend(s.idleTimeout, str.SetReadDeadline)
		t, size, err := fr.header(s.maxFrame)
		h = header{t, size, err}
	}
	ds.issued <- n
	<-writerDone
	// After a fatal Error frame or the client's CloseWrite, all answers
	// are written: close (not reset) so they arrive.
	_ = str.Close()
}

// readDeposit reads the body of the frame whose header is h, the n-th
// deposit of the stream, and hands it on. It returns the deposit (nil when
// nothing is to be answered), answered or to be answered; stop reports
// that the stream is done.
func (ds *depositStream) readDeposit(h header, n uint64) (p *pendingDep, stop bool) {
	s, fr := ds.s, ds.fr
	p = &pendingDep{ds: ds, n: n}
	now := func(code Code, text string) *pendingDep {
		p.answer(outcome{code, text})
		return p
	}
	fatal := func(code Code, text string) (*pendingDep, bool) {
		ds.log.Debug("mailbox: refusing deposit stream", "code", code, "reason", text)
		p.fatal = true
		return now(code, text), true
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
		p.id = id
		return now(CodeTooLarge, fmt.Sprintf(
			"deposit frame of %d bytes; this relay accepts envelopes up to %d bytes", h.n, s.cfg.MaxEnvelopeSize)), false
	case errors.Is(h.err, ErrFrameTooLarge):
		return fatal(CodeTooLarge, h.err.Error())
	case errors.Is(h.err, ErrMalformed):
		return fatal(CodeMalformed, h.err.Error())
	case h.err != nil:
		ds.log.Debug("mailbox: deposit stream ended", "err", h.err)
		return nil, true
	case h.t >= optionalFrame:
		if err := fr.discard(h.n); err != nil {
			return nil, true
		}
		return nil, false
	case h.t != typeDeposit:
		return fatal(CodeMalformed, fmt.Sprintf("frame type 0x%02x on a deposit stream", uint8(h.t)))
	}
	if err := ds.mem.acquire(h.n); err != nil {
		id, err := s.skipDeposit(fr, h.n)
		if err != nil {
			return nil, true
		}
		p.id = id
		return now(CodeUnavailable, "relay busy: out of stream memory"), false
	}
	body, err := fr.body(h.n)
	if err != nil {
		ds.mem.release(h.n)
		return nil, true
	}
	m, err := decodeBody(h.t, body)
	if err != nil {
		ds.mem.release(h.n)
		return fatal(CodeMalformed, err.Error())
	}
	d := m.(*depositMsg)
	p.id = d.ID
	if n == 0 && d.Flags&flagUnordered != 0 {
		ds.unordered.Store(true)
	}
	p.reserved = h.n // released by the writer
	if len(d.Envelope) > s.cfg.MaxEnvelopeSize {
		return now(CodeTooLarge, fmt.Sprintf(
			"envelope of %d bytes; this relay accepts up to %d", len(d.Envelope), s.cfg.MaxEnvelopeSize)), false
	}
	cl, err := s.owners.classify(d.To, d.Token)
	if err != nil {
		s.log.Error("mailbox: read owner record", "err", err)
		return now(CodeInternal, "relay storage error"), false
	}
	if !s.admit.take(ds.from, 1, len(d.Envelope), cl == classStranger) {
		what := "this peer or address"
		if cl == classStranger {
			what += " (deposits without a delivery token)"
		}
		return now(CodeRateLimited, what+" is over its deposit budget; retry later"), false
	}
	if !s.deposit(&depositReq{msg: d, class: cl, ans: p}) {
		return now(CodeUnavailable, "relay shutting down"), true
	}
	return p, false
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

// writeResults writes every answer the reader issued: in stream order, or
// as they come when the stream is unordered; a fatal Error frame always
// last. Frames are batched into one write while more answers are ready.
func (ds *depositStream) writeResults() {
	var (
		buf     []byte
		wdl     lazyDeadline
		broken  bool
		written uint64
		next    uint64                     // ordered: the position to write next
		held    = map[uint64]*pendingDep{} // decided, waiting for their turn
		total   = ^uint64(0)               // issued, once the reader stops
	)
	flush := func() {
		if !broken && len(buf) > 0 {
			wdl.extend(ds.s.writeTimeout, ds.str.SetWriteDeadline)
			if _, err := ds.str.Write(buf); err != nil {
				broken = true
				_ = ds.str.Reset() // also unblocks the reader
			}
		}
		buf = buf[:0]
	}
	emit := func(p *pendingDep) {
		if p.reserved > 0 {
			ds.mem.release(p.reserved)
		}
		if p.out.code != CodeOK {
			ds.s.met.refusal(p.out.code)
		}
		if p.fatal {
			buf = appendFrame(buf, &errorMsg{Code: p.out.code, Message: p.out.text})
		} else {
			buf = appendFrame(buf, &resultMsg{ID: p.id, Code: p.out.code, Message: p.out.text})
		}
		written++
		<-ds.slots
	}
	for written < total {
		var p *pendingDep
		select {
		case p = <-ds.answers:
		case total = <-ds.issued:
			continue
		default:
			flush()
			select {
			case p = <-ds.answers:
			case total = <-ds.issued:
				continue
			}
		}
		if ds.unordered.Load() && !p.fatal {
			emit(p)
		} else {
			held[p.n] = p
		}
		for {
			q := held[next]
			if ds.unordered.Load() {
				// Only the fatal answer waits, until all others are out.
				q = held[written]
			}
			if q == nil {
				break
			}
			delete(held, q.n)
			next = q.n + 1
			emit(q)
		}
	}
	flush()
}

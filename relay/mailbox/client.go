package mailbox

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

const (
	// pingInterval is how often an idle subscriber sends an empty Ack;
	// well under the relay's idle timeout.
	pingInterval = 30 * time.Second

	// handshakeTimeout bounds the wait for the relay's Challenge.
	handshakeTimeout = 30 * time.Second

	// closeTimeout bounds the graceful end of a subscription (final acks
	// written, relay commits them and closes).
	closeTimeout = 10 * time.Second
)

const (
	// maxDepositStreams is how many deposit streams a Client opens to
	// one relay: one relay-side reader and writer each, so busy senders
	// are not bound by one stream's goroutines and flow-control window.
	maxDepositStreams = 4

	// spreadAt is how many deposits a stream has outstanding before the
	// Client opens another one to the same relay; a quiet node keeps one.
	spreadAt = 32
)

// errStreamBroken reports a deposit stream that failed before answering;
// Deposit retries it once on a fresh stream (deposits are idempotent).
var errStreamBroken = errors.New("mailbox: deposit stream broken")

// Client is the node side of the mailbox protocol. It is safe for
// concurrent use.
type Client struct {
	h   host.Host
	log *slog.Logger

	// Fields so tests can change them.
	writeTimeout time.Duration
	pingInterval time.Duration
	maxStreams   int

	mu     sync.Mutex // guards the fields below
	closed bool
	pools  map[peer.ID]*pool
	subs   map[*subHandle]struct{}

	wg sync.WaitGroup // deposit stream readers and Subscribe calls
}

// NewClient returns a Client that opens streams from h. It starts nothing.
// A nil logger discards logs.
func NewClient(h host.Host, logger *slog.Logger) *Client {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Client{
		h:            h,
		log:          logger,
		writeTimeout: writeTimeout,
		pingInterval: pingInterval,
		maxStreams:   maxDepositStreams,
		pools:        make(map[peer.ID]*pool),
		subs:         make(map[*subHandle]struct{}),
	}
}

// Close resets every stream, cancels running Subscribe calls and waits for
// them and for the Client's goroutines. It is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	var conns []*depositConn
	for _, p := range c.pools {
		conns = append(conns, p.conns...)
	}
	c.pools = nil
	for sh := range c.subs {
		sh.cancel()
	}
	c.mu.Unlock()
	for _, dc := range conns {
		dc.fail(ErrClosed)
	}
	c.wg.Wait()
	return nil
}

// pool holds the deposit streams to one relay.
type pool struct {
	conns   []*depositConn
	dialing bool
	dialed  chan struct{} // closed when the dial in progress ends
	err     error         // of the last dial
}

// depositConn is one long-lived, pipelined deposit stream.
type depositConn struct {
	c   *Client
	str network.Stream
	out atomic.Int64 // deposits awaiting their Result

	wmu sync.Mutex   // serialises stream writes
	wdl lazyDeadline // guarded by wmu

	qmu      sync.Mutex // guards the fields below
	sent     []*call    // in frame order, answered ones dropped from the front
	byID     map[EnvelopeID][]*call
	dead     error
	started  bool   // the first Deposit (which sets the stream's flags) is queued
	pend     []byte // frames not yet written, in sent order
	spare    []byte // the other buffer, reused
	flushing bool   // a caller is writing pend out
}

type call struct {
	id       EnvelopeID
	answered bool       // guarded by qmu
	done     chan error // buffered 1
}

// Deposit stores env in the mailbox to on relay and returns once the relay
// has durably stored it (or reports it already had it), or once the
// mailbox's owner, subscribed at that moment, has acked it. Refusals
// return a *RefusalError matching ErrTooLarge, ErrQuotaExceeded,
// ErrStrangerQuota, ErrRelayFull, ErrRateLimited, ErrUnavailable,
// ErrMalformed or ErrInternal. Deposits to one relay share a few
// pipelined streams; a broken stream is replaced and the deposit retried
// once, which is safe because deposits are idempotent.
func (c *Client) Deposit(ctx context.Context, relay peer.ID, to Address, id EnvelopeID, env []byte) error {
	return c.DepositWithToken(ctx, relay, to, id, env, Token{})
}

// DepositWithToken is Deposit with a delivery token the mailbox's owner
// gave the caller: if the owner registered it (SubscribeWith), the
// deposit may use the mailbox's whole quota instead of the small part open
// to strangers, and it is not held to the stranger budgets. A zero token
// is no token. A relay that does not know tokens ignores it.
func (c *Client) DepositWithToken(ctx context.Context, relay peer.ID, to Address, id EnvelopeID, env []byte, tok Token) error {
	if len(env) > maxEnvelopeCeiling {
		return fmt.Errorf("mailbox: deposit: %w: %d bytes", ErrTooLarge, len(env))
	}
	msg := &depositMsg{To: to, ID: id, Envelope: env, Token: tok}
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var dc *depositConn
		dc, err = c.depositConn(ctx, relay)
		if err != nil {
			break
		}
		err = dc.do(ctx, msg)
		if !errors.Is(err, errStreamBroken) || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("mailbox: deposit: %w", err)
	}
	return nil
}

// Item is one deposit of DepositAll.
type Item struct {
	To       Address
	ID       EnvelopeID
	Envelope []byte
	Token    Token // zero: none
}

// DepositAll deposits items on relay, in order on one pipelined stream
// (the relay stores them in that order), and returns each one's outcome as
// DepositWithToken would: nil once durably stored. Items whose stream
// broke before they were answered are retried once, in order, on a fresh
// stream.
func (c *Client) DepositAll(ctx context.Context, relay peer.ID, items []Item) []error {
	errs := make([]error, len(items))
	todo := make([]int, 0, len(items))
	for i, it := range items {
		if len(it.Envelope) > maxEnvelopeCeiling {
			errs[i] = fmt.Errorf("mailbox: deposit: %w: %d bytes", ErrTooLarge, len(it.Envelope))
			continue
		}
		todo = append(todo, i)
	}
	for attempt := 0; attempt < 2 && len(todo) > 0; attempt++ {
		dc, err := c.depositConn(ctx, relay)
		if err != nil {
			for _, i := range todo {
				errs[i] = fmt.Errorf("mailbox: deposit: %w", err)
			}
			break
		}
		msgs := make([]*depositMsg, len(todo))
		for k, i := range todo {
			it := items[i]
			msgs[k] = &depositMsg{To: it.To, ID: it.ID, Envelope: it.Envelope, Token: it.Token}
		}
		var broken []int
		for k, err := range dc.doAll(ctx, msgs) {
			i := todo[k]
			switch {
			case err == nil:
				errs[i] = nil
			case errors.Is(err, errStreamBroken) && ctx.Err() == nil:
				broken = append(broken, i)
				errs[i] = fmt.Errorf("mailbox: deposit: %w", err)
			default:
				errs[i] = fmt.Errorf("mailbox: deposit: %w", err)
			}
		}
		todo = broken
	}
	return errs
}

// depositConn returns a live deposit stream to relay: the least busy one,
// or a new one while all are busy and there are fewer than maxStreams;
// concurrent callers share one dial.
func (c *Client) depositConn(ctx context.Context, relay peer.ID) (*depositConn, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		p := c.pools[relay]
		if p == nil {
			p = &pool{}
			c.pools[relay] = p
		}
		best := p.pick()
		switch {
		case best != nil && (best.out.Load() < spreadAt || len(p.conns) >= c.maxStreams || p.dialing):
			c.mu.Unlock()
			return best, nil
		case !p.dialing:
			p.dialing, p.dialed = true, make(chan struct{})
			c.mu.Unlock()
			dc, err := c.dialDeposit(ctx, relay)
			c.mu.Lock()
			p.dialing, p.err = false, err
			close(p.dialed)
			if dc != nil {
				p.conns = append(p.conns, dc)
			}
			c.mu.Unlock()
			if err != nil && best != nil {
				return best, nil
			}
			return dc, err
		}
		dialed := p.dialed
		c.mu.Unlock()
		select {
		case <-dialed:
			c.mu.Lock()
			err := p.err
			ok := len(p.conns) > 0
			c.mu.Unlock()
			if err != nil && !ok {
				return nil, err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// pick drops dead streams and returns the one with the fewest deposits
// outstanding, or nil. Called with the Client's mu held.
func (p *pool) pick() *depositConn {
	live := p.conns[:0]
	var best *depositConn
	for _, dc := range p.conns {
		if dc.isDead() {
			continue
		}
		live = append(live, dc)
		if best == nil || dc.out.Load() < best.out.Load() {
			best = dc
		}
	}
	clear(p.conns[len(live):])
	p.conns = live
	return best
}

func (c *Client) dialDeposit(ctx context.Context, relay peer.ID) (*depositConn, error) {
	str, err := c.h.NewStream(ctx, relay, ProtocolID)
	if err != nil {
		return nil, fmt.Errorf("open stream: %w", err)
	}
	dc := &depositConn{c: c, str: str, byID: make(map[EnvelopeID][]*call)}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = str.Reset()
		return nil, ErrClosed
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		dc.readResults()
	}()
	return dc, nil
}

func (dc *depositConn) isDead() bool {
	dc.qmu.Lock()
	defer dc.qmu.Unlock()
	return dc.dead != nil
}

// do sends one deposit and waits for its Result.
func (dc *depositConn) do(ctx context.Context, msg *depositMsg) error {
	cl := &call{id: msg.ID, done: make(chan error, 1)}
	dc.qmu.Lock()
	if dc.dead != nil {
		dc.qmu.Unlock()
		return errStreamBroken
	}
	if !dc.started {
		// The first Deposit of a stream allows answers in any order, so
		// a deposit waiting for a slow recipient holds up no other.
		dc.started = true
		m := *msg
		m.Flags |= flagUnordered
		msg = &m
	}
	// Frame order and the order of sent are fixed together, under qmu.
	dc.sent = append(dc.sent, cl)
	dc.byID[msg.ID] = append(dc.byID[msg.ID], cl)
	dc.out.Add(1)
	dc.pend = appendFrame(dc.pend, msg)
	if dc.flushing {
		// The caller already writing takes this frame along: concurrent
		// deposits share stream writes (one TLS record and yamux frame for
		// many deposits) instead of one write each.
		dc.qmu.Unlock()
	} else {
		dc.flushing = true
		dc.flushLocked()
	}
	select {
	case err := <-cl.done:
		return err
	case <-ctx.Done():
		return ctx.Err() // the Result, when it comes, is matched and dropped
	}
}

// doAll sends msgs as consecutive frames and waits for every Result.
func (dc *depositConn) doAll(ctx context.Context, msgs []*depositMsg) []error {
	errs := make([]error, len(msgs))
	calls := make([]*call, len(msgs))
	dc.qmu.Lock()
	if dc.dead != nil {
		dc.qmu.Unlock()
		for i := range errs {
			errs[i] = errStreamBroken
		}
		return errs
	}
	for i, msg := range msgs {
		if !dc.started {
			dc.started = true
			m := *msg
			m.Flags |= flagUnordered
			msg = &m
		}
		cl := &call{id: msg.ID, done: make(chan error, 1)}
		calls[i] = cl
		dc.sent = append(dc.sent, cl)
		dc.byID[msg.ID] = append(dc.byID[msg.ID], cl)
		dc.out.Add(1)
		dc.pend = appendFrame(dc.pend, msg)
	}
	if dc.flushing {
		dc.qmu.Unlock()
	} else {
		dc.flushing = true
		dc.flushLocked()
	}
	for i, cl := range calls {
		select {
		case errs[i] = <-cl.done:
		case <-ctx.Done():
			for k := i; k < len(calls); k++ {
				select {
				case errs[k] = <-calls[k].done:
				default:
					errs[k] = ctx.Err()
				}
			}
			return errs
		}
	}
	return errs
}

// flushLocked writes pending frames until none are left. Called with qmu
// held and flushing set; returns with qmu released.
func (dc *depositConn) flushLocked() {
	for len(dc.pend) > 0 && dc.dead == nil {
		// buf is written without qmu held while callers append to pend,
		// so the two must never share an array: the spare is handed over
		// once (spare = nil) and only buf, once written, becomes the next
		// spare.
		buf := dc.pend
		dc.pend, dc.spare = dc.spare[:0], nil
		dc.qmu.Unlock()
		dc.wmu.Lock()
		dc.wdl.extend(dc.c.writeTimeout, dc.str.SetWriteDeadline)
		_, err := dc.str.Write(buf)
		dc.wmu.Unlock()
		if err != nil {
			dc.fail(fmt.Errorf("%w: write: %v", errStreamBroken, err))
		}
		dc.qmu.Lock()
		if cap(buf) <= 1<<20 { // do not pin one large envelope's buffer
			dc.spare = buf[:0]
		}
	}
	dc.flushing = false
	dc.qmu.Unlock()
}

// fail ends the stream: every call not yet answered gets err.
func (dc *depositConn) fail(err error) {
	dc.qmu.Lock()
	if dc.dead == nil {
		dc.dead = err
	}
	q := dc.sent
	dc.sent, dc.byID = nil, nil
	var left []*call
	for _, cl := range q {
		if !cl.answered {
			cl.answered = true
			left = append(left, cl)
		}
	}
	dc.qmu.Unlock()
	_ = dc.str.Reset()
	for _, cl := range left {
		dc.out.Add(-1)
		cl.done <- err
	}
}

// take removes and returns the oldest call for id (nil if none): answers
// to one ID come in the order of its deposits.
func (dc *depositConn) take(id EnvelopeID) *call {
	dc.qmu.Lock()
	defer dc.qmu.Unlock()
	cs := dc.byID[id]
	if len(cs) == 0 {
		return nil
	}
	cl := cs[0]
	if len(cs) == 1 {
		delete(dc.byID, id)
	} else {
		cs[0] = nil
		dc.byID[id] = cs[1:]
	}
	dc.answeredLocked(cl)
	return cl
}

// oldest removes and returns the earliest unanswered call (nil if none).
func (dc *depositConn) oldest() *call {
	dc.qmu.Lock()
	defer dc.qmu.Unlock()
	for _, cl := range dc.sent {
		if !cl.answered {
			cs := dc.byID[cl.id]
			for i := range cs {
				if cs[i] == cl {
					dc.byID[cl.id] = append(cs[:i:i], cs[i+1:]...)
					break
				}
			}
			dc.answeredLocked(cl)
			return cl
		}
	}
	return nil
}

// answeredLocked marks cl answered and drops answered calls from the
// front of sent.
func (dc *depositConn) answeredLocked(cl *call) {
	cl.answered = true
	dc.out.Add(-1)
	i := 0
	for i < len(dc.sent) && dc.sent[i].answered {
		dc.sent[i] = nil
		i++
	}
	dc.sent = dc.sent[i:]
}

// readResults matches Results to calls by envelope ID until the stream
// ends. An idle stream closed by the relay ends here too.
func (dc *depositConn) readResults() {
	fr := newFrameReader(dc.str, 4<<10)
	for {
		m, err := fr.next(controlFrameMax)
		if err != nil {
			dc.fail(fmt.Errorf("%w: read: %v", errStreamBroken, err))
			return
		}
		switch m := m.(type) {
		case *resultMsg:
			cl := dc.take(m.ID)
			if cl == nil {
				dc.fail(fmt.Errorf("%w: Result for %v, which is not pending", ErrUnexpectedFrame, m.ID))
				return
			}
			if m.Code == CodeOK {
				cl.done <- nil
			} else {
				cl.done <- &RefusalError{Code: m.Code, Message: m.Message}
			}
		case *errorMsg:
			// The relay answers every earlier deposit first, so the
			// Error belongs to the oldest one still unanswered.
			if cl := dc.oldest(); cl != nil {
				cl.done <- &RefusalError{Code: m.Code, Message: m.Message}
			}
			dc.fail(fmt.Errorf("%w: relay closed it: %s: %q", errStreamBroken, m.Code, m.Message))
			return
		default:
			dc.fail(fmt.Errorf("%w: frame type 0x%02x on a deposit stream", ErrUnexpectedFrame, uint8(m.frameType())))
			return
		}
	}
}

// subHandle lets Close cancel a running Subscribe.
type subHandle struct{ cancel context.CancelFunc }

// SubscribeOptions are the options of SubscribeWith.
type SubscribeOptions struct {
	// Tokens, if any, replace the delivery tokens registered for the
	// mailbox (at most MaxTokens); none keeps those registered.
	Tokens []Token
	// Batch, when set, is called instead of fn with every delivery that
	// arrived while the previous call ran (at most MaxBatch, in order),
	// so a subscriber can commit many in one transaction. It returns one
	// error per delivery: nil acks it.
	Batch func(ctx context.Context, ds []Delivery) []error
	// MaxBatch bounds a Batch call; 0 means 512.
	MaxBatch int
	// OnDrained, when set, is called once per subscription, after every
	// envelope the mailbox held when it started (and any deposited
	// before the relay got through them) was handed to fn or Batch. A
	// node takes nothing directly from its contacts before that: a
	// message sent directly would overtake the older ones still on the
	// relay.
	OnDrained func()
}

// Subscribe is SubscribeWith with no options.
func (c *Client) Subscribe(ctx context.Context, relay peer.ID, key ed25519.PrivateKey, fn func(ctx context.Context, d Delivery) error) error {
	return c.SubscribeWith(ctx, relay, key, SubscribeOptions{}, fn)
}

// SubscribeWith authenticates to relay as the mailbox of key, registers
// opts.Tokens if any, and calls fn for each stored envelope in deposit
// order, then for each new one as it arrives, one at a time. fn returning
// nil acks the envelope (the relay deletes it); an error leaves it stored
// for the next subscription. A mailbox has one subscription per relay: a
// new one ends the one before.
//
// SubscribeWith runs until ctx is done (it then sends its last acks, lets
// the relay commit them, and returns ctx.Err()), the Client is closed, or
// the stream fails (the error is returned; the caller reconnects). A
// refused signature returns an error matching ErrUnauthorized.
func (c *Client) SubscribeWith(ctx context.Context, relay peer.ID, key ed25519.PrivateKey, opts SubscribeOptions, fn func(ctx context.Context, d Delivery) error) error {
	if len(key) != ed25519.PrivateKeySize {
		return fmt.Errorf("mailbox: subscribe: %w", ErrBadKey)
	}
	if len(opts.Tokens) > MaxTokens {
		return fmt.Errorf("mailbox: subscribe: %w: %d tokens", ErrTooManyTokens, len(opts.Tokens))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sh := &subHandle{cancel: cancel}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return fmt.Errorf("mailbox: subscribe: %w", ErrClosed)
	}
	c.subs[sh] = struct{}{}
	c.wg.Add(1)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.subs, sh)
		c.mu.Unlock()
		c.wg.Done()
	}()
	if err := c.subscribe(ctx, relay, key, opts, fn); err != nil {
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return fmt.Errorf("mailbox: subscribe: %w", ErrClosed)
		}
		return fmt.Errorf("mailbox: subscribe: %w", err)
	}
	return nil
}

func (c *Client) subscribe(ctx context.Context, relay peer.ID, key ed25519.PrivateKey, opts SubscribeOptions, fn func(context.Context, Delivery) error) error {
	str, err := c.h.NewStream(ctx, relay, ProtocolID)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	// During the handshake, ctx ending just resets the stream.
	stop := context.AfterFunc(ctx, func() { _ = str.Reset() })
	w := &frameWriter{str: str, timeout: c.writeTimeout}
	fr := newFrameReader(str, 32<<10)
	ch, err := handshake(str, w, fr, relay, key)
	if err == nil && len(opts.Tokens) > 0 {
		err = w.send(&tokensMsg{Tokens: opts.Tokens})
	}
	if !stop() || err != nil {
		_ = str.Reset()
		return ctxErr(ctx, err)
	}
	maxBody := int(min(uint64(ch.MaxEnvelope)+frameOverhead, clientFrameCeiling))

	// The acker batches acks and nacks and keeps the stream alive. When
	// ctx ends it waits for the delivery being handled, writes the last
	// acks and closes our side; the relay then commits them and closes,
	// which ends readDeliveries.
	hand := &handoff{acks: make(chan verdict, min(int(ch.Window), 4096)+16)}
	stopAcker := make(chan struct{})
	ackerDone := make(chan error, 1)
	go func() {
		err := c.runAcker(ctx, str, w, hand, stopAcker)
		if err != nil {
			_ = str.Reset() // ends readDeliveries too
		}
		ackerDone <- err
	}()

	if opts.Batch != nil {
		err = c.readBatches(ctx, fr, maxBody, hand, opts)
	} else {
		err = c.readDeliveries(ctx, fr, maxBody, hand, fn, opts.OnDrained)
	}
	if ctx.Err() == nil {
		// The stream failed, or the relay closed it or refused a frame.
		_ = str.Reset()
		close(stopAcker)
		<-ackerDone
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	ackErr := <-ackerDone
	_ = str.Close()
	if ackErr != nil {
		c.log.Debug("mailbox: final acks not written; they will be redelivered", "err", ackErr)
	}
	return ctx.Err()
}

// handshake sends Subscribe, answers the Challenge and returns it.
func handshake(str network.Stream, w *frameWriter, fr *frameReader, relay peer.ID, key ed25519.PrivateKey) (*challengeMsg, error) {
	if err := w.send(&subscribeMsg{}); err != nil {
		return nil, err
	}
	_ = str.SetReadDeadline(time.Now().Add(handshakeTimeout))
	m, err := fr.next(controlFrameMax)
	if err != nil {
		return nil, err
	}
	_ = str.SetReadDeadline(time.Time{})
	switch m := m.(type) {
	case *challengeMsg:
		return m, w.send(signAuth(key, relay, m.Nonce))
	case *errorMsg:
		return nil, &RefusalError{Code: m.Code, Message: m.Message}
	default:
		return nil, fmt.Errorf("%w: want Challenge, got 0x%02x", ErrUnexpectedFrame, uint8(m.frameType()))
	}
}

type verdict struct {
	id EnvelopeID
	ok bool
}

// handoff passes fn's verdicts from the reader to the acker. mu is held
// while a delivery is handed to fn and its verdict queued, so that when
// ctx ends the acker can wait for it and write every ack of an fn that
// returned nil.
type handoff struct {
	mu      sync.Mutex // guards closing; held around fn
	closing bool
	acks    chan verdict
}

// readDeliveries hands deliveries to fn, one at a time, until the stream
// ends. Once the acker is closing it hands over nothing more and reads
// until the relay closes.
func (c *Client) readDeliveries(ctx context.Context, fr *frameReader, maxBody int, hand *handoff, fn func(context.Context, Delivery) error, onDrained func()) error {
	for {
		m, err := fr.next(maxBody)
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case *deliveryMsg:
			hand.mu.Lock()
			if hand.closing {
				hand.mu.Unlock()
				continue // not handed over, not acked: redelivered next time
			}
			d := Delivery{ID: m.ID, Deposited: time.Unix(0, m.Deposited), Envelope: m.Envelope}
			ferr := fn(ctx, d)
			if ferr != nil {
				c.log.Debug("mailbox: delivery not accepted; relay keeps it", "id", m.ID, "err", ferr)
			}
			select {
			case hand.acks <- verdict{id: m.ID, ok: ferr == nil}:
			default: // more than the window unacked: the relay misbehaves
				c.log.Debug("mailbox: relay exceeded its window; ack dropped", "id", m.ID)
			}
			hand.mu.Unlock()
		case *drainedMsg:
			if onDrained != nil {
				onDrained()
			}
		case *errorMsg:
			return &RefusalError{Code: m.Code, Message: m.Message}
		default:
			return fmt.Errorf("%w: frame type 0x%02x on a subscribe stream", ErrUnexpectedFrame, uint8(m.frameType()))
		}
	}
}

// readBatches is readDeliveries for SubscribeOptions.Batch: a reader
// goroutine takes frames off the stream while the batch function runs,
// and each call gets every delivery that arrived meanwhile.
func (c *Client) readBatches(ctx context.Context, fr *frameReader, maxBody int, hand *handoff, opts SubscribeOptions) error {
	maxBatch := opts.MaxBatch
	if maxBatch <= 0 {
		maxBatch = 512
	}
	// in carries deliveries and, in its place among them, the relay's
	// Drained (a zero Delivery with drained set).
	type item struct {
		d       Delivery
		drained bool
	}
	in := make(chan item, cap(hand.acks))
	errc := make(chan error, 1)
	held := newByteBudget(maxBatchHeld)
	go func() {
		defer close(in)
		for {
			m, err := fr.next(maxBody)
			if err != nil {
				errc <- err
				return
			}
			switch m := m.(type) {
			case *deliveryMsg:
				held.acquire(len(m.Envelope))
				in <- item{d: Delivery{ID: m.ID, Deposited: time.Unix(0, m.Deposited), Envelope: m.Envelope}}
			case *drainedMsg:
				in <- item{drained: true}
			case *errorMsg:
				errc <- &RefusalError{Code: m.Code, Message: m.Message}
				return
			default:
				errc <- fmt.Errorf("%w: frame type 0x%02x on a subscribe stream", ErrUnexpectedFrame, uint8(m.frameType()))
				return
			}
		}
	}()
	ds := make([]Delivery, 0, maxBatch)
	drained := func() {
		if opts.OnDrained != nil {
			opts.OnDrained()
		}
	}
	for it := range in {
		if it.drained {
			drained()
			continue
		}
		ds = append(ds[:0], it.d)
		drainedAfter := false
	more:
		for len(ds) < maxBatch {
			select {
			case it, ok := <-in:
				if !ok {
					break more
				}
				if it.drained {
					drainedAfter = true // after this batch is handled
					break more
				}
				ds = append(ds, it.d)
			default:
				break more
			}
		}
		if c.handleBatch(ctx, ds, hand, held, opts) && drainedAfter {
			drained()
		}
	}
	return <-errc
}

// handleBatch hands ds to opts.Batch and queues the verdicts. Once the
// acker is closing it hands over nothing (the relay redelivers ds next
// time) and returns false.
func (c *Client) handleBatch(ctx context.Context, ds []Delivery, hand *handoff, held byteBudget, opts SubscribeOptions) bool {
	hand.mu.Lock()
	defer hand.mu.Unlock()
	if hand.closing {
		for _, d := range ds {
			held.release(len(d.Envelope))
		}
		return false
	}
	errs := opts.Batch(ctx, ds)
	for i, d := range ds {
		var ferr error
		if i < len(errs) {
			ferr = errs[i]
		} else {
			ferr = errors.New("mailbox: no verdict from the batch function")
		}
		if ferr != nil {
			c.log.Debug("mailbox: delivery not accepted; relay keeps it", "id", d.ID, "err", ferr)
		}
		select {
		case hand.acks <- verdict{id: d.ID, ok: ferr == nil}:
		default: // more than the window unacked: the relay misbehaves
			c.log.Debug("mailbox: relay exceeded its window; ack dropped", "id", d.ID)
		}
		held.release(len(d.Envelope))
	}
	return true
}

// maxBatchHeld bounds the envelope bytes a batching subscription holds
// read but not yet handled: the relay may send a whole window (1,024
// envelopes of up to 256 KiB) without waiting.
const maxBatchHeld = 8 << 20

// byteBudget bounds the bytes held between a reader and its consumer, in
// units of budgetUnit: acquire blocks while the budget is spent.
type byteBudget chan struct{}

const budgetUnit = 16 << 10

func newByteBudget(max int) byteBudget { return make(byteBudget, max/budgetUnit) }

func budgetUnits(n int) int { return n/budgetUnit + 1 }

func (b byteBudget) acquire(n int) {
	for range budgetUnits(n) {
		b <- struct{}{}
	}
}

func (b byteBudget) release(n int) {
	for range budgetUnits(n) {
		<-b
	}
}

// runAcker writes pending acks (and nacks) as one frame each, and an empty
// Ack as a keepalive when idle. When ctx ends it waits for the delivery in
// hand, writes what is pending, closes the write side, and bounds the wait
// for the relay's close. It returns at once when stop is closed.
func (c *Client) runAcker(ctx context.Context, str network.Stream, w *frameWriter, hand *handoff, stop <-chan struct{}) error {
	t := time.NewTicker(c.pingInterval)
	defer t.Stop()
	var ack, nack []EnvelopeID
	flush := func() error {
		if len(ack) > 0 {
			if err := w.send(&ackMsg{IDs: ack}); err != nil {
				return err
			}
		}
		if len(nack) > 0 {
			if err := w.send(&nackMsg{IDs: nack}); err != nil {
				return err
			}
		}
		ack, nack = ack[:0], nack[:0]
		return nil
	}
	add := func(it verdict) error {
		if it.ok {
			ack = append(ack, it.id)
		} else {
			nack = append(nack, it.id)
		}
		if len(ack) == maxIDsPerAck || len(nack) == maxIDsPerAck {
			return flush()
		}
		return nil
	}
	// gather takes every queued verdict, then flushes.
	gather := func() error {
		for {
			select {
			case it := <-hand.acks:
				if err := add(it); err != nil {
					return err
				}
			default:
				return flush()
			}
		}
	}
	for {
		select {
		case it := <-hand.acks:
			if err := add(it); err != nil {
				return err
			}
			if err := gather(); err != nil {
				return err
			}
			t.Reset(c.pingInterval)
		case <-t.C:
			if err := w.send(&ackMsg{}); err != nil {
				return err
			}
		case <-stop:
			return nil
		case <-ctx.Done():
			hand.mu.Lock()
			hand.closing = true
			hand.mu.Unlock()
			err := gather()
			_ = str.CloseWrite()
			_ = str.SetReadDeadline(time.Now().Add(closeTimeout))
			return err
		}
	}
}

// ctxErr prefers the context's error to the stream error it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

package mailbox

import (
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// session is one authenticated subscription. A mailbox has at most one:
// a new authentication replaces the session before it (see claim), which
// keeps deletions without lookups safe (committer.ack) and stops one key
// from holding many streams.
type session struct {
	s       *Server
	addr    Address
	str     network.Stream
	w       *frameWriter
	from    depositor
	wake    chan struct{} // capacity 1: new envelopes, window space, hand-offs
	drained atomic.Bool   // the backlog has been sent: hand-offs may start
	done    chan struct{} // closed when the session has ended and its acks are committed

	mu       sync.Mutex // guards the fields below
	ended    bool
	inflight map[EnvelopeID]inflight // delivered (or queued), not acked: the window
	queue    []*liveDep              // hand-offs the sender has not taken yet, in deadline order
	sent     []*liveDep              // hand-offs taken, in deadline order (done ones dropped lazily)
	stuck    bool                    // a hand-off missed a deadline: send deposits to storage
	timer    *time.Timer             // for the earliest deadline of queue and sent
	timerAt  time.Time
}

// inflight is an envelope in a session's window: loaded from storage, or
// handed off (live).
type inflight struct {
	loaded
	gen   uint64 // expiry generation when it was loaded
	blind bool   // no expiry batch was in flight when it was loaded
	live  *liveDep
}

func (ss *session) poke() {
	select {
	case ss.wake <- struct{}{}:
	default:
	}
}

// frameWriter serialises whole frames from several goroutines onto one
// stream, each write under a deadline.
type frameWriter struct {
	mu      sync.Mutex // guards the fields below and stream writes
	str     network.Stream
	timeout time.Duration
	dl      lazyDeadline
	buf     []byte
}

func (w *frameWriter) send(m message) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = appendFrame(w.buf[:0], m)
	return w.writeLocked(w.buf)
}

func (w *frameWriter) write(b []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writeLocked(b)
}

func (w *frameWriter) writeLocked(b []byte) error {
	w.dl.extend(w.timeout, w.str.SetWriteDeadline)
	_, err := w.str.Write(b)
	return err
}

func (s *Server) serveSubscribe(str network.Stream, fr *frameReader, log *slog.Logger, deadline time.Time, kind *streamKind) {
	w := &frameWriter{str: str, timeout: s.writeTimeout}
	ch := &challengeMsg{Window: uint32(s.cfg.Window), MaxEnvelope: uint32(s.cfg.MaxEnvelopeSize)}
	_, _ = rand.Read(ch.Nonce[:]) // crypto/rand.Read never fails
	_ = str.SetWriteDeadline(deadline)
	if _, err := str.Write(appendFrame(nil, ch)); err != nil {
		_ = str.Reset()
		return
	}
	_ = str.SetReadDeadline(deadline)
	m, err := fr.next(controlFrameMax)
	if err != nil {
		s.refuseErr(str, log, err)
		return
	}
	auth, ok := m.(*authMsg)
	if !ok {
		s.refuse(str, log, CodeMalformed, "expected Auth after Challenge")
		return
	}
	if !verifyAuth(auth, s.self, ch.Nonce) {
		s.refuse(str, log, CodeUnauthorized, "signature does not verify for this mailbox, relay and challenge")
		return
	}
	log = log.With("addr", auth.Address)
	from := depositorOf(str.Conn().RemotePeer(), str.Conn().RemoteMultiaddr())
	if code, text := s.known(auth.Address, from); code != CodeOK {
		s.refuse(str, log, code, text)
		return
	}
	kind.set(streamSubscribe)
	sess := &session{
		s: s, addr: auth.Address, str: str, w: w, from: from,
		wake: make(chan struct{}, 1), done: make(chan struct{}),
		inflight: make(map[EnvelopeID]inflight),
	}
	defer close(sess.done)
	// Take the mailbox over from an earlier session and wait until it has
	// ended, so that no envelope is in two windows. Registered before the
	// first read of storage, so no commit is missed.
	if !s.claim(sess) {
		_ = str.Reset()
		return
	}
	defer s.endLive(sess) // after release: no new hand-offs to a dead session
	defer s.release(sess)

	var acks sync.WaitGroup // ack commits in flight
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		s.readAcks(str, fr, w, sess, &acks, log)
	}()
	if err := s.sendDeliveries(sess, readerDone); err != nil {
		log.Debug("mailbox: subscriber stream failed", "err", err)
		_ = str.Reset() // unblocks the reader
	}
	<-readerDone
	acks.Wait()
	_ = str.Close()
}

// known makes sure addr's mailbox is known (its owner authenticated), and
// keeps its record fresh. Creating a record is charged to the peer's
// deposit budgets like one small envelope, so fresh keys cannot fill the
// store with records.
func (s *Server) known(addr Address, from depositor) (Code, string) {
	rec, err := s.owners.get(addr)
	if err != nil {
		s.log.Error("mailbox: read owner record", "err", err)
		return CodeInternal, "relay storage error"
	}
	now := s.st.now()
	switch {
	case rec == nil:
		if !s.admit.take(from, 1, ownerHeader, false) {
			return CodeRateLimited, "this peer or address is over its budget; retry later"
		}
		s.writeOwner(addr, &ownerRecord{lastAuth: now.UnixNano()})
	case now.Sub(time.Unix(0, rec.lastAuth)) >= ownerRefresh:
		s.writeOwner(addr, &ownerRecord{lastAuth: now.UnixNano(), hashes: rec.hashes})
	}
	return CodeOK, ""
}

// writeOwner caches rec as addr's owner record and hands it to the
// committer.
func (s *Server) writeOwner(addr Address, rec *ownerRecord) {
	s.owners.set(addr, rec)
	ok := s.submit(request{own: &ownerReq{addr: addr, rec: rec, done: func(err error) {
		if err != nil {
			s.log.Warn("mailbox: owner record not written", "addr", addr, "err", err)
		}
		s.owners.written(addr, err)
	}}})
	if !ok {
		s.owners.written(addr, ErrClosed)
	}
}

// registerTokens replaces the delivery tokens of sess's mailbox.
func (s *Server) registerTokens(sess *session, toks []Token) error {
	rec, err := s.owners.get(sess.addr)
	if err != nil {
		return err
	}
	last := s.st.now().UnixNano()
	if rec != nil {
		last = max(last, rec.lastAuth)
	}
	s.writeOwner(sess.addr, &ownerRecord{lastAuth: last, hashes: tokenHashes(toks)})
	return nil
}

// claim makes sess its mailbox's session, ending the one before and
// waiting for it to end; false if the Server is closing.
func (s *Server) claim(sess *session) bool {
	s.mu.Lock()
	old := s.subs[sess.addr]
	s.subs[sess.addr] = sess
	s.mu.Unlock()
	if old == nil {
		return true
	}
	_ = old.str.Reset()
	select {
	case <-old.done:
		return true
	case <-s.quit:
		return false
	}
}

// release unregisters sess unless a newer session took its place.
func (s *Server) release(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subs[sess.addr] == sess {
		delete(s.subs, sess.addr)
	}
}

// sendDeliveries writes hand-offs as they come, and the mailbox in deposit
// order, never more than the window unacked, until the reader ends.
func (s *Server) sendDeliveries(sess *session, readerDone <-chan struct{}) error {
	var (
		cursor  uint64
		drained bool
		buf     []byte
		out     []loaded
	)
	for {
		buf = buf[:0]
		live := s.takeQueued(sess)
		for _, ld := range live {
			buf = appendFrame(buf, &deliveryMsg{ID: ld.dep.msg.ID, Deposited: time.Now().UnixNano(), Envelope: ld.dep.msg.Envelope})
		}
		if len(live) > 0 {
			if err := sess.w.write(buf); err != nil {
				return err
			}
			s.met.deliveries.Add(float64(len(live)))
			continue
		}
		sess.mu.Lock()
		avail := s.cfg.Window - len(sess.inflight)
		idle := len(sess.inflight) == 0
		sess.mu.Unlock()
		// Load when a good part of the window is free (or nothing is in
		// flight), not for every ack: a storage read and a write per few
		// envelopes would cost more than the envelopes.
		if avail > 0 && (idle || !drained || avail >= s.cfg.Window/4) {
			gen, busy := s.com.expiry()
			var next uint64
			var err error
			buf, out, next, err = s.st.load(sess.addr, cursor, s.com.safe(), min(avail, loadCount), loadBytes, buf[:0], out[:0])
			if err != nil {
				return err
			}
			moved := next != cursor
			cursor = next
			if len(out) > 0 {
				sess.mu.Lock()
				for _, l := range out {
					sess.inflight[l.id] = inflight{loaded: l, gen: gen, blind: !busy}
				}
				sess.mu.Unlock()
				if err := sess.w.write(buf); err != nil {
					return err
				}
				s.met.deliveries.Add(float64(len(out)))
			}
			if moved {
				continue
			}
			if !drained {
				if err := sess.w.send(&drainedMsg{}); err != nil {
					return err
				}
				drained = true
				sess.drained.Store(true)
			}
		}
		select {
		case <-sess.wake:
		case <-readerDone:
			return nil
		case <-s.quit:
			return nil
		}
	}
}

// readAcks reads Ack, Nack and Tokens frames until the subscriber closes
// its side, goes silent past the idle timeout, or breaks the protocol.
func (s *Server) readAcks(str network.Stream, fr *frameReader, w *frameWriter, sess *session, acks *sync.WaitGroup, log *slog.Logger) {
	var idle lazyDeadline
	for {
		idle.extend(s.idleTimeout, str.SetReadDeadline)
		m, err := fr.next(controlFrameMax)
		switch {
		case err == io.EOF:
			return
		case errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrMalformed), errors.Is(err, ErrUnknownFrame):
			s.refuseFrame(w, log, err)
			return
		case err != nil:
			log.Debug("mailbox: subscriber stream ended", "err", err)
			return
		}
		switch m := m.(type) {
		case *ackMsg:
			if len(m.IDs) == 0 {
				continue // keepalive
			}
			items := s.acked(sess, m.IDs)
			if len(items) == 0 {
				continue
			}
			acks.Add(1)
			ok := s.submit(request{ack: &ackReq{addr: sess.addr, items: items, done: func(n int) {
				s.met.acks.Add(float64(n))
				acks.Done()
			}}})
			if !ok {
				acks.Done()
				return
			}
		case *nackMsg:
			s.nacked(sess, m.IDs)
		case *tokensMsg:
			if err := s.registerTokens(sess, m.Tokens); err != nil {
				log.Error("mailbox: register tokens", "err", err)
				_ = w.send(&errorMsg{Code: CodeInternal, Message: "relay storage error"})
				return
			}
		default:
			s.refuseFrame(w, log, ErrUnexpectedFrame)
			return
		}
	}
}

// acked takes ids out of the window: hand-offs are answered to their
// depositors; envelopes from storage are returned for deletion. IDs that
// are in neither were never delivered in this session (or fell back to
// storage meanwhile) and are ignored.
func (s *Server) acked(sess *session, ids []EnvelopeID) []ackItem {
	var items []ackItem
	var handed []*liveDep
	unknown := 0
	sess.mu.Lock()
	for _, id := range ids {
		f, ok := sess.inflight[id]
		if !ok {
			unknown++
			continue
		}
		delete(sess.inflight, id) // whoever deletes the entry owns it
		if f.live != nil {
			f.live.done = true
			handed = append(handed, f.live)
			continue
		}
		items = append(items, ackItem{id: id, seq: f.seq, size: f.size, class: f.class, gen: f.gen, blind: f.blind})
	}
	sess.stuck = false // it reads and acks
	if len(handed) > 0 {
		s.armLocked(sess)
	}
	sess.mu.Unlock()
	if n := len(handed); n > 0 {
		s.met.deposits.WithLabelValues("handed_off").Add(float64(n))
		s.met.acks.Add(float64(n))
	}
	for _, ld := range handed {
		ld.dep.ans.answer(outcome{CodeOK, ""})
	}
	if unknown > 0 {
		s.met.acksIgnored.Add(float64(unknown))
	}
	sess.poke()
	return items
}

// nacked takes ids out of the window: hand-offs fall back to storage (and
// are delivered again from there); stored envelopes stay stored for the
// next subscription.
func (s *Server) nacked(sess *session, ids []EnvelopeID) {
	var back []*liveDep
	sess.mu.Lock()
	for _, id := range ids {
		f, ok := sess.inflight[id]
		if !ok {
			continue
		}
		delete(sess.inflight, id)
		if f.live != nil {
			f.live.done = true
			back = append(back, f.live)
		}
	}
	sess.mu.Unlock()
	for _, ld := range back {
		s.fallback(ld)
	}
	sess.poke()
}

// refuseFrame answers a bad frame on a subscribe stream; the caller then
// ends the session, which closes the stream.
func (s *Server) refuseFrame(w *frameWriter, log *slog.Logger, err error) {
	code := CodeMalformed
	if errors.Is(err, ErrFrameTooLarge) {
		code = CodeTooLarge
	}
	s.met.refusal(code)
	log.Debug("mailbox: refusing subscriber frame", "code", code, "err", err)
	_ = w.send(&errorMsg{Code: code, Message: err.Error()})
}

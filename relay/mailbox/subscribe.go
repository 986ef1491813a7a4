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

// session is one authenticated subscription.
type session struct {
	addr    Address
	wake    chan struct{} // capacity 1: new envelopes or window space
	w       *frameWriter
	drained atomic.Bool // the backlog has been sent: hand-offs may start

	mu       sync.Mutex // guards inflight
	inflight map[EnvelopeID]struct{}
}

func (ss *session) poke() {
	select {
	case ss.wake <- struct{}{}:
	default:
	}
}

func (ss *session) inflightLen() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.inflight)
}

func (ss *session) add(ids []EnvelopeID) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, id := range ids {
		ss.inflight[id] = struct{}{}
	}
}

// release frees the window slots of ids that were in flight.
func (ss *session) release(ids []EnvelopeID) {
	ss.mu.Lock()
	n := len(ss.inflight)
	for _, id := range ids {
		delete(ss.inflight, id)
	}
	freed := n != len(ss.inflight)
	ss.mu.Unlock()
	if freed {
		ss.poke()
	}
}

// frameWriter serialises whole frames from several goroutines onto one
// stream, each write under a deadline.
type frameWriter struct {
	mu      sync.Mutex // guards the fields below and stream writes
	str     network.Stream
	timeout time.Duration
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
	_ = w.str.SetWriteDeadline(time.Now().Add(w.timeout))
	_, err := w.str.Write(b)
	return err
}

func (s *Server) serveSubscribe(str network.Stream, fr *frameReader, log *slog.Logger) {
	w := &frameWriter{str: str, timeout: s.writeTimeout}
	ch := &challengeMsg{Window: uint32(s.cfg.Window), MaxEnvelope: uint32(s.cfg.MaxEnvelopeSize)}
	_, _ = rand.Read(ch.Nonce[:]) // crypto/rand.Read never fails
	if err := w.send(ch); err != nil {
		_ = str.Reset()
		return
	}
	_ = str.SetReadDeadline(time.Now().Add(s.authTimeout))
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
	sess := &session{addr: auth.Address, wake: make(chan struct{}, 1), w: w, inflight: make(map[EnvelopeID]struct{})}
	// Register before the first read of storage, so no commit is missed.
	s.addSub(sess)
	defer s.endLive(sess) // after removeSub: no new hand-offs to a dead session
	defer s.removeSub(sess)

	var acks sync.WaitGroup // ack commits in flight
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		s.readAcks(str, fr, w, sess, &acks, log)
	}()
	if err := s.sendDeliveries(w, sess, readerDone); err != nil {
		log.Debug("mailbox: subscriber stream failed", "err", err)
		_ = str.Reset() // unblocks the reader
	}
	<-readerDone
	acks.Wait()
	_ = str.Close()
}

// sendDeliveries streams the mailbox in deposit order, then live pushes,
// never more than the window unacked, until the reader ends.
func (s *Server) sendDeliveries(w *frameWriter, sess *session, readerDone <-chan struct{}) error {
	var (
		cursor  uint64
		drained bool
		buf     []byte
		ids     []EnvelopeID
	)
	for {
		if avail := s.cfg.Window - sess.inflightLen(); avail > 0 {
			var next uint64
			var err error
			buf, ids, next, err = s.st.load(sess.addr, cursor, s.com.safe(), min(avail, loadCount), loadBytes, buf[:0], ids[:0])
			if err != nil {
				return err
			}
			moved := next != cursor
			cursor = next
			if len(ids) > 0 {
				sess.add(ids)
				if err := w.write(buf); err != nil {
					return err
				}
				s.met.deliveries.Add(float64(len(ids)))
			}
			if moved {
				continue
			}
			if !drained {
				if err := w.send(&drainedMsg{}); err != nil {
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

// readAcks reads Ack and Nack frames until the subscriber closes its side,
// goes silent past the idle timeout, or breaks the protocol.
func (s *Server) readAcks(str network.Stream, fr *frameReader, w *frameWriter, sess *session, acks *sync.WaitGroup, log *slog.Logger) {
	for {
		_ = str.SetReadDeadline(time.Now().Add(s.idleTimeout))
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
			sess.release(m.IDs)
			stored := s.ackLive(sess, m.IDs)
			if len(stored) == 0 {
				continue
			}
			acks.Add(1)
			ok := s.submit(request{ack: &ackReq{addr: sess.addr, ids: stored, done: func(n int) {
				s.met.acks.Add(float64(n))
				acks.Done()
			}}})
			if !ok {
				acks.Done()
				return
			}
		case *nackMsg:
			sess.release(m.IDs)
			s.nackLive(sess, m.IDs)
		default:
			s.refuseFrame(w, log, ErrUnexpectedFrame)
			return
		}
	}
}

// refuseFrame answers a bad frame on a subscribe stream; the caller then
// ends the session, which closes the stream.
func (s *Server) refuseFrame(w *frameWriter, log *slog.Logger, err error) {
	code := CodeMalformed
	if errors.Is(err, ErrFrameTooLarge) {
		code = CodeTooLarge
	}
	s.met.refusals.WithLabelValues(code.String()).Inc()
	log.Debug("mailbox: refusing subscriber frame", "code", code, "err", err)
	_ = w.send(&errorMsg{Code: code, Message: err.Error()})
}

package mailbox

import (
	"time"
)

// Hand-off: a deposit for a mailbox whose owner is subscribed, has read its
// whole backlog and has room in its window is pushed to the owner at once,
// from memory, without touching the disk. The depositor's answer waits for
// the owner's ack (the node acks only once it has stored the message), so
// "OK" still means the envelope is durable — on the recipient device
// instead of the relay. This takes the relay's fsync off the path of
// messages between online devices, which otherwise bounds both their
// throughput and their latency.
//
// The depositor's stream never waits for the recipient: a hand-off only
// joins the session's queue, and the session's own sender writes it. A
// hand-off the sender has not written within handoffQueueTimeout (the
// recipient's stream is stuck), one the owner does not ack within
// handoffTimeout after it was taken for writing, one the owner nacks, and
// every one still pending when the subscription ends falls back to the
// ordinary path: a synced commit, then delivery from storage. A session
// that missed a deadline is "stuck" and gets no hand-offs until it acks
// again, so a recipient that stops reading costs its depositors one
// deadline, not one per deposit. A deposit is answered exactly once either
// way.

const (
	// handoffTimeout is how long a handed-off envelope waits for its
	// owner's ack before the relay stores it instead.
	handoffTimeout = 3 * time.Second

	// handoffQueueTimeout is how long a hand-off waits for the session's
	// sender (busy writing to a recipient that does not read) before the
	// relay stores it instead.
	handoffQueueTimeout = 500 * time.Millisecond
)

// liveDep is a deposit handed to a subscriber and not yet acked. Its
// window entry in the session is its owner: whoever deletes the entry
// (ack, nack, a timer, the session's end) answers or falls back.
type liveDep struct {
	dep   *depositReq
	f     *inflight   // its window entry
	timer *time.Timer // guarded by the session's mu, like tgen
	tgen  int         // which timer is current
}

// deposit hands d to a live subscriber if one can take it, else to the
// committer. false means the Server is closing and nobody took it.
func (s *Server) deposit(d *depositReq) bool {
	if !s.cfg.NoHandoff && s.handoff(d) {
		return true
	}
	return s.submit(request{dep: d})
}

// liveSession returns the session of addr if it has drained its backlog.
func (s *Server) liveSession(addr Address) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess := s.subs[addr]; sess != nil && sess.drained.Load() {
		return sess
	}
	return nil
}

// handoff queues d for the owner's session; false if there is none that
// can take it now.
func (s *Server) handoff(d *depositReq) bool {
	sess := s.liveSession(d.msg.To)
	if sess == nil {
		return false
	}
	id := d.msg.ID
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.ended || sess.stuck || len(sess.inflight) >= s.cfg.Window || sess.inflight[id] != nil {
		return false
	}
	ld := &liveDep{dep: d}
	ld.f = &inflight{loaded: loaded{id: id, size: len(d.msg.Envelope), class: d.class}, live: ld}
	sess.inflight[id] = ld.f
	sess.queue = append(sess.queue, ld)
	s.armLocked(sess, ld, s.queueWait)
	sess.poke()
	return true
}

// armLocked (re)starts ld's deadline.
func (s *Server) armLocked(sess *session, ld *liveDep, d time.Duration) {
	if ld.timer != nil {
		ld.timer.Stop()
	}
	ld.tgen++
	g := ld.tgen
	ld.timer = time.AfterFunc(d, func() { s.liveTimeout(sess, ld, g) })
}

// takeQueued returns the hand-offs waiting for the sender; from now on
// each has handoffWait for its ack.
func (s *Server) takeQueued(sess *session) []*liveDep {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	q := sess.queue
	sess.queue = nil
	for _, ld := range q {
		s.armLocked(sess, ld, s.handoffWait)
	}
	return q
}

// liveTimeout falls back a hand-off whose deadline passed (timer g).
func (s *Server) liveTimeout(sess *session, ld *liveDep, g int) {
	sess.mu.Lock()
	if sess.inflight[ld.f.id] != ld.f || ld.tgen != g {
		sess.mu.Unlock()
		return // acked, nacked, ended, or re-armed meanwhile
	}
	delete(sess.inflight, ld.f.id)
	for i, q := range sess.queue {
		if q == ld {
			sess.queue = append(sess.queue[:i:i], sess.queue[i+1:]...)
			break
		}
	}
	sess.stuck = true
	sess.mu.Unlock()
	s.fallback(ld)
	sess.poke() // its window slot is free: the stored copy may come through
}

// fallback stores a hand-off its owner did not take.
func (s *Server) fallback(ld *liveDep) {
	s.met.fallbacks.Inc()
	if !s.submit(request{dep: ld.dep}) {
		ld.dep.ans.answer(outcome{CodeUnavailable, "relay shutting down"})
	}
}

// endLive falls back everything still handed to sess, which has ended.
func (s *Server) endLive(sess *session) {
	sess.mu.Lock()
	sess.ended = true
	var back []*liveDep
	for id, f := range sess.inflight {
		if f.live != nil {
			delete(sess.inflight, id)
			f.live.timer.Stop()
			back = append(back, f.live)
		}
	}
	sess.queue = nil
	sess.mu.Unlock()
	for _, ld := range back {
		s.fallback(ld)
	}
}

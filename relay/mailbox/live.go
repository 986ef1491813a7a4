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
// (ack, nack, a deadline, the session's end) answers or falls back.
type liveDep struct {
	dep      *depositReq
	deadline time.Time // guarded by the session's mu, like done
	done     bool      // its window entry is gone
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
	if _, dup := sess.inflight[id]; dup || sess.ended || sess.stuck || len(sess.inflight) >= s.cfg.Window {
		return false
	}
	ld := &liveDep{dep: d, deadline: time.Now().Add(s.queueWait)}
	sess.inflight[id] = inflight{loaded: loaded{id: id}, live: ld}
	sess.queue = append(sess.queue, ld)
	s.armLocked(sess)
	sess.poke()
	return true
}

// Deadlines: each hand-off has one (queueWait after it was queued, then
// handoffWait after the sender took it); the queue and the sent list are
// each in deadline order, so one timer per session, set for the earlier
// of their heads, serves them all.

// armLocked sets the session's timer for its next deadline, dropping
// hand-offs that are done from the heads of the lists.
func (s *Server) armLocked(sess *session) {
	for len(sess.sent) > 0 && sess.sent[0].done {
		sess.sent[0] = nil
		sess.sent = sess.sent[1:]
	}
	var next time.Time
	if len(sess.queue) > 0 {
		next = sess.queue[0].deadline
	}
	if len(sess.sent) > 0 && (next.IsZero() || sess.sent[0].deadline.Before(next)) {
		next = sess.sent[0].deadline
	}
	switch {
	case next.IsZero() || next.Equal(sess.timerAt):
	case sess.timer == nil:
		sess.timer = time.AfterFunc(time.Until(next), func() { s.liveTimeout(sess) })
	default:
		sess.timer.Reset(time.Until(next))
	}
	sess.timerAt = next
}

// takeQueued returns the hand-offs waiting for the sender; from now on
// each has handoffWait for its ack.
func (s *Server) takeQueued(sess *session) []*liveDep {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	q := sess.queue[:0]
	deadline := time.Now().Add(s.handoffWait)
	for _, ld := range sess.queue {
		if !ld.done { // a nack may name what was never sent
			ld.deadline = deadline
			q = append(q, ld)
		}
	}
	sess.queue = nil
	sess.sent = append(sess.sent, q...)
	s.armLocked(sess)
	return q
}

// liveTimeout falls back the hand-offs whose deadline passed: still queued
// (the recipient's stream is stuck) or not acked in time.
func (s *Server) liveTimeout(sess *session) {
	now := time.Now()
	var back []*liveDep
	expire := func(list []*liveDep) []*liveDep {
		for len(list) > 0 && !list[0].deadline.After(now) {
			if ld := list[0]; !ld.done {
				ld.done = true
				delete(sess.inflight, ld.dep.msg.ID)
				back = append(back, ld)
			}
			list[0] = nil
			list = list[1:]
		}
		return list
	}
	sess.mu.Lock()
	sess.timerAt = time.Time{}
	sess.queue = expire(sess.queue)
	sess.sent = expire(sess.sent)
	if len(back) > 0 {
		sess.stuck = true
	}
	if !sess.ended {
		s.armLocked(sess)
	}
	sess.mu.Unlock()
	for _, ld := range back {
		s.fallback(ld)
	}
	if len(back) > 0 {
		sess.poke() // window slots are free: the stored copies may come through
	}
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
			f.live.done = true
			back = append(back, f.live)
		}
	}
	sess.queue, sess.sent = nil, nil
	if sess.timer != nil {
		sess.timer.Stop()
	}
	sess.mu.Unlock()
	for _, ld := range back {
		s.fallback(ld)
	}
}

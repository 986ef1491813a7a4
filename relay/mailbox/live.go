package mailbox

import (
	"time"
)

// Hand-off: a deposit for a mailbox whose owner is subscribed, has read its
// whole backlog and has room in its window is pushed to the owner at once,
// from memory, without touching the disk. The depositor's answer waits for
// the owner's ack (the node acks only once it has stored the message), so
// "OK" still means the envelope is durable — on the recipient device
// instead of the relay. If the owner does not ack within handoffTimeout,
// nacks it, or its subscription ends first, the envelope falls back to the
// ordinary path: a synced commit, then delivery from storage. A deposit is
// answered exactly once either way. This takes the relay's fsync off the
// path of messages between online devices, which otherwise bounds both
// their throughput and their latency.

// handoffTimeout is how long a handed-off envelope waits for its owner's ack
// before the relay stores it instead.
const handoffTimeout = 3 * time.Second

type liveKey struct {
	addr Address
	id   EnvelopeID
}

// liveDep is a deposit handed to a subscriber and not yet acked.
type liveDep struct {
	dep   *depositMsg
	res   chan outcome // buffered 1; answered exactly once
	sess  *session
	timer *time.Timer
}

// deposit hands d to a live subscriber if one can take it, else to the
// committer. false means the Server is closing and nobody took it.
func (s *Server) deposit(d *depositMsg, res chan outcome) bool {
	if !s.cfg.NoHandoff && s.handoff(d, res) {
		return true
	}
	return s.submit(request{dep: d, res: res})
}

// liveSession returns a subscriber of addr that has drained its backlog and
// has window room, or nil.
func (s *Server) liveSession(addr Address) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	for sess := range s.subs[addr] {
		if sess.drained.Load() && sess.inflightLen() < s.cfg.Window {
			return sess
		}
	}
	return nil
}

func (s *Server) handoff(d *depositMsg, res chan outcome) bool {
	sess := s.liveSession(d.To)
	if sess == nil {
		return false
	}
	k := liveKey{d.To, d.ID}
	s.liveMu.Lock()
	if _, dup := s.live[k]; dup {
		// The same envelope is already with the owner: let the committer
		// store (and deduplicate) this copy.
		s.liveMu.Unlock()
		return false
	}
	ld := &liveDep{dep: d, res: res, sess: sess}
	s.live[k] = ld
	ld.timer = time.AfterFunc(s.handoffWait, func() { s.fallback(k, true) })
	s.liveMu.Unlock()

	sess.add([]EnvelopeID{d.ID})
	if err := sess.w.send(&deliveryMsg{ID: d.ID, Deposited: time.Now().UnixNano(), Envelope: d.Envelope}); err != nil {
		s.fallback(k, true)
		return true
	}
	s.met.deliveries.Inc()
	return true
}

// takeLive removes and returns the hand-off of k if it belongs to sess (any
// session when sess is nil).
func (s *Server) takeLive(k liveKey, sess *session) *liveDep {
	s.liveMu.Lock()
	defer s.liveMu.Unlock()
	ld := s.live[k]
	if ld == nil || (sess != nil && ld.sess != sess) {
		return nil
	}
	delete(s.live, k)
	ld.timer.Stop()
	return ld
}

// fallback stores a handed-off envelope its owner has not acked. With
// release, its window slot is freed so the stored copy is delivered again.
func (s *Server) fallback(k liveKey, release bool) {
	ld := s.takeLive(k, nil)
	if ld == nil {
		return
	}
	if release {
		ld.sess.release([]EnvelopeID{k.id})
	}
	if !s.submit(request{dep: ld.dep, res: ld.res}) {
		ld.res <- outcome{CodeUnavailable, "relay shutting down"}
	}
}

// ackLive answers the depositors of the handed-off envelopes among ids and
// returns the others, which are stored and need a committed delete.
func (s *Server) ackLive(sess *session, ids []EnvelopeID) []EnvelopeID {
	var rest []EnvelopeID
	handed := 0
	for _, id := range ids {
		ld := s.takeLive(liveKey{sess.addr, id}, sess)
		if ld == nil {
			rest = append(rest, id)
			continue
		}
		ld.res <- outcome{CodeOK, ""}
		handed++
	}
	if handed > 0 {
		s.met.deposits.WithLabelValues("handed_off").Add(float64(handed))
		s.met.acks.Add(float64(handed))
	}
	return rest
}

// nackLive falls back the handed-off envelopes among ids.
func (s *Server) nackLive(sess *session, ids []EnvelopeID) {
	for _, id := range ids {
		k := liveKey{sess.addr, id}
		if ld := s.takeLive(k, sess); ld != nil {
			if !s.submit(request{dep: ld.dep, res: ld.res}) {
				ld.res <- outcome{CodeUnavailable, "relay shutting down"}
			}
		}
	}
}

// endLive falls back everything still handed to sess, which has ended.
func (s *Server) endLive(sess *session) {
	s.liveMu.Lock()
	var keys []liveKey
	for k, ld := range s.live {
		if ld.sess == sess {
			keys = append(keys, k)
		}
	}
	s.liveMu.Unlock()
	for _, k := range keys {
		s.fallback(k, false)
	}
}

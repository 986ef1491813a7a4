package mailbox

import (
	"time"

	"github.com/peergram/peergram/storage"
)

// The sweep deletes envelopes at the end of their lifetime: TTL in a known
// mailbox, UnknownTTL in one whose owner never authenticated. It runs
// through the committer like an ack, so the counters stay exact; storage
// expiry (keys live backstopTTL longer) only catches envelopes a relay
// that was down did not sweep in time, and the count at start makes the
// counters exact again.

const (
	// expireChunk bounds the IDs of one expiry request.
	expireChunk = 512

	minSweep = 100 * time.Millisecond
	maxSweep = 10 * time.Minute
)

// sweepInterval sweeps often enough that no envelope outlives its
// lifetime by more than an eighth of the shortest one (or 10 minutes).
func sweepInterval(shortest time.Duration) time.Duration {
	return min(max(shortest/8, minSweep), maxSweep)
}

// runSweep sweeps at start and then every s.sweepEvery until Close.
func (s *Server) runSweep() {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		}
		start := time.Now()
		n, err := s.sweep()
		switch {
		case err != nil:
			s.log.Warn("mailbox: expiry sweep", "err", err)
		case n > 0:
			s.log.Info("mailbox: expired envelopes", "count", n, "took", time.Since(start).Round(time.Millisecond))
		}
		t.Reset(s.sweepEvery)
	}
}

// sweep finds expired envelopes and has the committer delete them. It
// returns how many it asked to delete.
func (s *Server) sweep() (int, error) {
	now := s.st.now().UnixNano()
	var (
		found int
		cur   Address
		items []expireItem
		known = map[Address]bool{}
	)
	flush := func() bool {
		if len(items) == 0 {
			return true
		}
		found += len(items)
		ok := s.submit(request{exp: &expireReq{addr: cur, items: items}})
		items = nil
		return ok
	}
	err := s.st.db.View(func(tx *storage.Txn) error {
		return tx.Iterate(s.st.idx, nil, func(k, v []byte) error {
			if len(k) != addressSize+idSize {
				return nil
			}
			var addr Address
			copy(addr[:], k)
			if addr != cur {
				if !flush() {
					return storage.ErrStop
				}
				cur = addr
			}
			e, err := parseIdx(v)
			if err != nil {
				return nil
			}
			deposited := e.deposited
			if deposited == 0 { // v1: the envelope value has it
				if deposited, err = s.depositedV1(tx, addr, e.seq); err != nil {
					return nil
				}
			}
			isKnown, ok := known[addr]
			if !ok {
				rec, err := s.owners.get(addr)
				if err != nil {
					return err
				}
				isKnown = rec != nil
				known[addr] = isKnown
			}
			life := s.st.unknownTTL
			if isKnown {
				life = s.st.ttl
			}
			if now-deposited < int64(life) {
				return nil
			}
			it := expireItem{seq: e.seq}
			copy(it.id[:], k[addressSize:])
			if items = append(items, it); len(items) == expireChunk && !flush() {
				return storage.ErrStop
			}
			return nil
		})
	})
	flush()
	return found, err
}

// depositedV1 reads the deposit time of a v1 envelope.
func (s *Server) depositedV1(tx *storage.Txn, addr Address, seq uint64) (int64, error) {
	v, err := tx.Get(s.st.env, envKey(addr, seq))
	if err != nil {
		return 0, err
	}
	e, err := parseEnv(v)
	if err != nil {
		return 0, err
	}
	return e.deposited, nil
}

package mailbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/peergram/peergram/storage"
)

// valueVersion starts every value this package stores.
const valueVersion = 1

const (
	envValueHeader = 1 + idSize + 8 // v | id | deposited
	idxValueSize   = 1 + 8 + 4      // v | seq | size
	metaValueSize  = 1 + 8 + 8      // v | count | bytes

	// recountEvery bounds how often a full mailbox is recounted exactly.
	recountEvery = time.Minute
	// maxRecounted bounds the memory of when mailboxes were recounted.
	maxRecounted = 4096
)

// store is the mailbox's storage layout (see doc.go). Its write methods are
// called only from the Server's committer goroutine.
type store struct {
	db             *storage.DB
	env, idx, meta storage.Keyspace
	seq            *storage.Sequence
	ttl            time.Duration
	maxCount       int
	maxBytes       int64
	log            *slog.Logger
	met            *metrics
	now            func() time.Time

	recounted map[Address]time.Time // committer goroutine only
}

func newStore(db *storage.DB, cfg *Config, log *slog.Logger, met *metrics) *store {
	return &store{
		db:        db,
		env:       db.Keyspace("mailbox.env"),
		idx:       db.Keyspace("mailbox.idx"),
		meta:      db.Keyspace("mailbox.meta"),
		ttl:       cfg.TTL,
		maxCount:  cfg.MaxMailboxEnvelopes,
		maxBytes:  cfg.MaxMailboxBytes,
		log:       log,
		met:       met,
		now:       time.Now,
		recounted: make(map[Address]time.Time),
	}
}

// open leases the sequence; close returns the lease.
func (st *store) open() error {
	seq, err := st.db.Sequence(st.env, "seq")
	if err != nil {
		return err
	}
	st.seq = seq
	return nil
}

func (st *store) close() error {
	if st.seq == nil {
		return nil
	}
	return st.seq.Release()
}

func envKey(addr Address, seq uint64) []byte {
	k := make([]byte, 0, addressSize+8)
	k = append(k, addr[:]...)
	return binary.BigEndian.AppendUint64(k, seq)
}

type idxKeyT [addressSize + idSize]byte

func idxKey(addr Address, id EnvelopeID) idxKeyT {
	var k idxKeyT
	copy(k[:], addr[:])
	copy(k[addressSize:], id[:])
	return k
}

type mailboxMeta struct {
	count int
	bytes int64
	dirty bool
}

func parseIdx(v []byte) (seq uint64, size int, err error) {
	if len(v) < idxValueSize || v[0] != valueVersion {
		return 0, 0, fmt.Errorf("mailbox: bad index value (%d bytes)", len(v))
	}
	return binary.BigEndian.Uint64(v[1:]), int(binary.BigEndian.Uint32(v[9:])), nil
}

// request is one unit of work for the committer: a deposit or an ack.
type request struct {
	dep *depositMsg
	res chan outcome // deposit only; buffered 1

	ack *ackReq
}

type ackReq struct {
	addr Address
	ids  []EnvelopeID
	done func(deleted int) // called by the committer; may be nil
}

// outcome answers a deposit.
type outcome struct {
	code Code
	text string
}

// reqBytes is what a request adds to a transaction, roughly.
func (r *request) reqBytes() int {
	if r.dep != nil {
		return len(r.dep.Envelope) + 128
	}
	return len(r.ack.ids) * 96
}

// txnState is the per-attempt state of one group commit; storage may run
// the Update callback again on a conflict, so it is rebuilt each time.
type txnState struct {
	out     []outcome
	deleted []int
	metas   map[Address]*mailboxMeta
	seen    map[idxKeyT]bool
	touched map[Address]bool
	stored  int
	dups    int
	bytes   int
	ignored int
	scratch []byte
}

// commit applies reqs in one synced transaction and answers each one. It
// returns the mailboxes that received new envelopes.
func (st *store) commit(reqs []request) []Address {
	var s *txnState
	err := st.db.Update(func(tx *storage.Txn) error {
		s = &txnState{
			out:     make([]outcome, len(reqs)),
			deleted: make([]int, len(reqs)),
			metas:   make(map[Address]*mailboxMeta),
			seen:    make(map[idxKeyT]bool),
			touched: make(map[Address]bool),
		}
		now := st.now()
		for i := range reqs {
			var err error
			if reqs[i].dep != nil {
				s.out[i], err = st.depositTxn(tx, s, reqs[i].dep, now)
			} else {
				s.deleted[i], err = st.ackTxn(tx, s, reqs[i].ack)
			}
			if err != nil {
				return err
			}
		}
		for addr, m := range s.metas {
			if !m.dirty {
				continue
			}
			var err error
			if m.count <= 0 {
				err = tx.Delete(st.meta, addr[:])
			} else {
				var v [metaValueSize]byte
				v[0] = valueVersion
				binary.BigEndian.PutUint64(v[1:], uint64(m.count))
				binary.BigEndian.PutUint64(v[9:], uint64(m.bytes))
				err = tx.SetTTL(st.meta, addr[:], v[:], st.ttl)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, storage.ErrTxnTooBig) && len(reqs) > 1 {
		h := len(reqs) / 2
		return append(st.commit(reqs[:h]), st.commit(reqs[h:])...)
	}
	if err != nil {
		fail := st.failure(err, len(reqs) == 1)
		for i := range reqs {
			if reqs[i].dep != nil {
				reqs[i].res <- fail
				st.met.refusals.WithLabelValues(fail.code.String()).Inc()
			} else if reqs[i].ack.done != nil {
				reqs[i].ack.done(0)
			}
		}
		return nil
	}
	for i := range reqs {
		if reqs[i].dep != nil {
			reqs[i].res <- s.out[i]
			if s.out[i].code != CodeOK {
				st.met.refusals.WithLabelValues(s.out[i].code.String()).Inc()
			}
		} else if reqs[i].ack.done != nil {
			reqs[i].ack.done(s.deleted[i])
		}
	}
	st.met.deposits.WithLabelValues("stored").Add(float64(s.stored))
	st.met.deposits.WithLabelValues("duplicate").Add(float64(s.dups))
	st.met.storedBytes.Add(float64(s.bytes))
	st.met.acksIgnored.Add(float64(s.ignored))
	touched := make([]Address, 0, len(s.touched))
	for a := range s.touched {
		touched = append(touched, a)
	}
	return touched
}

// failure maps a failed commit to what every deposit in it is told. The
// detail goes to the log, not to the (untrusted) peer.
func (st *store) failure(err error, single bool) outcome {
	switch {
	case errors.Is(err, storage.ErrTxnTooBig) && single:
		return outcome{CodeTooLarge, "envelope too large for this relay's store"}
	case errors.Is(err, storage.ErrDiskFull):
		st.log.Error("mailbox: commit failed", "err", err)
		return outcome{CodeUnavailable, "relay disk full"}
	case errors.Is(err, storage.ErrClosed):
		return outcome{CodeUnavailable, "relay shutting down"}
	}
	st.log.Error("mailbox: commit failed", "err", err)
	return outcome{CodeInternal, "relay storage error"}
}

func (st *store) metaOf(tx *storage.Txn, s *txnState, addr Address) (*mailboxMeta, error) {
	if m := s.metas[addr]; m != nil {
		return m, nil
	}
	m := &mailboxMeta{}
	v, err := tx.Get(st.meta, addr[:])
	switch {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		return nil, err
	case len(v) < metaValueSize || v[0] != valueVersion:
		st.log.Warn("mailbox: bad meta value; recounting", "addr", addr, "len", len(v))
		if err := st.count(tx, addr, m); err != nil {
			return nil, err
		}
		m.dirty = true
	default:
		m.count = int(binary.BigEndian.Uint64(v[1:]))
		m.bytes = int64(binary.BigEndian.Uint64(v[9:]))
	}
	s.metas[addr] = m
	return m, nil
}

// count sets m to the exact content of addr's mailbox as tx sees it
// (expired entries are invisible).
func (st *store) count(tx *storage.Txn, addr Address, m *mailboxMeta) error {
	m.count, m.bytes = 0, 0
	return tx.Iterate(st.idx, addr[:], func(_, v []byte) error {
		if _, size, err := parseIdx(v); err == nil {
			m.count++
			m.bytes += int64(size)
		}
		return nil
	})
}

func (st *store) overQuota(m *mailboxMeta, size int) bool {
	return m.count+1 > st.maxCount || m.bytes+int64(size) > st.maxBytes
}

func (st *store) depositTxn(tx *storage.Txn, s *txnState, d *depositMsg, now time.Time) (outcome, error) {
	k := idxKey(d.To, d.ID)
	if s.seen[k] {
		s.dups++
		return outcome{CodeOK, "duplicate"}, nil
	}
	switch ok, err := tx.Has(st.idx, k[:]); {
	case err != nil:
		return outcome{}, err
	case ok:
		s.dups++
		return outcome{CodeOK, "duplicate"}, nil
	}
	m, err := st.metaOf(tx, s, d.To)
	if err != nil {
		return outcome{}, err
	}
	size := len(d.Envelope)
	if st.overQuota(m, size) {
		// The counters only over-count (entries expire behind them), so
		// recount before refusing, at most once per recountEvery.
		if last, ok := st.recounted[d.To]; !ok || now.Sub(last) >= recountEvery {
			if len(st.recounted) >= maxRecounted {
				clear(st.recounted)
			}
			st.recounted[d.To] = now
			if err := st.count(tx, d.To, m); err != nil {
				return outcome{}, err
			}
			m.dirty = true
		}
		if st.overQuota(m, size) {
			return outcome{CodeQuotaExceeded, fmt.Sprintf(
				"mailbox holds %d envelopes, %d bytes; limits %d, %d",
				m.count, m.bytes, st.maxCount, st.maxBytes)}, nil
		}
	}
	seq, err := st.seq.Next()
	if err != nil {
		return outcome{}, err
	}
	v := s.scratch[:0]
	v = append(v, valueVersion)
	v = append(v, d.ID[:]...)
	v = binary.BigEndian.AppendUint64(v, uint64(now.UnixNano()))
	v = append(v, d.Envelope...)
	s.scratch = v
	if err := tx.SetTTL(st.env, envKey(d.To, seq), v, st.ttl); err != nil {
		return outcome{}, err
	}
	var iv [idxValueSize]byte
	iv[0] = valueVersion
	binary.BigEndian.PutUint64(iv[1:], seq)
	binary.BigEndian.PutUint32(iv[9:], uint32(size))
	if err := tx.SetTTL(st.idx, k[:], iv[:], st.ttl); err != nil {
		return outcome{}, err
	}
	m.count++
	m.bytes += int64(size)
	m.dirty = true
	s.seen[k] = true
	s.touched[d.To] = true
	s.stored++
	s.bytes += size
	return outcome{CodeOK, "stored"}, nil
}

func (st *store) ackTxn(tx *storage.Txn, s *txnState, a *ackReq) (int, error) {
	deleted := 0
	for _, id := range a.ids {
		k := idxKey(a.addr, id)
		v, err := tx.Get(st.idx, k[:])
		if errors.Is(err, storage.ErrNotFound) {
			// Someone else's ID, an expired one, or one already acked:
			// nothing of this mailbox to delete.
			s.ignored++
			st.log.Debug("mailbox: ack names no envelope of this mailbox; ignored",
				"addr", a.addr, "id", id)
			continue
		}
		if err != nil {
			return 0, err
		}
		seq, size, perr := parseIdx(v)
		if perr == nil {
			if err := tx.Delete(st.env, envKey(a.addr, seq)); err != nil {
				return 0, err
			}
		} else {
			st.log.Warn("mailbox: deleting unreadable index entry", "addr", a.addr, "id", id, "err", perr)
		}
		if err := tx.Delete(st.idx, k[:]); err != nil {
			return 0, err
		}
		m, err := st.metaOf(tx, s, a.addr)
		if err != nil {
			return 0, err
		}
		m.count = max(m.count-1, 0)
		m.bytes = max(m.bytes-int64(size), 0)
		m.dirty = true
		deleted++
	}
	return deleted, nil
}

// load appends Delivery frames for addr's envelopes with seq >= from, at
// most maxN of them and about maxBytes, to buf. It returns the extended
// buffer, the IDs sent, and the seq to continue from.
func (st *store) load(addr Address, from uint64, maxN, maxBytes int, buf []byte, ids []EnvelopeID) ([]byte, []EnvelopeID, uint64, error) {
	next := from
	var start [8]byte
	binary.BigEndian.PutUint64(start[:], from)
	err := st.db.View(func(tx *storage.Txn) error {
		return tx.IterateFrom(st.env, addr[:], start[:], func(k, v []byte) error {
			if len(ids) >= maxN || (len(ids) > 0 && len(buf) >= maxBytes) {
				return storage.ErrStop
			}
			if len(k) != addressSize+8 {
				return nil
			}
			next = binary.BigEndian.Uint64(k[addressSize:]) + 1
			if len(v) < envValueHeader || v[0] != valueVersion {
				st.log.Warn("mailbox: skipping unreadable envelope", "addr", addr, "len", len(v))
				return nil
			}
			var id EnvelopeID
			copy(id[:], v[1:])
			env := v[envValueHeader:]
			// Delivery body = id | deposited | len | envelope.
			buf = binary.BigEndian.AppendUint32(buf, uint32(1+idSize+8+4+len(env)))
			buf = append(buf, byte(typeDelivery))
			buf = append(buf, v[1:envValueHeader]...)
			buf = binary.BigEndian.AppendUint32(buf, uint32(len(env)))
			buf = append(buf, env...)
			ids = append(ids, id)
			return nil
		})
	})
	return buf, ids, next, err
}

// stats counts addr's stored envelopes and their bytes exactly.
func (st *store) stats(addr Address) (int, int64, error) {
	var m mailboxMeta
	err := st.db.View(func(tx *storage.Txn) error { return st.count(tx, addr, &m) })
	return m.count, m.bytes, err
}

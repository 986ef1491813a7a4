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
)

// store is the mailbox's storage layout (see doc.go); the committer does
// the writing.
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
}

func newStore(db *storage.DB, cfg *Config, log *slog.Logger, met *metrics) *store {
	return &store{
		db:       db,
		env:      db.Keyspace("mailbox.env"),
		idx:      db.Keyspace("mailbox.idx"),
		meta:     db.Keyspace("mailbox.meta"),
		ttl:      cfg.TTL,
		maxCount: cfg.MaxMailboxEnvelopes,
		maxBytes: cfg.MaxMailboxBytes,
		log:      log,
		met:      met,
		now:      time.Now,
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

// failure maps a failed commit to what a deposit in it is told. The
// detail goes to the log, not to the (untrusted) peer.
func (st *store) failure(err error) outcome {
	switch {
	case errors.Is(err, storage.ErrTxnTooBig):
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

// loadMeta reads addr's counters, counting exactly when they are unreadable.
func (st *store) loadMeta(tx *storage.Txn, addr Address, m *mailboxMeta) error {
	v, err := tx.Get(st.meta, addr[:])
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil
	case err != nil:
		return err
	case len(v) < metaValueSize || v[0] != valueVersion:
		st.log.Warn("mailbox: bad meta value; recounting", "addr", addr, "len", len(v))
		return st.count(tx, addr, m)
	}
	m.count = int(binary.BigEndian.Uint64(v[1:]))
	m.bytes = int64(binary.BigEndian.Uint64(v[9:]))
	return nil
}

func metaValue(m *mailboxMeta) []byte {
	v := make([]byte, metaValueSize)
	v[0] = valueVersion
	binary.BigEndian.PutUint64(v[1:], uint64(m.count))
	binary.BigEndian.PutUint64(v[9:], uint64(m.bytes))
	return v
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

// load appends Delivery frames for addr's envelopes with from <= seq <
// until, at most maxN of them and about maxBytes, to buf. It returns the
// extended buffer, the IDs sent, and the seq to continue from.
func (st *store) load(addr Address, from, until uint64, maxN, maxBytes int, buf []byte, ids []EnvelopeID) ([]byte, []EnvelopeID, uint64, error) {
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
			seq := binary.BigEndian.Uint64(k[addressSize:])
			if seq >= until {
				return storage.ErrStop
			}
			next = seq + 1
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

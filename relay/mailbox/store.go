package mailbox

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/peergram/peergram/storage"
)

// Value versions: the first byte of every value this package stores.
// Readers accept every version listed; writers write the newest.
const (
	// valueV1 is the layout of relays before delivery tokens: envelopes
	// without a class, index entries without a deposit time, and
	// per-mailbox counters in mailbox.meta.
	valueV1 = 1
	// valueV2 adds the deposit class (contact or stranger) to envelopes
	// and index entries, and the deposit time to index entries, so that
	// the relay's own expiry sweep can keep exact counters.
	valueV2 = 2
	// ownerV1 is the only layout of mailbox.owner values.
	ownerV1 = 1
)

const (
	envHeaderV1 = 1 + idSize + 8     // v | id | deposited
	envHeaderV2 = 1 + idSize + 8 + 1 // v | id | deposited | class
	idxSizeV1   = 1 + 8 + 4          // v | seq | size
	idxSizeV2   = 1 + 8 + 4 + 8 + 1  // v | seq | size | deposited | class
	ownerHeader = 1 + 8 + 1          // v | lastAuth | n
	hashSize    = sha256.Size

	// backstopTTL is added to the longest lifetime of an envelope to get
	// the storage TTL of its keys: the sweep (sweep.go) deletes expired
	// envelopes and keeps the counters exact; storage expiry only catches
	// what a relay that was down for long did not sweep in time.
	backstopTTL = 24 * time.Hour

	// ownerRefresh is how often an owner's authentication rewrites its
	// record to push its expiry back.
	ownerRefresh = 24 * time.Hour
)

// class says which part of a mailbox's quota an envelope uses. Stored:
// append-only.
type class uint8

const (
	classContact  class = 0 // deposited with a valid delivery token (or before tokens existed)
	classStranger class = 1 // deposited without one
)

// store is the mailbox's storage layout (see doc.go); the committer does
// all writing.
type store struct {
	db                *storage.DB
	env, idx, owner   storage.Keyspace
	seq               *storage.Sequence
	ttl, unknownTTL   time.Duration // envelope lifetimes: known and unknown mailboxes
	keyTTL, ownerTTL  time.Duration // storage TTLs
	maxCount          int
	maxBytes          int64
	strangerCount     int
	strangerBytes     int64
	maxStore          int64
	strangerStoreFull int64 // global bytes above which stranger deposits are refused
	log               *slog.Logger
	met               *metrics
	now               func() time.Time
}

func newStore(db *storage.DB, cfg *Config, log *slog.Logger, met *metrics) *store {
	return &store{
		db:                db,
		env:               db.Keyspace("mailbox.env"),
		idx:               db.Keyspace("mailbox.idx"),
		owner:             db.Keyspace("mailbox.owner"),
		ttl:               cfg.TTL,
		unknownTTL:        min(cfg.UnknownTTL, cfg.TTL),
		keyTTL:            cfg.TTL + backstopTTL,
		ownerTTL:          ownerLifetime(cfg.TTL),
		maxCount:          cfg.MaxMailboxEnvelopes,
		maxBytes:          cfg.MaxMailboxBytes,
		strangerCount:     max(1, cfg.MaxMailboxEnvelopes*cfg.StrangerPercent/100),
		strangerBytes:     max(1, cfg.MaxMailboxBytes*int64(cfg.StrangerPercent)/100),
		maxStore:          cfg.MaxStoreBytes,
		strangerStoreFull: cfg.MaxStoreBytes / 100 * (100 - contactStoreReserve),
		log:               log,
		met:               met,
		now:               time.Now,
	}
}

// contactStoreReserve is the percentage of Config.MaxStoreBytes that only
// deposits with a valid delivery token may fill, so that a flood of
// strangers' envelopes cannot shut contacts out of a relay entirely.
const contactStoreReserve = 5

// ownerLifetime is how long an owner record (the mailbox is known, its
// token hashes) lives after the owner's last authentication: longer than
// any envelope, so a known mailbox never turns unknown under its own
// envelopes.
func ownerLifetime(ttl time.Duration) time.Duration { return 3 * ttl }

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

// envValue encodes a stored envelope (v2).
func envValue(id EnvelopeID, deposited int64, cl class, env []byte) []byte {
	return appendEnvValue(make([]byte, 0, envHeaderV2+len(env)), id, deposited, cl, env)
}

func appendEnvValue(v []byte, id EnvelopeID, deposited int64, cl class, env []byte) []byte {
	v = append(v, valueV2)
	v = append(v, id[:]...)
	v = binary.BigEndian.AppendUint64(v, uint64(deposited))
	v = append(v, byte(cl))
	return append(v, env...)
}

// storedEnv is a decoded envelope value; env aliases the value.
type storedEnv struct {
	id        EnvelopeID
	deposited int64
	class     class
	env       []byte
}

var errBadValue = errors.New("mailbox: unreadable stored value")

func parseEnv(v []byte) (storedEnv, error) {
	var e storedEnv
	switch {
	case len(v) >= envHeaderV2 && v[0] == valueV2:
		e.class = class(v[envHeaderV1])
		e.env = v[envHeaderV2:]
	case len(v) >= envHeaderV1 && v[0] == valueV1:
		e.class = classContact
		e.env = v[envHeaderV1:]
	default:
		return e, fmt.Errorf("%w: envelope value of %d bytes", errBadValue, len(v))
	}
	copy(e.id[:], v[1:])
	e.deposited = int64(binary.BigEndian.Uint64(v[1+idSize:]))
	return e, nil
}

// idxEntry is a decoded index value. deposited is zero for v1 entries
// (their envelope value has it).
type idxEntry struct {
	seq       uint64
	size      int
	deposited int64
	class     class
}

func idxValue(e idxEntry) []byte { return appendIdxValue(make([]byte, 0, idxSizeV2), e) }

func appendIdxValue(v []byte, e idxEntry) []byte {
	v = append(v, valueV2)
	v = binary.BigEndian.AppendUint64(v, e.seq)
	v = binary.BigEndian.AppendUint32(v, uint32(e.size))
	v = binary.BigEndian.AppendUint64(v, uint64(e.deposited))
	return append(v, byte(e.class))
}

func parseIdx(v []byte) (idxEntry, error) {
	var e idxEntry
	switch {
	case len(v) >= idxSizeV2 && v[0] == valueV2:
		e.deposited = int64(binary.BigEndian.Uint64(v[13:]))
		e.class = class(v[21])
	case len(v) >= idxSizeV1 && v[0] == valueV1:
		e.class = classContact
	default:
		return e, fmt.Errorf("%w: index value of %d bytes", errBadValue, len(v))
	}
	e.seq = binary.BigEndian.Uint64(v[1:])
	e.size = int(binary.BigEndian.Uint32(v[9:]))
	return e, nil
}

// ownerRecord is what the relay keeps about a mailbox whose owner has
// authenticated: that it is known (its envelopes get the full TTL) and
// the hashes of its delivery tokens.
type ownerRecord struct {
	lastAuth int64 // unix ns of the last authentication that wrote it
	hashes   [][hashSize]byte
}

func ownerValue(r *ownerRecord) []byte {
	v := make([]byte, 0, ownerHeader+len(r.hashes)*hashSize)
	v = append(v, ownerV1)
	v = binary.BigEndian.AppendUint64(v, uint64(r.lastAuth))
	v = append(v, byte(len(r.hashes)))
	for i := range r.hashes {
		v = append(v, r.hashes[i][:]...)
	}
	return v
}

func parseOwner(v []byte) (*ownerRecord, error) {
	if len(v) < ownerHeader || v[0] != ownerV1 {
		return nil, fmt.Errorf("%w: owner value of %d bytes", errBadValue, len(v))
	}
	n := int(v[9])
	if n > MaxTokens || len(v) < ownerHeader+n*hashSize {
		return nil, fmt.Errorf("%w: owner value of %d bytes with %d hashes", errBadValue, len(v), n)
	}
	r := &ownerRecord{lastAuth: int64(binary.BigEndian.Uint64(v[1:])), hashes: make([][hashSize]byte, n)}
	for i := range r.hashes {
		copy(r.hashes[i][:], v[ownerHeader+i*hashSize:])
	}
	return r, nil
}

// loadOwner reads addr's owner record; nil if the mailbox is unknown.
func (st *store) loadOwner(tx *storage.Txn, addr Address) (*ownerRecord, error) {
	v, err := tx.Get(st.owner, addr[:])
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	r, err := parseOwner(v)
	if err != nil {
		st.log.Warn("mailbox: unreadable owner record; treated as unknown", "addr", addr, "err", err)
		return nil, nil
	}
	return r, nil
}

// request is one unit of work for the committer.
type request struct {
	dep *depositReq
	ack *ackReq
	exp *expireReq
	own *ownerReq
}

// depositReq stores an envelope. ans is answered exactly once.
type depositReq struct {
	msg   *depositMsg
	class class
	ans   answerer
}

// answerer receives a deposit's outcome. answer must not block.
type answerer interface{ answer(outcome) }

// chanAnswer answers on a channel with room for the answer.
type chanAnswer chan outcome

func (c chanAnswer) answer(o outcome) { c <- o }

// ackReq deletes envelopes a session delivered from storage and its
// owner acked.
type ackReq struct {
	addr  Address
	items []ackItem
	done  func(deleted int) // called by the committer; may be nil
}

// ackItem is an acked envelope as its session loaded it. gen and blind
// say whether a delete without a lookup is safe (see committer.ack).
type ackItem struct {
	id    EnvelopeID
	seq   uint64
	size  int
	class class
	gen   uint64
	blind bool
}

// expireReq deletes envelopes the sweep found expired.
type expireReq struct {
	addr  Address
	items []expireItem
	done  func(deleted int)
}

// expireItem is an expired envelope as the sweep saw it.
type expireItem struct {
	id  EnvelopeID
	seq uint64
}

// ownerReq writes an owner record.
type ownerReq struct {
	addr Address
	rec  *ownerRecord
	done func(error)
}

// outcome answers a deposit.
type outcome struct {
	code Code
	text string
}

// reqBytes is what a request adds to a transaction, roughly.
func (r *request) reqBytes() int {
	switch {
	case r.dep != nil:
		return len(r.dep.msg.Envelope) + 160
	case r.ack != nil:
		return len(r.ack.items) * 112
	case r.exp != nil:
		return len(r.exp.items) * 112
	}
	return 256
}

// writes reports whether r stores data (it fails on a full disk); acks and
// expiry only delete.
func (r *request) writes() bool { return r.dep != nil || r.own != nil }

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

// usage is what a mailbox (or the whole store) holds: envelopes and
// bytes, and the part of them deposited by strangers.
type usage struct {
	count, strangerCount int
	bytes, strangerBytes int64
}

func (u *usage) add(size int, cl class, sign int) {
	u.count += sign
	u.bytes += int64(sign * size)
	if cl == classStranger {
		u.strangerCount += sign
		u.strangerBytes += int64(sign * size)
	}
}

// plus adds sign×d to u.
func (u *usage) plus(d usage, sign int) {
	u.count += sign * d.count
	u.bytes += int64(sign) * d.bytes
	u.strangerCount += sign * d.strangerCount
	u.strangerBytes += int64(sign) * d.strangerBytes
}

// count sets u to the content of addr's mailbox as tx sees it.
func (st *store) count(tx *storage.Txn, addr Address, u *usage) error {
	*u = usage{}
	return tx.Iterate(st.idx, addr[:], func(_, v []byte) error {
		if e, err := parseIdx(v); err == nil {
			u.add(e.size, e.class, 1)
		}
		return nil
	})
}

// total counts every stored envelope: the global counters at start.
func (st *store) total() (usage, error) {
	var u usage
	err := st.db.View(func(tx *storage.Txn) error {
		return tx.Iterate(st.idx, nil, func(_, v []byte) error {
			if e, err := parseIdx(v); err == nil {
				u.add(e.size, e.class, 1)
			}
			return nil
		})
	})
	return u, err
}

// loaded is an envelope handed to a session from storage: what its ack
// needs to delete it without reading it again.
type loaded struct {
	id    EnvelopeID
	seq   uint64
	size  int
	class class
}

// load appends Delivery frames for addr's envelopes with from <= seq <
// until, at most maxN of them and about maxBytes, to buf. It returns the
// extended buffer, the envelopes sent, and the seq to continue from.
func (st *store) load(addr Address, from, until uint64, maxN, maxBytes int, buf []byte, out []loaded) ([]byte, []loaded, uint64, error) {
	next := from
	var start [8]byte
	binary.BigEndian.PutUint64(start[:], from)
	err := st.db.View(func(tx *storage.Txn) error {
		return tx.IterateFrom(st.env, addr[:], start[:], func(k, v []byte) error {
			if len(out) >= maxN || (len(out) > 0 && len(buf) >= maxBytes) {
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
			e, err := parseEnv(v)
			if err != nil {
				st.log.Warn("mailbox: skipping unreadable envelope", "addr", addr, "seq", seq, "err", err)
				return nil
			}
			// A Delivery frame, built in place: id | deposited | len | envelope.
			buf = binary.BigEndian.AppendUint32(buf, uint32(1+idSize+8+4+len(e.env)))
			buf = append(buf, byte(typeDelivery))
			buf = append(buf, e.id[:]...)
			buf = binary.BigEndian.AppendUint64(buf, uint64(e.deposited))
			buf = binary.BigEndian.AppendUint32(buf, uint32(len(e.env)))
			buf = append(buf, e.env...)
			out = append(out, loaded{id: e.id, seq: seq, size: len(e.env), class: e.class})
			return nil
		})
	})
	return buf, out, next, err
}

// stats counts addr's stored envelopes and their bytes exactly.
func (st *store) stats(addr Address) (int, int64, error) {
	var u usage
	err := st.db.View(func(tx *storage.Txn) error { return st.count(tx, addr, &u) })
	return u.count, u.bytes, err
}

package mailbox

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/netip"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/peergram/peergram/storage"
)

// Budget is a token bucket bounding what one depositor may deposit: at
// most Envelopes envelopes and Bytes bytes at once, refilled at that much
// per Window. A negative Envelopes or Bytes leaves that resource
// unlimited. A zero field takes the default of the Budgets it belongs to.
type Budget struct {
	Envelopes int
	Bytes     int64
	Window    time.Duration
}

// Budgets are the buckets of one kind of deposit: one per remote peer ID
// and one per remote IP address (IPv6 addresses by /64, the block one
// subscriber usually holds). A deposit must fit both.
type Budgets struct {
	Peer Budget
	IP   Budget
}

// DefaultDepositBudgets bound every deposit (and the creation of owner
// records, counted as one envelope each): per peer 20,000 envelopes and
// 512 MiB per hour, per IP address 50,000 envelopes and 1 GiB per hour.
// They stop one machine from filling a relay in minutes while leaving a
// busy node far below them.
var DefaultDepositBudgets = Budgets{
	Peer: Budget{Envelopes: 20_000, Bytes: 512 << 20, Window: time.Hour},
	IP:   Budget{Envelopes: 50_000, Bytes: 1 << 30, Window: time.Hour},
}

// DefaultStrangerBudgets bound, in addition, deposits without a valid
// delivery token: per peer 1,000 envelopes and 32 MiB per 10 minutes, per
// IP address 4,000 envelopes and 128 MiB per 10 minutes.
var DefaultStrangerBudgets = Budgets{
	Peer: Budget{Envelopes: 1_000, Bytes: 32 << 20, Window: 10 * time.Minute},
	IP:   Budget{Envelopes: 4_000, Bytes: 128 << 20, Window: 10 * time.Minute},
}

// Unlimited is a Budgets value that limits nothing: for benchmarks, and
// private relays whose depositors are all trusted.
var Unlimited = Budgets{
	Peer: Budget{Envelopes: -1, Bytes: -1, Window: time.Hour},
	IP:   Budget{Envelopes: -1, Bytes: -1, Window: time.Hour},
}

func (b Budget) withDefaults(d Budget) Budget {
	if b.Envelopes == 0 {
		b.Envelopes = d.Envelopes
	}
	if b.Bytes == 0 {
		b.Bytes = d.Bytes
	}
	if b.Window <= 0 {
		b.Window = d.Window
	}
	return b
}

func (b Budgets) withDefaults(d Budgets) Budgets {
	return Budgets{Peer: b.Peer.withDefaults(d.Peer), IP: b.IP.withDefaults(d.IP)}
}

// bucket is the state of one token bucket.
type bucket struct {
	envelopes, bytes float64
	last             time.Time
}

// refill brings k up to now under b; it reports whether the bucket is full.
func (k *bucket) refill(b Budget, now time.Time) bool {
	dt := now.Sub(k.last).Seconds() / b.Window.Seconds()
	k.last = now
	if dt > 0 {
		k.envelopes = min(float64(b.Envelopes), k.envelopes+dt*float64(b.Envelopes))
		k.bytes = min(float64(b.Bytes), k.bytes+dt*float64(b.Bytes))
	}
	return (b.Envelopes < 0 || k.envelopes >= float64(b.Envelopes)) && (b.Bytes < 0 || k.bytes >= float64(b.Bytes))
}

func (k *bucket) fits(b Budget, n, size int) bool {
	return (b.Envelopes < 0 || k.envelopes >= float64(n)) && (b.Bytes < 0 || k.bytes >= float64(size))
}

func (k *bucket) take(n, size int) {
	k.envelopes -= float64(n)
	k.bytes -= float64(size)
}

// bucketKind tells the four kinds of bucket apart in one map.
type bucketKind uint8

const (
	allPeer bucketKind = iota
	allIP
	strangerPeer
	strangerIP
)

type bucketKey struct {
	kind bucketKind
	id   string // peer ID or IP prefix
}

// maxBuckets bounds the buckets kept; beyond it full buckets (as good as
// new) are dropped.
const maxBuckets = 1 << 16

// admission applies the depositor budgets. It is safe for concurrent use.
type admission struct {
	all, stranger Budgets
	now           func() time.Time

	mu      sync.Mutex // guards buckets
	buckets map[bucketKey]*bucket
}

func newAdmission(all, stranger Budgets) *admission {
	return &admission{all: all, stranger: stranger, now: time.Now, buckets: make(map[bucketKey]*bucket)}
}

// depositor is who deposits: the remote peer and its IP prefix.
type depositor struct {
	peer string
	ip   string
}

func depositorOf(p peer.ID, addr ma.Multiaddr) depositor {
	return depositor{peer: string(p), ip: ipPrefix(addr)}
}

// ipPrefix returns the remote IP of addr as a bucket name: the address for
// IPv4, its /64 for IPv6, "" when addr has none.
func ipPrefix(addr ma.Multiaddr) string {
	if addr == nil {
		return ""
	}
	for _, c := range addr {
		switch c.Code() {
		case ma.P_IP4, ma.P_IP6:
			ip, ok := netip.AddrFromSlice(c.RawValue())
			if !ok {
				return ""
			}
			ip = ip.Unmap()
			if ip.Is6() {
				if p, err := ip.Prefix(64); err == nil {
					return p.String()
				}
			}
			return ip.String()
		}
	}
	return ""
}

// take charges n envelopes of size bytes to d's buckets (and to its
// stranger buckets when stranger is set) if every one of them has room;
// otherwise it charges nothing and returns false.
func (a *admission) take(d depositor, n, size int, stranger bool) bool {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	type use struct {
		k *bucket
		b Budget
	}
	var uses [4]use
	m := 0
	add := func(kind bucketKind, id string, b Budget) {
		uses[m] = use{a.bucketLocked(bucketKey{kind, id}, b, now), b}
		m++
	}
	add(allPeer, d.peer, a.all.Peer)
	add(allIP, d.ip, a.all.IP)
	if stranger {
		add(strangerPeer, d.peer, a.stranger.Peer)
		add(strangerIP, d.ip, a.stranger.IP)
	}
	for _, u := range uses[:m] {
		if !u.k.fits(u.b, n, size) {
			return false
		}
	}
	for _, u := range uses[:m] {
		u.k.take(n, size)
	}
	return true
}

// bucketLocked returns the bucket of key refilled to now, creating it full.
func (a *admission) bucketLocked(key bucketKey, b Budget, now time.Time) *bucket {
	k := a.buckets[key]
	if k == nil {
		if len(a.buckets) >= maxBuckets {
			a.pruneLocked(now)
		}
		k = &bucket{envelopes: float64(b.Envelopes), bytes: float64(b.Bytes), last: now}
		a.buckets[key] = k
		return k
	}
	k.refill(b, now)
	return k
}

// pruneLocked drops full buckets; if none is full, an arbitrary half (a
// flood of distinct depositors only ever gets fresh buckets, which it
// would get from new peer IDs anyway).
func (a *admission) pruneLocked(now time.Time) {
	for key, k := range a.buckets {
		if k.refill(a.budget(key.kind), now) {
			delete(a.buckets, key)
		}
	}
	for key := range a.buckets {
		if len(a.buckets) < maxBuckets/2 {
			break
		}
		delete(a.buckets, key)
	}
}

func (a *admission) budget(k bucketKind) Budget {
	switch k {
	case allPeer:
		return a.all.Peer
	case allIP:
		return a.all.IP
	case strangerPeer:
		return a.stranger.Peer
	}
	return a.stranger.IP
}

// maxOwnerCache bounds the owner records (and known absences) kept in
// memory.
const maxOwnerCache = 1 << 16

// owners caches owner records, the source of truth for delivery tokens at
// deposit time. Records are written through the committer; set updates
// the cache first, and an entry with a write in flight is never evicted,
// so the cache never goes back to an older record. Safe for concurrent
// use.
type owners struct {
	st *store

	mu   sync.Mutex // guards recs
	recs map[Address]*ownerEntry
}

type ownerEntry struct {
	rec    *ownerRecord // nil: the mailbox is unknown
	writes int          // writes in flight
}

func newOwners(st *store) *owners {
	return &owners{st: st, recs: make(map[Address]*ownerEntry)}
}

// get returns addr's owner record (nil: unknown mailbox).
func (o *owners) get(addr Address) (*ownerRecord, error) {
	o.mu.Lock()
	if e := o.recs[addr]; e != nil {
		rec := e.rec // (set writes it under the lock)
		o.mu.Unlock()
		return rec, nil
	}
	o.mu.Unlock()
	var rec *ownerRecord
	err := o.st.db.View(func(tx *storage.Txn) error {
		var err error
		rec, err = o.st.loadOwner(tx, addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if e := o.recs[addr]; e != nil {
		return e.rec, nil // set meanwhile: newer than what was read
	}
	o.evictLocked()
	o.recs[addr] = &ownerEntry{rec: rec}
	return rec, nil
}

// set caches rec as addr's record, with its write in flight until written
// is called.
func (o *owners) set(addr Address, rec *ownerRecord) {
	o.mu.Lock()
	defer o.mu.Unlock()
	e := o.recs[addr]
	if e == nil {
		o.evictLocked()
		e = &ownerEntry{}
		o.recs[addr] = e
	}
	e.rec = rec
	e.writes++
}

// written ends a write started by set; a failed write drops the entry, so
// the next get reads what storage has.
func (o *owners) written(addr Address, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	e := o.recs[addr]
	if e == nil {
		return
	}
	if e.writes--; err != nil && e.writes == 0 {
		delete(o.recs, addr)
	}
}

func (o *owners) evictLocked() {
	if len(o.recs) < maxOwnerCache {
		return
	}
	for a, e := range o.recs {
		if len(o.recs) < maxOwnerCache/2 {
			return
		}
		if e.writes == 0 {
			delete(o.recs, a)
		}
	}
}

// classify tells a deposit for addr carrying tok (zero: none) as a
// contact's (tok hashes to one the owner registered) or a stranger's.
func (o *owners) classify(addr Address, tok Token) (class, error) {
	if tok == (Token{}) {
		return classStranger, nil
	}
	rec, err := o.get(addr)
	if err != nil || rec == nil {
		return classStranger, err
	}
	h := sha256.Sum256(tok[:])
	for i := range rec.hashes {
		if subtle.ConstantTimeCompare(h[:], rec.hashes[i][:]) == 1 {
			return classContact, nil
		}
	}
	return classStranger, nil
}

// tokenHashes returns the SHA-256 hashes of toks, the form a relay stores.
func tokenHashes(toks []Token) [][hashSize]byte {
	hs := make([][hashSize]byte, len(toks))
	for i := range toks {
		hs[i] = sha256.Sum256(toks[i][:])
	}
	return hs
}

package mailbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/peergram/peergram/storage"
)

const (
	// commitWorkers is how many transactions may commit at once. Badger
	// syncs its log once per transaction, so one large transaction beats
	// several small ones: the builder prepares the next batch while one
	// commits.
	commitWorkers = 1

	// maxPending bounds requests the builder holds while workers are busy;
	// beyond it, submitters wait (backpressure).
	maxPending = 4 * maxBatchCount

	// maxQuotaCache bounds the cached counters of idle mailboxes.
	maxQuotaCache = 16384

	// diskFullPause is how long deposits are refused without trying after
	// a commit failed for lack of disk space; deletions go on.
	diskFullPause = time.Second
)

// committer is the single writer of the mailbox keyspaces. One builder
// goroutine (run) takes pending requests, does every read in a View
// (duplicate checks, mailbox counters, and the index entries of expired
// envelopes), and turns them into a batch of blind writes; up to
// commitWorkers batches commit at once. Blind writes never conflict, and
// the builder keeps two batches in flight from touching the same index
// key, so no transaction is retried and no envelope is stored twice.
//
// Counters (per mailbox, loaded by counting on first use, and for the
// whole store, counted at start) are kept in memory only: every change
// passes through here, and expiry too (sweep.go), so they stay exact.
//
// Batches commit in any order, but a subscriber must never read past an
// envelope still in flight (it would skip it), so senders read only below
// safe(): the lowest seq of a batch in flight.
type committer struct {
	st     *store
	met    *metrics
	reqs   <-chan request
	stop   <-chan struct{}
	notify func([]Address)

	// Builder goroutine only.
	done      chan *batch
	busy      int
	carry     []request // deferred until a batch in flight completes
	keys      map[idxKeyT]int
	owners    map[Address]int // owner records written by batches in flight
	quotas    map[Address]*quota
	global    usage // projected: committed plus batches in flight
	committed usage
	diskFull  time.Time // last commit refused for lack of disk space

	fmu     sync.Mutex // guards the fields below; sessions read safe() and expiry()
	flight  []*batch   // batches holding seqs, in seq order, until popped
	nextSeq uint64     // every seq handed out later is >= nextSeq
	expGen  uint64     // bumped when a batch expiring envelopes starts and ends
	expBusy int        // such batches in flight
}

// quota is a mailbox's counters as the builder projects them: committed
// plus every batch in flight. Until loaded, only batches is kept.
type quota struct {
	usage
	loaded  bool
	batches int // batches in flight touching this mailbox
}

// op is one blind write; a nil val deletes.
type op struct {
	ks  *storage.Keyspace
	key []byte
	val []byte
	ttl time.Duration
}

// reqInfo is what the builder decided for one request.
type reqInfo struct {
	out     outcome
	stored  bool
	deleted int
	ignored int
	d       usage  // effect on its mailbox and on the store
	ops     [2]int // range in batch.ops
	addr    Address
}

type batch struct {
	reqs    []request
	info    []reqInfo
	ops     []op
	deltas  map[Address]*usage // every mailbox the batch touches
	touched map[Address]bool   // mailboxes that receive envelopes
	keys    []idxKeyT
	owners  []Address
	seen    map[idxKeyT]byte // seenStored or seenDeleted within the batch
	lo      uint64
	seqs    bool // holds seqs: registered in flight
	expires bool // expires envelopes: counted in expGen/expBusy
	done    bool // guarded by fmu
	err     error
	reqErr  []error // per request, after a split commit
	arena   []byte  // keys and values of ops, carved from a few large allocations
}

// reqError is the commit error of request i, if any.
func (b *batch) reqError(i int) error {
	if b.err == nil && b.reqErr != nil {
		return b.reqErr[i]
	}
	return b.err
}

// alloc returns n fresh bytes from b's arena.
func (b *batch) alloc(n int) []byte {
	if cap(b.arena)-len(b.arena) < n {
		b.arena = make([]byte, 0, max(n, 64<<10))
	}
	end := len(b.arena) + n
	s := b.arena[len(b.arena):end:end]
	b.arena = b.arena[:end]
	return s
}

func (b *batch) envKey(addr Address, seq uint64) []byte {
	k := b.alloc(addressSize + 8)
	copy(k, addr[:])
	binary.BigEndian.PutUint64(k[addressSize:], seq)
	return k
}

func (b *batch) idxKey(k idxKeyT) []byte {
	return append(b.alloc(len(k))[:0], k[:]...)
}

const (
	seenStored  = 1
	seenDeleted = 2
)

func newCommitter(st *store, met *metrics, reqs <-chan request, stop <-chan struct{}, notify func([]Address)) *committer {
	return &committer{
		st:     st,
		met:    met,
		reqs:   reqs,
		stop:   stop,
		notify: notify,
		done:   make(chan *batch, commitWorkers),
		keys:   make(map[idxKeyT]int),
		owners: make(map[Address]int),
		quotas: make(map[Address]*quota),
	}
}

// init learns a lower bound for the seqs this run hands out (every stored
// envelope is below it) and counts what the store holds.
func (c *committer) init() error {
	seq, err := c.st.seq.Next()
	if err != nil {
		return err
	}
	c.nextSeq = seq
	start := time.Now()
	u, err := c.st.total()
	if err != nil {
		return fmt.Errorf("count stored envelopes: %w", err)
	}
	c.global, c.committed = u, u
	c.met.setHeld(u)
	c.st.log.Info("mailbox: store counted", "envelopes", u.count, "bytes", u.bytes, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// safe returns the seq below which every envelope is committed or will
// never exist.
func (c *committer) safe() uint64 {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	if len(c.flight) > 0 {
		return c.flight[0].lo
	}
	return c.nextSeq
}

// expiry returns the expiry generation a session records with what it is
// about to load, and whether an expiring batch is in flight (then acks of
// what it loads need a lookup; see ack).
func (c *committer) expiry() (gen uint64, busy bool) {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	return c.expGen, c.expBusy > 0
}

// run is the builder loop. It returns once stop is closed and every
// request handed over has been answered.
func (c *committer) run() {
	var pending []request
	reqs, stop := c.reqs, c.stop
	for {
		for c.busy < commitWorkers && len(pending)+len(c.carry) > 0 {
			var launched bool
			pending, launched = c.launch(pending)
			if !launched {
				break // only deferred requests: wait for a completion
			}
		}
		if stop == nil && len(pending) == 0 && len(c.carry) == 0 && c.busy == 0 && len(c.reqs) == 0 {
			return
		}
		in := reqs
		if len(pending) >= maxPending {
			in = nil
		}
		select {
		case r := <-in:
			pending = append(pending, r)
		drain:
			for len(pending) < maxPending {
				select {
				case r = <-reqs:
					pending = append(pending, r)
				default:
					break drain
				}
			}
		case b := <-c.done:
			c.busy--
			c.complete(b)
		case <-stop:
			stop = nil // handlers are gone; finish what they handed over
		}
	}
}

// launch builds one batch from the carried and pending requests and
// starts committing it. It returns the requests left for later.
func (c *committer) launch(pending []request) ([]request, bool) {
	in := make([]request, 0, len(c.carry)+len(pending))
	in = append(append(in, c.carry...), pending...)
	c.carry = c.carry[:0]
	b, rest := c.build(in)
	if len(b.reqs) == 0 {
		c.release(b)
		return rest, false
	}
	if b.err != nil || len(b.ops) == 0 {
		c.complete(b) // failed, or nothing to write (duplicates, refusals)
		return rest, true
	}
	c.busy++
	go c.apply(b)
	return rest, true
}

// build decides a batch. Requests that touch a key of a batch in flight
// go to c.carry.
func (c *committer) build(in []request) (*batch, []request) {
	b := &batch{deltas: make(map[Address]*usage), touched: make(map[Address]bool), seen: make(map[idxKeyT]byte)}
	now := c.st.now()
	rest := in[:0:0]
	size := 0
	err := c.st.db.View(func(tx *storage.Txn) error {
		for i, r := range in {
			if len(b.reqs) >= maxBatchCount || len(b.reqs) > 0 && size+r.reqBytes() > maxBatchBytes {
				rest = in[i:]
				return nil
			}
			var inf reqInfo
			var deferred bool
			var err error
			start := len(b.ops)
			switch {
			case r.dep != nil:
				deferred, err = c.deposit(tx, b, r.dep, now, &inf)
			case r.ack != nil:
				deferred, err = c.ack(tx, b, r.ack, &inf)
			case r.exp != nil:
				deferred, err = c.expire(tx, b, r.exp, &inf)
			default:
				deferred = c.owner(b, r.own, &inf)
			}
			if deferred {
				c.carry = append(c.carry, r)
				continue
			}
			inf.ops = [2]int{start, len(b.ops)}
			b.reqs = append(b.reqs, r)
			b.info = append(b.info, inf)
			size += r.reqBytes()
			if err != nil {
				rest = in[i+1:]
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.err = err
	}
	c.register(b)
	return b, rest
}

// register marks b's keys and mailboxes as in flight.
func (c *committer) register(b *batch) {
	for _, k := range b.keys {
		c.keys[k]++
	}
	for _, a := range b.owners {
		c.owners[a]++
	}
	for addr := range b.deltas {
		c.quotaEntry(addr).batches++
	}
	if b.expires {
		c.fmu.Lock()
		c.expGen++
		c.expBusy++
		c.fmu.Unlock()
	}
}

// release undoes register.
func (c *committer) release(b *batch) {
	for _, k := range b.keys {
		if c.keys[k]--; c.keys[k] <= 0 {
			delete(c.keys, k)
		}
	}
	for _, a := range b.owners {
		if c.owners[a]--; c.owners[a] <= 0 {
			delete(c.owners, a)
		}
	}
	for addr := range b.deltas {
		q := c.quotas[addr]
		if q.batches--; q.batches == 0 && !q.loaded {
			delete(c.quotas, addr)
		}
	}
	if b.expires {
		c.fmu.Lock()
		c.expGen++
		c.expBusy--
		c.fmu.Unlock()
	}
}

func (c *committer) quotaEntry(addr Address) *quota {
	q := c.quotas[addr]
	if q == nil {
		q = &quota{}
		c.quotas[addr] = q
	}
	return q
}

// quotaOf returns addr's loaded counters, counting them if needed; it
// defers (nil, true) while batches whose effect the count could not tell
// are in flight.
func (c *committer) quotaOf(tx *storage.Txn, b *batch, addr Address) (*quota, bool, error) {
	q := c.quotaEntry(addr)
	if q.loaded {
		return q, false, nil
	}
	if q.batches > 0 {
		return nil, true, nil
	}
	var u usage
	if err := c.st.count(tx, addr, &u); err != nil {
		return nil, false, err
	}
	// The snapshot misses what this batch did so far.
	if bd := b.deltas[addr]; bd != nil {
		u.plus(*bd, 1)
	}
	q.usage, q.loaded = u, true
	return q, false, nil
}

func (b *batch) delta(addr Address) *usage {
	d := b.deltas[addr]
	if d == nil {
		d = &usage{}
		b.deltas[addr] = d
	}
	return d
}

// change applies one envelope's arrival (sign 1) or removal (-1) to the
// batch, the request, the mailbox (if loaded) and the store.
func (c *committer) change(b *batch, inf *reqInfo, addr Address, size int, cl class, sign int) {
	b.delta(addr).add(size, cl, sign)
	inf.d.add(size, cl, sign)
	if q := c.quotaEntry(addr); q.loaded {
		q.add(size, cl, sign)
	}
	c.global.add(size, cl, sign)
}

func (c *committer) deposit(tx *storage.Txn, b *batch, d *depositReq, now time.Time, inf *reqInfo) (deferred bool, err error) {
	m := d.msg
	inf.addr = m.To
	k := idxKey(m.To, m.ID)
	switch {
	case b.seen[k] == seenStored:
		inf.out = outcome{CodeOK, "duplicate"}
		return false, nil
	case b.seen[k] == seenDeleted || c.keys[k] > 0:
		return true, nil // wait for the batch that has it in flight
	case now.Sub(c.diskFull) < diskFullPause:
		inf.out = outcome{CodeUnavailable, "relay disk full"}
		return false, nil
	}
	if ok, err := tx.Has(c.st.idx, k[:]); err != nil || ok {
		inf.out = outcome{CodeOK, "duplicate"}
		return false, err
	}
	q, deferred, err := c.quotaOf(tx, b, m.To)
	if deferred || err != nil {
		return deferred, err
	}
	size := len(m.Envelope)
	stranger := d.class == classStranger
	switch {
	case q.count+1 > c.st.maxCount || q.bytes+int64(size) > c.st.maxBytes:
		inf.out = outcome{CodeQuotaExceeded, fmt.Sprintf(
			"mailbox holds %d envelopes, %d bytes; limits %d, %d", q.count, q.bytes, c.st.maxCount, c.st.maxBytes)}
		return false, nil
	case stranger && (q.strangerCount+1 > c.st.strangerCount || q.strangerBytes+int64(size) > c.st.strangerBytes):
		inf.out = outcome{CodeStrangerQuota, fmt.Sprintf(
			"deposits without a delivery token hold %d envelopes, %d bytes of this mailbox; limits %d, %d",
			q.strangerCount, q.strangerBytes, c.st.strangerCount, c.st.strangerBytes)}
		return false, nil
	case c.global.bytes+int64(size) > c.st.maxStore:
		inf.out = outcome{CodeRelayFull, fmt.Sprintf("relay holds %d bytes of envelopes; limit %d", c.global.bytes, c.st.maxStore)}
		return false, nil
	case stranger && c.global.bytes+int64(size) > c.st.strangerStoreFull:
		inf.out = outcome{CodeRelayFull, fmt.Sprintf(
			"relay holds %d bytes of envelopes; above %d only deposits with a delivery token are accepted", c.global.bytes, c.st.strangerStoreFull)}
		return false, nil
	}
	seq, err := c.allocSeq(b)
	if err != nil {
		return false, err
	}
	deposited := now.UnixNano()
	ev := appendEnvValue(b.alloc(envHeaderV2 + size)[:0], m.ID, deposited, d.class, m.Envelope)
	iv := appendIdxValue(b.alloc(idxSizeV2)[:0], idxEntry{seq: seq, size: size, deposited: deposited, class: d.class})
	b.ops = append(b.ops,
		op{ks: &c.st.env, key: b.envKey(m.To, seq), val: ev, ttl: c.st.keyTTL},
		op{ks: &c.st.idx, key: b.idxKey(k), val: iv, ttl: c.st.keyTTL})
	c.change(b, inf, m.To, size, d.class, 1)
	inf.stored = true
	inf.out = outcome{CodeOK, "stored"}
	b.touched[m.To] = true
	b.seen[k] = seenStored
	b.keys = append(b.keys, k)
	return false, nil
}

// allocSeq hands out the next seq, registering b in flight at its first.
func (c *committer) allocSeq(b *batch) (uint64, error) {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	if !b.seqs {
		b.seqs = true
		b.lo = c.nextSeq
		c.flight = append(c.flight, b)
	}
	seq, err := c.st.seq.Next()
	if err != nil {
		return 0, err
	}
	c.nextSeq = seq + 1
	return seq, nil
}

// ack deletes envelopes a session delivered, without reading them again
// when that is safe: the session loaded them (seq, size, class) after the
// last expiry batch ended and none has started since (gen unchanged), and
// only one session per mailbox exists, so nobody else can have deleted
// them. Otherwise it looks each one up.
func (c *committer) ack(tx *storage.Txn, b *batch, a *ackReq, inf *reqInfo) (deferred bool, err error) {
	inf.addr = a.addr
	for _, it := range a.items {
		k := idxKey(a.addr, it.id)
		if b.seen[k] == seenStored || c.keys[k] > 0 {
			return true, nil
		}
	}
	b.delta(a.addr)
	for _, it := range a.items {
		k := idxKey(a.addr, it.id)
		if b.seen[k] == seenDeleted {
			inf.ignored++
			continue
		}
		e := idxEntry{seq: it.seq, size: it.size, class: it.class}
		if !it.blind || it.gen != c.expGen {
			var found bool
			if e, found, err = c.lookup(tx, a.addr, k); err != nil {
				return false, err
			}
			if !found {
				inf.ignored++
				continue
			}
		}
		c.remove(b, inf, a.addr, k, e)
	}
	return false, nil
}

// expire deletes envelopes the sweep found expired, if they are still the
// ones it saw (an envelope acked meanwhile and deposited again is not).
func (c *committer) expire(tx *storage.Txn, b *batch, x *expireReq, inf *reqInfo) (deferred bool, err error) {
	inf.addr = x.addr
	for _, it := range x.items {
		k := idxKey(x.addr, it.id)
		if b.seen[k] != 0 || c.keys[k] > 0 {
			return true, nil
		}
	}
	b.delta(x.addr)
	b.expires = true
	for _, it := range x.items {
		k := idxKey(x.addr, it.id)
		e, found, err := c.lookup(tx, x.addr, k)
		if err != nil {
			return false, err
		}
		if !found || e.seq != it.seq {
			inf.ignored++
			continue
		}
		c.remove(b, inf, x.addr, k, e)
	}
	return false, nil
}

// lookup reads an index entry; an unreadable one is deleted (with its
// envelope unknown) and reported as not found.
func (c *committer) lookup(tx *storage.Txn, addr Address, k idxKeyT) (idxEntry, bool, error) {
	v, err := tx.Get(c.st.idx, k[:])
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return idxEntry{}, false, nil
	case err != nil:
		return idxEntry{}, false, err
	}
	e, err := parseIdx(v)
	if err != nil {
		return idxEntry{}, false, nil
	}
	return e, true, nil
}

// remove deletes one envelope and its index entry.
func (c *committer) remove(b *batch, inf *reqInfo, addr Address, k idxKeyT, e idxEntry) {
	b.ops = append(b.ops,
		op{ks: &c.st.env, key: b.envKey(addr, e.seq)},
		op{ks: &c.st.idx, key: b.idxKey(k)})
	c.change(b, inf, addr, e.size, e.class, -1)
	inf.deleted++
	b.seen[k] = seenDeleted
	b.keys = append(b.keys, k)
}

// owner writes an owner record; records of one mailbox commit in order.
func (c *committer) owner(b *batch, o *ownerReq, inf *reqInfo) (deferred bool) {
	inf.addr = o.addr
	if c.owners[o.addr] > 0 || ownerIn(b, o.addr) {
		return true
	}
	b.ops = append(b.ops, op{ks: &c.st.owner, key: bytesOf32(o.addr), val: ownerValue(o.rec), ttl: c.st.ownerTTL})
	b.owners = append(b.owners, o.addr)
	return false
}

func ownerIn(b *batch, addr Address) bool {
	for _, a := range b.owners {
		if a == addr {
			return true
		}
	}
	return false
}

func bytesOf32(a Address) []byte { return append([]byte(nil), a[:]...) }

// apply commits b on a worker goroutine. A batch too big for one
// transaction commits each request alone (a request's writes stay
// atomic). On a full disk the deletions commit without the writes, so
// acks and expiry go on.
func (c *committer) apply(b *batch) {
	b.err = c.st.db.Update(func(tx *storage.Txn) error { return c.write(tx, b.ops) })
	switch {
	case errors.Is(b.err, storage.ErrTxnTooBig) && len(b.reqs) > 1:
		b.err = nil
		b.reqErr = make([]error, len(b.reqs))
		for i, inf := range b.info {
			if ops := b.ops[inf.ops[0]:inf.ops[1]]; len(ops) > 0 {
				b.reqErr[i] = c.st.db.Update(func(tx *storage.Txn) error { return c.write(tx, ops) })
			}
		}
	case errors.Is(b.err, storage.ErrDiskFull):
		err := b.err
		b.err = nil
		b.reqErr = make([]error, len(b.reqs))
		var dels []op
		for i, r := range b.reqs {
			if r.writes() {
				b.reqErr[i] = err
			} else {
				dels = append(dels, b.ops[b.info[i].ops[0]:b.info[i].ops[1]]...)
			}
		}
		if len(dels) > 0 {
			if derr := c.st.db.Update(func(tx *storage.Txn) error { return c.write(tx, dels) }); derr != nil {
				for i, r := range b.reqs {
					if !r.writes() {
						b.reqErr[i] = derr
					}
				}
			}
		}
	}
	c.done <- b
}

func (c *committer) write(tx *storage.Txn, ops []op) error {
	for _, o := range ops {
		var err error
		if o.val == nil {
			err = tx.Delete(*o.ks, o.key)
		} else {
			err = tx.SetTTL(*o.ks, o.key, o.val, o.ttl)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// complete releases what b held, wakes the subscribers of every batch
// that is now below the safe seq, and answers b's requests.
func (c *committer) complete(b *batch) {
	// Counters and metrics first, so that whoever hears of a commit sees
	// them.
	var stored, dups, bytes, ignored, expired int
	for i, r := range b.reqs {
		inf := &b.info[i]
		if err := b.reqError(i); err != nil {
			// Undo the projection.
			if q := c.quotas[inf.addr]; q != nil && q.loaded {
				q.plus(inf.d, -1)
			}
			c.global.plus(inf.d, -1)
			if errors.Is(err, storage.ErrDiskFull) {
				c.diskFull = c.st.now()
			}
			continue
		}
		c.committed.plus(inf.d, 1)
		ignored += inf.ignored
		switch {
		case r.exp != nil:
			expired += inf.deleted
		case r.dep == nil:
		case inf.out.code != CodeOK: // the stream counts refusals
		case inf.stored:
			stored++
			bytes += len(r.dep.msg.Envelope)
		default:
			dups++
		}
	}
	c.met.setHeld(c.committed)
	c.met.deposits.WithLabelValues("stored").Add(float64(stored))
	c.met.deposits.WithLabelValues("duplicate").Add(float64(dups))
	c.met.storedBytes.Add(float64(bytes))
	c.met.acksIgnored.Add(float64(ignored))
	c.met.expired.Add(float64(expired))

	c.release(b)

	// A batch is answered once it is below safe(): a depositor told
	// "stored" that subscribes at once must find its envelope, so a batch
	// that committed before an earlier one still in flight waits for it
	// (TestOnDrained saw a mailbox drained before its 50 envelopes when
	// answers came first).
	var touched []Address
	var ready []*batch
	c.fmu.Lock()
	b.done = true
	if !b.seqs {
		ready = append(ready, b) // never in flight
	}
	for len(c.flight) > 0 && c.flight[0].done {
		f := c.flight[0]
		for addr := range f.touched {
			touched = append(touched, addr)
		}
		ready = append(ready, f)
		c.flight[0] = nil
		c.flight = c.flight[1:]
	}
	c.fmu.Unlock()
	c.notify(touched)

	for _, r := range ready {
		c.answer(r)
	}

	if len(c.quotas) > maxQuotaCache {
		for addr, q := range c.quotas {
			if q.batches == 0 {
				delete(c.quotas, addr)
			}
		}
	}
}

// answer answers b's requests.
func (c *committer) answer(b *batch) {
	for i, r := range b.reqs {
		inf := &b.info[i]
		err := b.reqError(i)
		switch {
		case r.dep != nil && err != nil:
			r.dep.ans.answer(c.st.failure(err)) // the stream counts refusals
		case r.dep != nil:
			r.dep.ans.answer(inf.out)
		case r.ack != nil:
			if err != nil {
				c.st.log.Warn("mailbox: ack not committed; envelopes will be redelivered", "err", err)
			}
			if r.ack.done != nil {
				r.ack.done(inf.deleted * boolInt(err == nil))
			}
		case r.exp != nil:
			if err != nil {
				c.st.log.Warn("mailbox: expiry not committed; the next sweep retries", "err", err)
			}
			if r.exp.done != nil {
				r.exp.done(inf.deleted * boolInt(err == nil))
			}
		default:
			if r.own.done != nil {
				r.own.done(err)
			}
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

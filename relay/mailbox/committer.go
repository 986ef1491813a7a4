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
	// commitWorkers is how many transactions may commit at once. Their
	// fsyncs overlap (storage shares one fsync among concurrent commits)
	// while the builder prepares the next batch.
	commitWorkers = 4

	// maxPending bounds requests the builder holds while workers are busy;
	// beyond it, submitters wait (backpressure).
	maxPending = 4 * maxBatchCount

	// maxQuotaCache bounds the cached counters of idle mailboxes.
	maxQuotaCache = 16384
)

// committer is the single writer of the mailbox keyspaces. One builder
// goroutine (run) takes pending requests, does every read in a View
// (duplicate checks, counters, the seq of acked envelopes), and turns them
// into a batch of blind writes; up to commitWorkers batches commit at
// once. Blind writes never conflict, and the builder keeps two batches in
// flight from touching the same index key, so no transaction is retried
// and no envelope is stored twice.
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
	done   chan *batch
	busy   int
	carry  []request // deferred until a batch in flight completes
	keys   map[idxKeyT]int
	quotas map[Address]*quota

	fmu     sync.Mutex // guards flight and nextSeq; senders read safe()
	flight  []*batch   // batches holding seqs, in seq order, until popped
	nextSeq uint64     // every seq handed out later is >= nextSeq
}

// quota is a mailbox's counters as the builder projects them: committed
// plus every batch in flight.
type quota struct {
	count       int
	bytes       int64
	flightCount int // part of count from batches in flight
	flightBytes int64
	batches     int // batches in flight touching this mailbox
	recounted   time.Time
}

type delta struct {
	count int
	bytes int64
}

// op is one blind write; a nil val deletes.
type op struct {
	ks  *storage.Keyspace
	key []byte
	val []byte
}

// reqInfo is what the builder decided for one request.
type reqInfo struct {
	out     outcome
	stored  bool
	deleted int
	ignored int
	d       delta
	ops     [2]int // range in batch.ops
	addr    Address
}

type batch struct {
	reqs     []request
	info     []reqInfo
	ops      []op
	metaFrom int
	deltas   map[Address]*delta
	touched  map[Address]bool // mailboxes that receive envelopes
	keys     []idxKeyT
	seen     map[idxKeyT]byte // seenStored or seenDeleted within the batch
	lo       uint64
	seqs     bool // holds seqs: registered in flight
	done     bool // guarded by fmu
	err      error
	reqErr   []error // per request, after a split commit
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
		quotas: make(map[Address]*quota),
	}
}

// init learns a lower bound for the seqs this run hands out; every stored
// envelope is below it.
func (c *committer) init() error {
	seq, err := c.st.seq.Next()
	if err != nil {
		return err
	}
	c.nextSeq = seq
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
		return rest, false
	}
	if b.err != nil || b.metaFrom == 0 && len(b.ops) == 0 {
		c.complete(b) // failed, or nothing to write (duplicates, refusals)
		return rest, true
	}
	c.busy++
	go c.apply(b)
	return rest, true
}

// build decides a batch. Requests that touch an index key of a batch in
// flight go to c.carry.
func (c *committer) build(in []request) (*batch, []request) {
	b := &batch{deltas: make(map[Address]*delta), touched: make(map[Address]bool), seen: make(map[idxKeyT]byte)}
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
			if r.dep != nil {
				deferred, err = c.deposit(tx, b, r.dep, now, &inf)
			} else {
				deferred, err = c.ack(tx, b, r.ack, &inf)
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
		c.register(b)
		return b, rest
	}
	b.metaFrom = len(b.ops)
	for addr := range b.deltas {
		q := c.quotas[addr]
		m := mailboxMeta{count: q.count, bytes: q.bytes}
		if m.count <= 0 {
			b.ops = append(b.ops, op{ks: &c.st.meta, key: addr[:]})
		} else {
			b.ops = append(b.ops, op{ks: &c.st.meta, key: addr[:], val: metaValue(&m)})
		}
	}
	if len(b.ops) == b.metaFrom {
		b.metaFrom = 0 // nothing but (possibly) meta: see launch
		b.ops = b.ops[:0]
	}
	c.register(b)
	return b, rest
}

// register marks b's keys and counters as in flight.
func (c *committer) register(b *batch) {
	for _, k := range b.keys {
		c.keys[k]++
	}
	for addr, d := range b.deltas {
		q := c.quotas[addr]
		q.flightCount += d.count
		q.flightBytes += d.bytes
		q.batches++
	}
}

// quotaOf returns addr's projected counters, loading them if needed.
func (c *committer) quotaOf(tx *storage.Txn, addr Address) (*quota, error) {
	if q := c.quotas[addr]; q != nil {
		return q, nil
	}
	var m mailboxMeta
	if err := c.st.loadMeta(tx, addr, &m); err != nil {
		return nil, err
	}
	q := &quota{count: m.count, bytes: m.bytes}
	c.quotas[addr] = q
	return q, nil
}

func (c *committer) over(q *quota, size int) bool {
	return q.count+1 > c.st.maxCount || q.bytes+int64(size) > c.st.maxBytes
}

func (b *batch) delta(addr Address) *delta {
	d := b.deltas[addr]
	if d == nil {
		d = &delta{}
		b.deltas[addr] = d
	}
	return d
}

func (c *committer) deposit(tx *storage.Txn, b *batch, d *depositMsg, now time.Time, inf *reqInfo) (deferred bool, err error) {
	inf.addr = d.To
	k := idxKey(d.To, d.ID)
	switch {
	case b.seen[k] == seenStored:
		inf.out = outcome{CodeOK, "duplicate"}
		return false, nil
	case b.seen[k] == seenDeleted || c.keys[k] > 0:
		return true, nil // wait for the batch that has it in flight
	}
	if ok, err := tx.Has(c.st.idx, k[:]); err != nil || ok {
		inf.out = outcome{CodeOK, "duplicate"}
		return false, err
	}
	q, err := c.quotaOf(tx, d.To)
	if err != nil {
		return false, err
	}
	size := len(d.Envelope)
	if c.over(q, size) {
		// Counters only over-count (entries expire behind them), so
		// recount before refusing, at most once per recountEvery.
		if now.Sub(q.recounted) >= recountEvery {
			q.recounted = now
			var m mailboxMeta
			if err := c.st.count(tx, d.To, &m); err != nil {
				return false, err
			}
			// The snapshot misses batches in flight and this one so far.
			bd := b.deltas[d.To]
			q.count, q.bytes = m.count+q.flightCount, m.bytes+q.flightBytes
			if bd != nil {
				q.count += bd.count
				q.bytes += bd.bytes
			}
			b.delta(d.To) // rewrite the meta value
		}
		if c.over(q, size) {
			inf.out = outcome{CodeQuotaExceeded, fmt.Sprintf(
				"mailbox holds %d envelopes, %d bytes; limits %d, %d",
				q.count, q.bytes, c.st.maxCount, c.st.maxBytes)}
			return false, nil
		}
	}
	seq, err := c.allocSeq(b)
	if err != nil {
		return false, err
	}
	v := make([]byte, 0, envValueHeader+size)
	v = append(v, valueVersion)
	v = append(v, d.ID[:]...)
	v = binary.BigEndian.AppendUint64(v, uint64(now.UnixNano()))
	v = append(v, d.Envelope...)
	iv := make([]byte, idxValueSize)
	iv[0] = valueVersion
	binary.BigEndian.PutUint64(iv[1:], seq)
	binary.BigEndian.PutUint32(iv[9:], uint32(size))
	b.ops = append(b.ops,
		op{ks: &c.st.env, key: envKey(d.To, seq), val: v},
		op{ks: &c.st.idx, key: k[:], val: iv})
	q.count++
	q.bytes += int64(size)
	bd := b.delta(d.To)
	bd.count++
	bd.bytes += int64(size)
	inf.d = delta{1, int64(size)}
	inf.stored = true
	inf.out = outcome{CodeOK, "stored"}
	b.touched[d.To] = true
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

func (c *committer) ack(tx *storage.Txn, b *batch, a *ackReq, inf *reqInfo) (deferred bool, err error) {
	inf.addr = a.addr
	for _, id := range a.ids {
		k := idxKey(a.addr, id)
		if b.seen[k] == seenStored || c.keys[k] > 0 {
			return true, nil
		}
	}
	for _, id := range a.ids {
		k := idxKey(a.addr, id)
		if b.seen[k] == seenDeleted {
			inf.ignored++
			continue
		}
		v, err := tx.Get(c.st.idx, k[:])
		if errors.Is(err, storage.ErrNotFound) {
			// Someone else's ID, an expired one, or one already acked:
			// nothing of this mailbox to delete.
			inf.ignored++
			c.st.log.Debug("mailbox: ack names no envelope of this mailbox; ignored", "addr", a.addr, "id", id)
			continue
		}
		if err != nil {
			return false, err
		}
		seq, size, perr := parseIdx(v)
		if perr == nil {
			b.ops = append(b.ops, op{ks: &c.st.env, key: envKey(a.addr, seq)})
		} else {
			c.st.log.Warn("mailbox: deleting unreadable index entry", "addr", a.addr, "id", id, "err", perr)
		}
		b.ops = append(b.ops, op{ks: &c.st.idx, key: bytesOf(k)})
		q, err := c.quotaOf(tx, a.addr)
		if err != nil {
			return false, err
		}
		q.count--
		q.bytes -= int64(size)
		bd := b.delta(a.addr)
		bd.count--
		bd.bytes -= int64(size)
		inf.d.count--
		inf.d.bytes -= int64(size)
		inf.deleted++
		b.seen[k] = seenDeleted
		b.keys = append(b.keys, k)
	}
	return false, nil
}

func bytesOf(k idxKeyT) []byte { return append([]byte(nil), k[:]...) }

// apply commits b on a worker goroutine. If b is too big for one
// transaction it commits each request alone (a request's writes stay
// atomic), then the counters.
func (c *committer) apply(b *batch) {
	b.err = c.st.db.Update(func(tx *storage.Txn) error { return c.write(tx, b.ops) })
	if errors.Is(b.err, storage.ErrTxnTooBig) && len(b.reqs) > 1 {
		b.err = nil
		b.reqErr = make([]error, len(b.reqs))
		for i, inf := range b.info {
			if ops := b.ops[inf.ops[0]:inf.ops[1]]; len(ops) > 0 {
				b.reqErr[i] = c.st.db.Update(func(tx *storage.Txn) error { return c.write(tx, ops) })
			}
		}
		if err := c.st.db.Update(func(tx *storage.Txn) error { return c.write(tx, b.ops[b.metaFrom:]) }); err != nil {
			c.st.log.Warn("mailbox: counters not written; a recount will fix them", "err", err)
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
			err = tx.SetTTL(*o.ks, o.key, o.val, c.st.ttl)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// complete answers b's requests, releases what it held, and wakes the
// subscribers of every batch that is now below the safe seq.
func (c *committer) complete(b *batch) {
	for _, k := range b.keys {
		if c.keys[k]--; c.keys[k] <= 0 {
			delete(c.keys, k)
		}
	}
	for addr, d := range b.deltas {
		q := c.quotas[addr]
		q.flightCount -= d.count
		q.flightBytes -= d.bytes
		q.batches--
	}
	var stored, dups, bytes, ignored int
	for i, r := range b.reqs {
		inf := &b.info[i]
		err := b.err
		if err == nil && b.reqErr != nil {
			err = b.reqErr[i]
		}
		if err != nil { // undo the projection
			q := c.quotas[inf.addr]
			if q != nil {
				q.count -= inf.d.count
				q.bytes -= inf.d.bytes
			}
			if r.dep != nil {
				o := c.st.failure(err)
				c.met.refusals.WithLabelValues(o.code.String()).Inc()
				r.res <- o
			} else if r.ack.done != nil {
				c.st.log.Warn("mailbox: ack not committed; envelopes will be redelivered", "err", err)
				r.ack.done(0)
			}
			continue
		}
		ignored += inf.ignored
		if r.ack != nil {
			if r.ack.done != nil {
				r.ack.done(inf.deleted)
			}
			continue
		}
		switch {
		case inf.out.code != CodeOK:
			c.met.refusals.WithLabelValues(inf.out.code.String()).Inc()
		case inf.stored:
			stored++
			bytes += len(r.dep.Envelope)
		default:
			dups++
		}
		r.res <- inf.out
	}
	c.met.deposits.WithLabelValues("stored").Add(float64(stored))
	c.met.deposits.WithLabelValues("duplicate").Add(float64(dups))
	c.met.storedBytes.Add(float64(bytes))
	c.met.acksIgnored.Add(float64(ignored))

	var touched []Address
	c.fmu.Lock()
	b.done = true
	for len(c.flight) > 0 && c.flight[0].done {
		for addr := range c.flight[0].touched {
			touched = append(touched, addr)
		}
		c.flight[0] = nil
		c.flight = c.flight[1:]
	}
	c.fmu.Unlock()
	c.notify(touched)

	if len(c.quotas) > maxQuotaCache {
		for addr, q := range c.quotas {
			if q.batches == 0 {
				delete(c.quotas, addr)
			}
		}
	}
}

package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/sealed"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// The outbox holds every payload not yet handed to all its devices, keyed
// by recipient account and a sequence number, so one recipient's jobs are
// one prefix read in order. Delivery works in batches: a recipient's
// worker takes up to outboxBatch due jobs, seals them for each device in
// one transaction (the session written once), hands the envelopes over
// with many in flight, and commits the outcome in one more transaction.
// Nothing on this path syncs once per message.

// How long the outbox retries a job before it gives up: a text as long as
// a relay would keep it (its recipient may be offline that long), a
// receipt a few days.
const (
	maxTextRetry    = 30 * 24 * time.Hour
	maxReceiptRetry = 3 * 24 * time.Hour
)

const (
	// outboxWorkers is how many recipients the outbox serves at once.
	outboxWorkers = 32
	// outboxBatch is how many jobs of one recipient go in one batch.
	outboxBatch = 512
	// jobBudget bounds one attempt at one batch: a recipient whose devices
	// and relays do not answer waits out its backoff instead of the
	// outbox.
	jobBudget = 30 * time.Second
)

// errUndeliverable marks a job that can never succeed (the message can
// never fit in an envelope, or the recipient has no devices): it fails at
// once instead of retrying.
var errUndeliverable = errors.New("node: undeliverable")

// jobKey is j's outbox key: recipient || seq.
func jobKey(j *job) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, len(j.To)+8), j.To[:]...), j.Seq)
}

// enqueue stores a job in the outbox inside tx. After the commit the
// caller calls n.notify(j.To).
func (n *Node) enqueue(tx *storage.Txn, j *job) error {
	seq, err := n.outSeq.Next()
	if err != nil {
		return err
	}
	j.Seq = seq
	return n.putJob(tx, j)
}

// putJob writes j; its sealed copies are written apart (putSealed).
func (n *Node) putJob(tx *storage.Txn, j *job) error {
	return tx.Set(n.st.outbox, jobKey(j), encodeJob(j))
}

func sealedKey(j *job, dev string) []byte { return append(jobKey(j), dev...) }

// putSealed stores j's copy for dev.
func (n *Node) putSealed(tx *storage.Txn, j *job, dev string) error {
	c := j.Sealed[dev]
	return tx.Set(n.st.sealed, sealedKey(j, dev), append(c.IK[:], c.Env...))
}

// loadSealedAll adds the copies stored for jobs (of one recipient, in
// sequence order) to their Sealed, in one pass over the copies (an
// iterator per job cost more than reading the copies).
func (n *Node) loadSealedAll(tx *storage.Txn, jobs []*job) error {
	if len(jobs) == 0 {
		return nil
	}
	to := jobs[0].To
	last := jobs[len(jobs)-1].Seq
	i := 0
	start := binary.BigEndian.AppendUint64(nil, jobs[0].Seq)
	return tx.IterateFrom(n.st.sealed, to[:], start, func(k, v []byte) error {
		if len(k) < len(to)+8 || len(v) < 32 {
			return nil
		}
		seq := binary.BigEndian.Uint64(k[len(to):])
		if seq > last {
			return storage.ErrStop
		}
		for i < len(jobs) && jobs[i].Seq < seq {
			i++
		}
		if i == len(jobs) || jobs[i].Seq != seq {
			return nil // a copy of a job not read
		}
		j := jobs[i]
		if j.Sealed == nil {
			j.Sealed = map[string]sealedCopy{}
		}
		var c sealedCopy
		copy(c.IK[:], v)
		c.Env = bytes.Clone(v[32:])
		j.Sealed[string(k[len(to)+8:])] = c
		return nil
	})
}

// deleteJob removes j and its sealed copies.
func (n *Node) deleteJob(tx *storage.Txn, j *job) error {
	if err := tx.Delete(n.st.outbox, jobKey(j)); err != nil {
		return err
	}
	for dev := range j.Sealed {
		if err := tx.Delete(n.st.sealed, sealedKey(j, dev)); err != nil {
			return err
		}
	}
	return nil
}

// outboxState is the dispatcher's view of the outbox: which recipients
// have jobs and when the first is due, which are being served, and which
// got new jobs while being served.
type outboxState struct {
	mu     sync.Mutex
	due    map[identity.AccountID]int64 // unix ms; 0: now
	active map[identity.AccountID]bool
	poked  map[identity.AccountID]bool
}

// notify tells the dispatcher that jobs for these recipients were
// committed.
func (n *Node) notify(to ...identity.AccountID) {
	o := &n.out
	o.mu.Lock()
	for _, a := range to {
		o.due[a] = 0
		if o.active[a] {
			o.poked[a] = true
		}
	}
	o.mu.Unlock()
	n.kick()
}

func (n *Node) kick() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// loadOutbox fills the dispatcher's state from the stored outbox: the
// first job of each recipient says when it is due.
func (n *Node) loadOutbox() error {
	n.out = outboxState{due: map[identity.AccountID]int64{}, active: map[identity.AccountID]bool{}, poked: map[identity.AccountID]bool{}}
	return n.db.View(func(tx *storage.Txn) error {
		return tx.Iterate(n.st.outbox, nil, func(k, v []byte) error {
			var to identity.AccountID
			copy(to[:], k)
			if _, ok := n.out.due[to]; ok {
				return nil
			}
			j, err := decodeJob(v)
			if err != nil {
				n.log.Error("outbox: unreadable job; skipped", "err", err)
				return nil
			}
			n.out.due[to] = j.NextAt
			return nil
		})
	})
}

// migrateOutbox moves jobs of the old layout (seq(8) in keyspace "outbox")
// to the new one, in their order, with new sequence numbers.
func (n *Node) migrateOutbox() error {
	var raws [][]byte
	var keys [][]byte
	if err := n.db.View(func(tx *storage.Txn) error {
		return tx.Iterate(n.st.legacyOutbox, nil, func(k, v []byte) error {
			keys, raws = append(keys, bytes.Clone(k)), append(raws, bytes.Clone(v))
			return nil
		})
	}); err != nil || len(raws) == 0 {
		return err
	}
	return n.db.Update(func(tx *storage.Txn) error {
		for i, raw := range raws {
			if err := tx.Delete(n.st.legacyOutbox, keys[i]); err != nil {
				return err
			}
			j, err := decodeJob(raw)
			if err != nil {
				n.log.Error("outbox: unreadable job dropped while migrating", "err", err)
				continue
			}
			if err := n.enqueue(tx, j); err != nil {
				return err
			}
			for dev := range j.Sealed {
				if err := n.putSealed(tx, j, dev); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// runOutbox delivers outbox jobs until ctx ends. Each recipient's jobs go
// in order, by one worker at a time; recipients are served in parallel (at
// most outboxWorkers at once), so a recipient that is slow to reach holds
// up only its own messages. The dispatcher wakes when jobs are added
// (notify), when a worker ends, and when the earliest backoff runs out.
func (n *Node) runOutbox(ctx context.Context) {
	o := &n.out
	var wg sync.WaitGroup
	sem := make(chan struct{}, outboxWorkers)
	defer wg.Wait()
	for ctx.Err() == nil {
		now := n.cfg.Now().UnixMilli()
		var next int64
		o.mu.Lock()
		for to, at := range o.due {
			if o.active[to] {
				continue
			}
			if at > now {
				if next == 0 || at < next {
					next = at
				}
				continue
			}
			select {
			case sem <- struct{}{}:
			default:
				continue // all workers busy: a worker's end wakes us
			}
			o.active[to], o.poked[to] = true, false
			wg.Go(func() {
				defer func() { <-sem }()
				at := n.serveRecipient(ctx, to)
				o.mu.Lock()
				delete(o.active, to)
				switch {
				case o.poked[to]:
					o.due[to] = 0
				case at.IsZero():
					delete(o.due, to)
				default:
					o.due[to] = at.UnixMilli()
				}
				delete(o.poked, to)
				o.mu.Unlock()
				n.kick() // the dispatcher looks again: new jobs, the next backoff
			})
		}
		o.mu.Unlock()
		wait := time.Hour
		if next != 0 {
			wait = max(time.Until(time.UnixMilli(next)), 0)
		}
		select {
		case <-ctx.Done():
			return
		case <-n.wake:
		case <-time.After(wait):
		}
	}
}

// recipientJobs reads up to max of to's jobs, in order, from seq from on.
func (n *Node) recipientJobs(to identity.AccountID, from uint64, max int) ([]*job, error) {
	var jobs []*job
	start := binary.BigEndian.AppendUint64(nil, from)
	err := n.db.View(func(tx *storage.Txn) error {
		jobs = jobs[:0]
		err := tx.IterateFrom(n.st.outbox, to[:], start, func(_, val []byte) error {
			j, err := decodeJob(val)
			if err != nil {
				return err
			}
			jobs = append(jobs, j)
			if len(jobs) >= max {
				return storage.ErrStop
			}
			return nil
		})
		if err != nil {
			return err
		}
		return n.loadSealedAll(tx, jobs)
	})
	return jobs, err
}

// serveRecipient delivers to's jobs, batch after batch, until none is due.
// It returns when the first waiting job is due (zero if none is left).
//
// Each read starts after the last job delivered: delivered jobs leave
// deletion markers that a read from the start would walk over again and
// again. A job that committed late with a lower number (a receipt racing
// a send) is found by the read from the start made before giving up.
func (n *Node) serveRecipient(ctx context.Context, to identity.AccountID) time.Time {
	// Two batches are in hand at once: while one is sent and its outcome
	// committed (waiting on the relay's or the device's sync), the next
	// is sealed and its ratchet state synced. Sealing stays in this
	// goroutine, so batches are sealed in order; a batch is sent only
	// after the one before it was sent in full (per-device order). If
	// that one failed for some device, the next is not sent to that
	// device: its jobs keep their sealed copies and go again, in order,
	// when the first failure is due. It still goes to the devices that
	// took the one before (the sender's other devices, say), whose
	// sessions other recipients' batches keep advancing: held back, it
	// would leave ratchet positions skipped there for as long as the
	// failure lasts.
	type sent struct {
		at     time.Time       // the first failed job's retry time; zero: none failed
		failed map[string]bool // devices that did not take every job; nil: all of them
	}
	var inFlight chan sent // the previous batch's send
	wait := func() sent {
		if inFlight == nil {
			return sent{}
		}
		r := <-inFlight
		inFlight = nil
		return r
	}
	defer wait()
	var from uint64
	for ctx.Err() == nil {
		jobs, err := n.recipientJobs(to, from, outboxBatch)
		if err != nil {
			n.log.Error("outbox: read", "err", err)
			if r := wait(); !r.at.IsZero() {
				return r.at
			}
			return n.cfg.Now().Add(n.cfg.RetryMax)
		}
		if len(jobs) == 0 {
			// The batch in flight still holds its jobs until its outcome
			// is committed: a read from the start waits for it.
			if r := wait(); !r.at.IsZero() {
				return r.at
			}
			if from == 0 {
				return time.Time{}
			}
			from = 0
			continue
		}
		// A job waiting out a retry backoff holds back the later ones:
		// per-contact order is kept.
		// So are jobs beyond what one transaction holds: a job's envelope
		// and its message's record are each about its payload's size.
		now := n.cfg.Now()
		due, size := 0, 0
		for due < len(jobs) && jobs[due].NextAt <= now.UnixMilli() && (due == 0 || size < n.txnBudget()) {
			size += 3 * len(jobs[due].Payload)
			due++
		}
		if due == 0 {
			if r := wait(); !r.at.IsZero() {
				return r.at
			}
			return time.UnixMilli(jobs[0].NextAt)
		}
		batch := jobs[:due]
		sctx, scancel := context.WithTimeout(ctx, jobBudget)
		a := n.sealAttempt(sctx, batch)
		scancel()
		prev := wait()
		if ctx.Err() != nil {
			return time.Time{}
		}
		if !prev.at.IsZero() {
			// Held behind a failure: sent only to the devices that took
			// the previous batch whole, and then the worker stops.
			if prev.failed == nil {
				return prev.at
			}
			a.hold(prev.failed)
			bctx, cancel := context.WithTimeout(ctx, jobBudget)
			n.sendAttempt(bctx, a)
			cancel()
			n.commitOutcome(ctx, batch, a.errs)
			return prev.at
		}
		done := make(chan sent, 1)
		inFlight = done
		go func() {
			// The send's budget starts now, not while it waited for the
			// batch before it.
			bctx, cancel := context.WithTimeout(ctx, jobBudget)
			defer cancel()
			n.sendAttempt(bctx, a)
			r := sent{at: n.commitOutcome(ctx, batch, a.errs), failed: a.failed}
			if len(r.failed) == 0 {
				r.failed = nil // a failure no device was named for holds back all
			}
			done <- r
		}()
		from = batch[len(batch)-1].Seq + 1
	}
	return time.Time{}
}

// commitOutcome commits what an attempt at jobs (due, in order, one
// recipient) came to: errs holds per job nil (delivered) or why not. It
// returns when the first job that failed is due again, or zero if none
// failed.
func (n *Node) commitOutcome(ctx context.Context, jobs []*job, errs []error) time.Time {
	if ctx.Err() != nil {
		return time.Time{}
	}
	now := n.cfg.Now()
	var retryAt time.Time
	var events []chat.Event
	// The outcome is committed without waiting for a sync: the envelopes
	// are already safe (sealed copies and ratchet synced before sending;
	// the relay or device acked after its own sync), and an outcome lost
	// in a machine crash only sends a job again, with the same sealed
	// copy, which the recipient drops as a duplicate. The next synced
	// commit, or closing the store, makes it durable.
	err := n.db.UpdateNoSync(func(tx *storage.Txn) error {
		events = events[:0]
		retryAt = time.Time{}
		for i, j := range jobs {
			err := errs[i]
			if err == nil {
				ev, err := n.completeJob(tx, j)
				if err != nil {
					return err
				}
				if ev != nil {
					events = append(events, *ev)
				}
				continue
			}
			limit := maxReceiptRetry
			if j.Text {
				limit = maxTextRetry
			}
			if errors.Is(err, errUndeliverable) || now.Sub(time.UnixMilli(j.SentAt)) > limit {
				n.log.Warn("outbox: giving up", "to", j.To.String(), "id", j.ID.String(), "attempts", j.Attempts, "err", err)
				ev, err := n.failJobTx(tx, j, err)
				if err != nil {
					return err
				}
				if ev != nil {
					events = append(events, *ev)
				}
				continue
			}
			jj := *j
			if retryAt.IsZero() {
				// The first job that failed waits out a backoff; the
				// later ones that failed wait behind it.
				jj.Attempts++
				delay := min(n.cfg.RetryMin<<min(jj.Attempts, 16), n.cfg.RetryMax)
				jj.NextAt = now.Add(jitter(delay)).UnixMilli()
				retryAt = time.UnixMilli(jj.NextAt)
				n.log.Info("outbox: delivery failed; will retry", "to", j.To.String(), "id", j.ID.String(), "attempt", jj.Attempts, "err", err)
			}
			if err := n.putJob(tx, &jj); err != nil {
				return err
			}
			for _, dev := range jj.Done {
				if err := tx.Delete(n.st.sealed, sealedKey(&jj, dev)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		n.log.Error("outbox: commit", "err", err)
		return now.Add(n.cfg.RetryMin)
	}
	for _, e := range events {
		n.events.publish(e) // only once the status is committed
	}
	return retryAt
}

// completeJob removes a delivered job and marks its message sent.
func (n *Node) completeJob(tx *storage.Txn, j *job) (*chat.Event, error) {
	if err := n.deleteJob(tx, j); err != nil || !j.Text {
		return nil, err
	}
	return n.advanceStatus(tx, j.To, j.ID, chat.StatusSent)
}

// advanceStatus moves outgoing message id of chat a to status next,
// unless it is already there or further (chat.Advance). It returns the
// status event, or nil if nothing changed, there is no such outgoing
// message, or no one listens to events (the whole message is read only
// for a listener).
func (n *Node) advanceStatus(tx *storage.Txn, a identity.AccountID, id chat.MessageID, next chat.Status) (*chat.Event, error) {
	cur, err := n.st.currentStatus(tx, a, id)
	if errors.Is(err, storage.ErrNotFound) || cur == chat.StatusReceived || cur == chat.StatusSeen {
		return nil, nil // not an outgoing message of this chat
	}
	if err != nil {
		return nil, err
	}
	if next = chat.Advance(cur, next); next == cur {
		return nil, nil
	}
	if err := n.st.setStatus(tx, a, id, next); err != nil {
		return nil, err
	}
	if !n.events.active() {
		return nil, nil
	}
	m, err := n.st.getMessage(tx, a, id)
	if err != nil {
		return nil, err
	}
	return &chat.Event{Type: chat.EventStatus, Message: m.Message}, nil
}

// failJobTx removes a job that cannot be delivered and marks its message
// failed, with the reason.
func (n *Node) failJobTx(tx *storage.Txn, j *job, reason error) (*chat.Event, error) {
	m, err := n.endJob(tx, j)
	if m == nil || err != nil || m.Status != chat.StatusPending {
		return nil, err
	}
	m.Status = chat.StatusFailed
	m.Error = failReason(reason)
	if err := n.st.putMessage(tx, j.To, m); err != nil {
		return nil, err
	}
	return &chat.Event{Type: chat.EventStatus, Message: m.Message}, n.st.putStatus(tx, j.To, m)
}

// endJob removes j and returns the message it carried, if it carried one
// that is still stored.
func (n *Node) endJob(tx *storage.Txn, j *job) (*messageRecord, error) {
	if err := n.deleteJob(tx, j); err != nil || !j.Text {
		return nil, err
	}
	m, err := n.st.getMessage(tx, j.To, j.ID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	return m, err
}

func failReason(err error) string {
	switch {
	case errors.Is(err, sealed.ErrTooLarge):
		return "too large to send"
	case errors.Is(err, errUndeliverable):
		return "cannot be delivered: " + err.Error()
	}
	return "not delivered in time: " + err.Error()
}

// attempt is a batch of one recipient's jobs sealed for each of its
// devices, on its way to them.
type attempt struct {
	jobs  []*job
	errs  []error // per job: nil, or why some device does not have it
	sends []deviceSend
	// failed names the devices that did not take every job (sealing or
	// sending failed); nil when the recipient's devices are not known
	// (every device counts as failed).
	failed map[string]bool
}

// errHeld is why a job was not sent to a device: an earlier batch to it
// failed, and order comes first.
var errHeld = errors.New("held behind an earlier job that failed")

// hold takes out of a the sends to the devices in failed, marking their
// jobs with errHeld.
func (a *attempt) hold(failed map[string]bool) {
	kept := a.sends[:0]
	for _, ds := range a.sends {
		dev := ds.t.cert.Device.String()
		if !failed[dev] {
			kept = append(kept, ds)
			continue
		}
		for _, i := range ds.idx {
			a.errs[i] = errors.Join(a.errs[i], fmt.Errorf("device %.8s: %w", dev, errHeld))
		}
		if a.failed != nil {
			a.failed[dev] = true
		}
	}
	a.sends = kept
}

// deviceSend is what an attempt hands to one device (or its relays).
type deviceSend struct {
	t    target
	idx  []int // the jobs sent, by index
	envs [][]byte
}

// sealAttempt seals jobs for every target device not yet done (or reuses
// the copies sealed on an earlier attempt), committing new copies with
// the ratchet state before anything is sent. It updates each job's Sealed.
func (n *Node) sealAttempt(ctx context.Context, jobs []*job) *attempt {
	a := &attempt{jobs: jobs, errs: make([]error, len(jobs))}
	ts, err := n.targets(ctx, jobs[0].To)
	if err == nil {
		a.failed = map[string]bool{}
	} else {
		for i := range a.errs {
			a.errs[i] = err
		}
		return a
	}
	for _, t := range ts {
		dev := t.cert.Device.String()
		var todo []*job
		var at []int
		for i, j := range jobs {
			if !slices.Contains(j.Done, dev) {
				todo, at = append(todo, j), append(at, i)
			}
		}
		if len(todo) == 0 {
			continue
		}
		envs, serrs := n.sealBatch(ctx, t, todo)
		ds := deviceSend{t: t}
		for k, e := range serrs {
			if e != nil {
				if errors.Is(e, sealed.ErrTooLarge) {
					e = fmt.Errorf("%w: %w", errUndeliverable, e)
				}
				a.errs[at[k]] = errors.Join(a.errs[at[k]], fmt.Errorf("device %.8s: %w", dev, e))
				a.failed[dev] = true
				continue
			}
			ds.idx, ds.envs = append(ds.idx, at[k]), append(ds.envs, envs[k])
		}
		if len(ds.envs) > 0 {
			a.sends = append(a.sends, ds)
		}
	}
	return a
}

// sendAttempt hands a sealed attempt's envelopes to each device or its
// relays, recording in each job's Done the devices that have it and in
// a.errs why the others do not.
func (n *Node) sendAttempt(ctx context.Context, a *attempt) {
	if f := n.sendFault.Load(); f != nil && (*f)(ctx, a) {
		return
	}
	for _, ds := range a.sends {
		dev := ds.t.cert.Device.String()
		for k, e := range n.sendBatch(ctx, ds.t, ds.envs) {
			i := ds.idx[k]
			if e != nil {
				a.errs[i] = errors.Join(a.errs[i], fmt.Errorf("device %.8s: %w", dev, e))
				if a.failed != nil {
					a.failed[dev] = true
				}
				continue
			}
			a.jobs[i].Done = append(a.jobs[i].Done, dev)
		}
	}
}

// sealBatch returns the envelope of each job for device t: the copy sealed
// on an earlier attempt if it was sealed to t's current key, else a new
// one. New copies are committed in one transaction together with the
// session they advanced (written once) and the jobs, so a crash never
// leaves a sealed copy a job does not know of.
func (n *Node) sealBatch(ctx context.Context, t target, jobs []*job) ([][]byte, []error) {
	dev := t.cert.Device.String()
	envs := make([][]byte, len(jobs))
	errs := make([]error, len(jobs))
	var fresh []int
	for i, j := range jobs {
		if c, ok := j.Sealed[dev]; ok && c.IK == t.cert.DH {
			envs[i] = c.Env
		} else {
			fresh = append(fresh, i)
		}
	}
	if len(fresh) == 0 {
		return envs, errs
	}
	fail := func(err error) ([][]byte, []error) {
		for _, i := range fresh {
			errs[i] = err
		}
		return envs, errs
	}
	p := peerKey{t.account, t.cert.Device}
	var sess *sealed.Session
	err := n.db.View(func(tx *storage.Txn) (err error) {
		sess, err = n.st.currentSession(tx, p)
		return err
	})
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fail(err)
	}
	if sess == nil || sess.PeerIdentityKey() != t.cert.DH {
		// No session, or one agreed with a key the device's current
		// certificate no longer has: start a new one (network, unlocked).
		if sess, err = n.newSession(ctx, t); err != nil {
			return fail(err)
		}
	}
	defer n.devLocks.lock(p)()
	// Re-read under the lock: a receive may have advanced or replaced it.
	var install bool
	if err := n.db.View(func(tx *storage.Txn) error {
		cur, err := n.st.currentSession(tx, p)
		switch {
		case err == nil && cur.PeerIdentityKey() == t.cert.DH:
			sess = cur
		case err == nil || errors.Is(err, storage.ErrNotFound):
			install = true // the session made above becomes current
		default:
			return err
		}
		return nil
	}); err != nil {
		return fail(err)
	}
	if sess.PeerIdentityKey() != t.cert.DH || sess.PeerAccount() != t.account || sess.PeerDevice() != t.cert.Device {
		return fail(fmt.Errorf("node: session does not match the certificate of %s", t.cert.Device))
	}
	var sealedIdx []int
	for _, i := range fresh {
		j := jobs[i]
		env, err := sess.Seal(n.rand, sealed.Message{ID: sealed.MessageID(j.ID), Timestamp: j.SentAt, Body: j.Payload})
		if err != nil {
			errs[i] = err
			continue
		}
		if j.Sealed == nil {
			j.Sealed = map[string]sealedCopy{}
		}
		j.Sealed[dev] = sealedCopy{Env: env, IK: t.cert.DH}
		envs[i] = env
		sealedIdx = append(sealedIdx, i)
	}
	if len(sealedIdx) == 0 {
		return envs, errs
	}
	err = n.db.Update(func(tx *storage.Txn) error {
		if install {
			if err := n.st.installSession(tx, sess, false, n.cfg.Now().UnixNano()); err != nil {
				return err
			}
		} else if err := n.st.saveSession(tx, &stored{sess: sess}); err != nil {
			return err
		}
		for _, i := range sealedIdx {
			if err := n.putSealed(tx, jobs[i], dev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for _, i := range sealedIdx {
			delete(jobs[i].Sealed, dev)
			envs[i], errs[i] = nil, err
		}
	}
	return envs, errs
}

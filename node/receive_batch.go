package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/sealed"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// batchState is what apply shares across the messages of one batch
// transaction: per sender, the IDs of messages a delivered receipt is due
// for, and the contact records read (and changed) so far.
type batchState struct {
	receipts map[identity.AccountID][]string
	contacts map[identity.AccountID]*contactRecord
	dirty    map[identity.AccountID]bool // contacts to write at the end
}

func newBatchState() *batchState {
	return &batchState{receipts: map[identity.AccountID][]string{}, contacts: map[identity.AccountID]*contactRecord{}, dirty: map[identity.AccountID]bool{}}
}

// receiveBatch opens and stores many envelopes, as receive does one, and
// returns each one's outcome (nil: stored, or a duplicate; an error
// matching errPermanent: never storable). Envelopes of an established
// session are opened together under the device's lock and committed in
// one transaction: the session written once, one delivered receipt per
// sender. Envelopes that start a session, or that cannot be placed, go
// through receive one by one. Order within a session is kept.
func (n *Node) receiveBatch(ctx context.Context, raws [][]byte) []error {
	errs := make([]error, len(raws))
	type group struct {
		p   peerKey
		idx []int
		env []*sealed.Envelope
	}

	var groups []*group
	bySession := map[sealed.SessionID]*group{}
	var single []int
	if err := n.db.View(func(tx *storage.Txn) error {
		for i, raw := range raws {
			env, err := sealed.ParseEnvelope(raw)
			if err != nil || env.Kind != sealed.KindMessage || env.Recipient != n.keys.device.ID() {
				single = append(single, i)
				continue
			}
			g := bySession[env.SessionID]
			if g == nil {
				// The owner alone (an index read): receiveSession loads
				// and checks the session itself.
				p, err := n.st.sessionOwner(tx, env.SessionID)
				if errors.Is(err, storage.ErrNotFound) {
					single = append(single, i)
					continue
				}
				if err != nil {
					return err
				}
				g = &group{p: p}
				bySession[env.SessionID] = g
				groups = append(groups, g)
			}
			g.idx, g.env = append(g.idx, i), append(g.env, env)
		}
		return nil
	}); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	// Envelopes that start sessions first: later ones of a batch may use
	// the sessions they start.
	for _, i := range single {
		errs[i] = n.receive(ctx, raws[i])
	}
	for _, g := range groups {
		// Chunks that stay well under the transaction limit: a message's
		// record is about its envelope's size.
		for lo := 0; lo < len(g.idx); {
			hi, size := lo, 0
			for hi < len(g.idx) && (hi == lo || size < n.txnBudget()) {
				size += 2 * len(raws[g.idx[hi]])
				hi++
			}
			res, retry := n.receiveSession(ctx, g.p, g.env[lo:hi])
			for k, i := range g.idx[lo:hi] {
				if retry {
					// The chunk could not be committed (nothing of it
					// was): each envelope on its own, so one that can
					// never be stored is dropped alone.
					errs[i] = n.receive(ctx, raws[i])
				} else {
					errs[i] = res[k]
				}
			}
			lo = hi
		}
	}
	return errs
}

// receiveSession opens envs, all of one session with device p, in order,
// and commits what they carry in one transaction. retry reports that the
// commit failed: nothing was stored and the caller tries each envelope
// alone.
func (n *Node) receiveSession(ctx context.Context, p peerKey, envs []*sealed.Envelope) (_ []error, retry bool) {
	errs := make([]error, len(envs))
	fail := func(err error) ([]error, bool) {
		for i := range errs {
			errs[i] = err
		}
		return errs, false
	}
	var st *stored
	load := func(missing string) error {
		err := n.db.View(func(tx *storage.Txn) (err error) {
			_, st, err = n.st.sessionByRecv(tx, envs[0].SessionID)
			return err
		})
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("%w: session %x %s", errPermanent, envs[0].SessionID[:4], missing)
		}
		return err
	}
	if err := load("unknown"); err != nil {
		return fail(err)
	}
	// The device must still be on its account's list.
	if err := n.checkListed(ctx, p, st.sess.PeerIdentityKey()); err != nil {
		return fail(err)
	}
	defer n.devLocks.lock(p)()
	// Again under the lock: another batch may have advanced or dropped it.
	if err := load("dropped"); err != nil {
		return fail(err)
	}
	nowMs := n.cfg.Now().UnixMilli()
	msgs := make([]sealed.Message, len(envs))
	keep := make([]bool, len(envs))
	warn := make([]string, len(envs))
	opened := false
	for i, env := range envs {
		msg, err := st.sess.Open(n.rand, env, nowMs)
		switch {
		case err == nil:
			msgs[i], keep[i], opened = msg, true, true
		case errors.Is(err, sealed.ErrTimestamp):
			msgs[i], keep[i], opened, warn[i] = msg, true, true, chat.WarnTimestamp
		case sealed.IsPolicy(err):
			opened = true // consumed: the session moved on; nothing to store
			if !errors.Is(err, sealed.ErrDuplicate) {
				n.log.Info("message rejected by policy", "err", err)
			}
		default:
			errs[i] = fmt.Errorf("%w: %w", errPermanent, err)
		}
	}
	if !opened {
		return errs, false
	}
	var events []chat.Event
	var receipts []*job
	err := n.db.Update(func(tx *storage.Txn) error {
		events, receipts = events[:0], receipts[:0]
		if err := n.st.saveSession(tx, st); err != nil {
			return err
		}
		rc := newBatchState()
		for i := range envs {
			if !keep[i] {
				continue
			}
			key := seenKey(msgs[i].Sender, msgs[i].ID)
			if ok, err := tx.Has(n.st.seen, key); err != nil {
				return err
			} else if ok {
				continue
			}
			if err := tx.SetTTL(n.st.seen, key, nil, seenTTL); err != nil {
				return err
			}
			js, evs, err := n.apply(tx, msgs[i], nowMs, warn[i], rc)
			if err != nil {
				return err
			}
			receipts, events = append(receipts, js...), append(events, evs...)
		}
		for a := range rc.dirty {
			if err := n.st.putContact(tx, rc.contacts[a]); err != nil {
				return err
			}
		}
		for to, ids := range rc.receipts {
			js, err := n.receiptJobs(tx, to, chat.StatusDelivered, ids, nowMs)
			if err != nil {
				return err
			}
			receipts = append(receipts, js...)
		}
		return nil
	})
	if err != nil {
		n.log.Warn("receive: batch commit failed; envelopes taken one by one", "envelopes", len(envs), "err", err)
		return nil, true
	}
	n.published(events)
	for _, j := range receipts {
		n.notify(j.To)
	}
	return errs, false
}

// published publishes events of received envelopes, counting the new
// incoming messages among them.
func (n *Node) published(events []chat.Event) {
	n.refreshTouched()
	for _, e := range events {
		if e.Type == chat.EventMessage && !e.Message.Outgoing {
			n.received.Add(1)
		}
		n.events.publish(e)
	}
}

package node

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/sealed"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// Messages posted at once (a bot, the web client, many CLI calls) are
// committed together: one goroutine takes every send waiting and stores
// them all in one transaction, so the store syncs once for the group
// instead of once per message, and no two sends race for the same keys.

// maxSendBatch bounds the sends committed in one transaction.
const maxSendBatch = 256

// sendReq is one message waiting to be stored.
type sendReq struct {
	contact, text string
	file          *fileRef    // a file message (text is its caption)
	forward       *forwardRef // a forward (text is the copy)
	id            chat.MessageID
	now           time.Time
	done          chan sendResult // buffered 1
}

type sendResult struct {
	msg chat.Message
	err error
}

// submitSend hands r to the sender and waits for its result.
func (n *Node) submitSend(ctx context.Context, r *sendReq) (chat.Message, error) {
	r.done = make(chan sendResult, 1)
	select {
	case n.sendq <- r:
	case <-n.quit:
		return chat.Message{}, fmt.Errorf("%w: the node is stopping", chat.ErrUnavailable)
	case <-ctx.Done():
		return chat.Message{}, ctx.Err()
	}
	res := <-r.done
	return res.msg, res.err
}

// runSends stores sends in groups until quit is closed.
//
// A group is committed without waiting for its sync; its senders are
// answered once a sync that started after its commit has finished (by
// answerSends). So the next group commits while the previous one's sync
// runs, and one sync can answer several groups.
func (n *Node) runSends() {
	committed := make(chan *sendGroup, 64)
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		n.answerSends(committed)
	}()
	defer func() {
		close(committed)
		<-answered
	}()
	for {
		batch := make([]*sendReq, 0, maxSendBatch)
		select {
		case r := <-n.sendq:
			batch = append(batch, r)
		case <-n.quit:
			return
		}
		// A group stays well under the transaction limit: a message
		// writes its text about three times (record, job, JSON escaping).
		size := 3 * len(batch[0].text)
	more:
		for len(batch) < maxSendBatch && size < n.txnBudget() {
			select {
			case r := <-n.sendq:
				batch = append(batch, r)
				size += 3 * len(r.text)
			default:
				break more
			}
		}
		committed <- n.commitSends(batch)
	}
}

// txnBudget is the bytes a batch transaction aims to stay under: half of
// what the store accepts in one transaction.
func (n *Node) txnBudget() int { return int(n.db.MaxTxnBytes() / 2) }

// sendGroup is a group of sends committed (or refused) and not yet
// answered.
type sendGroup struct {
	batch      []*sendReq
	res        []sendResult
	recipients []identity.AccountID
	err        error // the group's commit failed
}

// commitSends stores a group of sends in one transaction, without waiting
// for it to be durable. A send refused for what it is (unknown contact,
// too large) fails alone; a storage failure fails the group.
func (n *Node) commitSends(batch []*sendReq) *sendGroup {
	g := &sendGroup{batch: batch, res: make([]sendResult, len(batch))}
	g.err = n.db.UpdateNoSync(func(tx *storage.Txn) error {
		g.recipients = g.recipients[:0]
		contacts := map[string]*contactRecord{} // resolved once per group
		for i, r := range batch {
			rec, to, err := n.sendTx(tx, r, contacts)
			if err != nil {
				if !isRefusal(err) {
					return err
				}
				g.res[i] = sendResult{err: err}
				continue
			}
			g.res[i] = sendResult{msg: rec.Message}
			g.recipients = append(g.recipients, to)
		}
		return nil
	})
	if g.err == nil {
		// Published at once, in commit order, so a client hears of a
		// message before the outbox can report its status; the sender's
		// answer waits for the sync.
		for i := range batch {
			if g.res[i].err == nil {
				n.events.publish(chat.Event{Type: chat.EventMessage, Message: g.res[i].msg})
			}
		}
	}
	return g
}

// answerSends answers committed groups, in order, once they are durable:
// it takes every group committed so far, waits for one sync that started
// after all of them were committed, and then answers their senders and
// wakes the outbox.
func (n *Node) answerSends(committed <-chan *sendGroup) {
	var groups []*sendGroup
	for g := range committed {
		groups = append(groups[:0], g)
	more:
		for {
			select {
			case g, ok := <-committed:
				if !ok {
					break more
				}
				groups = append(groups, g)
			default:
				break more
			}
		}
		var syncErr error
		if slices.ContainsFunc(groups, func(g *sendGroup) bool { return g.err == nil && len(g.recipients) > 0 }) {
			syncErr = n.db.Sync()
		}
		var recipients []identity.AccountID
		for _, g := range groups {
			err := g.err
			if err == nil && syncErr != nil && len(g.recipients) > 0 {
				err = syncErr
			}
			for i, r := range g.batch {
				if err != nil && g.res[i].err == nil {
					r.done <- sendResult{err: err}
					continue
				}
				r.done <- g.res[i] // (a refusal stays a refusal)
			}
			if err == nil {
				recipients = append(recipients, g.recipients...)
			}
		}
		if len(recipients) > 0 {
			n.notify(recipients...)
		}
	}
}

// isRefusal reports an error about the send itself, not the store.
func isRefusal(err error) bool {
	return errors.Is(err, chat.ErrUnknownContact) || errors.Is(err, chat.ErrInvalid) ||
		errors.Is(err, chat.ErrTooLarge) || errors.Is(err, chat.ErrExists)
}

// sendTx stores one send inside tx: every check that can refuse it comes
// before its first write.
func (n *Node) sendTx(tx *storage.Txn, r *sendReq, contacts map[string]*contactRecord) (*messageRecord, identity.AccountID, error) {
	c := contacts[r.contact]
	if c == nil {
		var err error
		if c, err = n.resolve(tx, r.contact); err != nil {
			return nil, identity.AccountID{}, err
		}
		contacts[r.contact] = c
	}
	var err error
	p := payload{Kind: "text", Seq: math.MaxUint64, Text: r.text, Chat: c.Account.String(), DT: n.tokenHex(), File: r.file, Fwd: r.forward}
	if body, err := encodePayload(p); err != nil {
		return nil, c.Account, err
	} else if len(body) > sealed.MaxBodySize {
		return nil, c.Account, fmt.Errorf("%w: %d bytes encoded (at most %d)", chat.ErrTooLarge, len(body), sealed.MaxBodySize)
	}
	if !c.accepted() {
		if _, err = n.acceptTx(tx, c, ""); err != nil {
			return nil, c.Account, err
		}
	}
	if p.Seq, err = n.nextChatSeq(); err != nil {
		return nil, c.Account, err
	}
	body, err := encodePayload(p)
	if err != nil {
		return nil, c.Account, err
	}
	rec := &messageRecord{Message: chat.Message{
		ID: r.id.String(), Chat: c.Account.String(), From: n.keys.account.ID().String(), Outgoing: true,
		Text: r.text, SentAt: time.UnixMilli(r.now.UnixMilli()).UTC(), Status: chat.StatusPending, Seq: p.Seq,
		FromName: n.keys.name, FromContact: true, Forwarded: r.forward.view(),
	}}
	if r.file != nil {
		if err := n.fileSendTx(tx, rec, r.file); err != nil {
			return nil, c.Account, err
		}
	}
	if err := n.st.putMessage(tx, c.Account, rec); err != nil {
		return nil, c.Account, err
	}
	if err := n.st.setStatus(tx, c.Account, r.id, rec.Status); err != nil {
		return nil, c.Account, err
	}
	return rec, c.Account, n.enqueue(tx, &job{ID: r.id, To: c.Account, Payload: body, SentAt: r.now.UnixMilli(), Text: true})
}

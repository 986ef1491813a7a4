package node

import (
	"context"
	"errors"
	"fmt"
	"math"
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
	file          *fileRef // a file message (text is its caption)
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
func (n *Node) runSends() {
	batch := make([]*sendReq, 0, maxSendBatch)
	for {
		batch = batch[:0]
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
		n.commitSends(batch)
	}
}

// txnBudget is the bytes a batch transaction aims to stay under: half of
// what the store accepts in one transaction.
func (n *Node) txnBudget() int { return int(n.db.MaxTxnBytes() / 2) }

// commitSends stores a group of sends in one transaction. A send refused
// for what it is (unknown contact, too large) fails alone; a storage
// failure fails the group.
func (n *Node) commitSends(batch []*sendReq) {
	res := make([]sendResult, len(batch))
	var recipients []identity.AccountID
	err := n.db.Update(func(tx *storage.Txn) error {
		recipients = recipients[:0]
		contacts := map[string]*contactRecord{} // resolved once per group
		for i, r := range batch {
			rec, to, err := n.sendTx(tx, r, contacts)
			if err != nil {
				if !isRefusal(err) {
					return err
				}
				res[i] = sendResult{err: err}
				continue
			}
			res[i] = sendResult{msg: rec.Message}
			recipients = append(recipients, to)
		}
		return nil
	})
	for i, r := range batch {
		if err != nil {
			r.done <- sendResult{err: err}
			continue
		}
		if res[i].err == nil {
			n.events.publish(chat.Event{Type: chat.EventMessage, Message: res[i].msg})
		}
		r.done <- res[i]
	}
	if err == nil && len(recipients) > 0 {
		n.notify(recipients...)
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
	p := payload{Kind: "text", Seq: math.MaxUint64, Text: r.text, Chat: c.Account.String(), DT: n.tokenHex(), File: r.file}
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
		FromName: n.keys.name, FromContact: true,
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

package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/pqxdh"
	"github.com/peergram/peergram/crypto/sealed"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// errPermanent marks an envelope that can never be opened (malformed,
// forged, for another device): it is acknowledged and dropped, since keeping
// it would block the mailbox without any chance of success.
var errPermanent = errors.New("node: envelope rejected")

// refillBelow is the number of one-time prekeys under which a device makes
// and publishes more.
const refillBelow = 10

func parseBundle(raw []byte) (*pqxdh.Bundle, error) { return pqxdh.ParseBundle(raw) }

// receive opens one envelope and stores what it carries. Duplicates are
// success. It is safe for concurrent use.
func (n *Node) receive(ctx context.Context, raw []byte) error {
	env, err := sealed.ParseEnvelope(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", errPermanent, err)
	}
	if env.Recipient != n.keys.device.ID() {
		return fmt.Errorf("%w: %w", errPermanent, sealed.ErrWrongRecipient)
	}
	nowMs := n.cfg.Now().UnixMilli()
	n.mu.Lock()
	defer n.mu.Unlock()
	var (
		msg      sealed.Message
		refill   bool
		dup      bool
		newPK    *pqxdh.PrekeySet
		openErr  error
		receipts []*job
		events   []chat.Event
	)
	err = n.db.Update(func(tx *storage.Txn) error {
		receipts, events, dup, refill, newPK = nil, nil, false, false, nil
		var sess *sealed.Session
		switch env.Kind {
		case sealed.KindMessage:
			s, err := n.st.sessionByRecv(tx, env.SessionID)
			if errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("%w: no session %x", errPermanent, env.SessionID[:4])
			}
			if err != nil {
				return err
			}
			sess = s
			msg, openErr = sess.Open(n.rand, env, nowMs)
		default:
			h, err := sealed.Unseal(n.self, env)
			if err != nil {
				return fmt.Errorf("%w: %w", errPermanent, err)
			}
			s, err := n.st.sessionByRecv(tx, h.SessionID)
			switch {
			case err == nil:
				sess = s
				msg, openErr = sess.OpenPrekey(n.rand, h, nowMs)
			case errors.Is(err, storage.ErrNotFound):
				// Work on a copy so a failed accept leaves the prekeys as they were.
				pk, err := cloneprekeys(n.keys.prekeys)
				if err != nil {
					return err
				}
				sess, msg, openErr = sealed.Accept(n.rand, n.self, pk, h, nowMs)
				if sess != nil {
					newPK = pk
					x, _ := pk.OneTimeLeft()
					refill = x < refillBelow
				}
			default:
				return err
			}
		}
		if sess == nil || (openErr != nil && !errors.Is(openErr, sealed.ErrDuplicate) && !errors.Is(openErr, sealed.ErrTimestamp) && !errors.Is(openErr, sealed.ErrSender)) {
			return fmt.Errorf("%w: %w", errPermanent, openErr)
		}
		if err := n.st.putSession(tx, sess); err != nil {
			return err
		}
		if newPK != nil {
			if err := n.st.putPrekeys(tx, newPK); err != nil {
				return err
			}
		}
		if openErr != nil {
			dup = errors.Is(openErr, sealed.ErrDuplicate)
			return nil // consumed: the session moved on; nothing to store
		}
		if ok, err := tx.Has(n.st.seen, msg.ID[:]); err != nil {
			return err
		} else if ok {
			dup = true
			return nil
		}
		if err := tx.SetTTL(n.st.seen, msg.ID[:], nil, seenTTL); err != nil {
			return err
		}
		var err error
		receipts, events, err = n.apply(tx, msg, nowMs)
		return err
	})
	if err != nil {
		if errors.Is(err, errPermanent) {
			n.log.Info("dropped envelope", "err", err)
		}
		return err
	}
	if newPK != nil {
		n.keys.prekeys = newPK
	}
	if openErr != nil && !dup {
		n.log.Info("message rejected by policy", "err", openErr)
	}
	for _, e := range events {
		n.events.publish(e)
	}
	if len(receipts) > 0 {
		n.kick()
	}
	if refill {
		go n.refillPrekeys(context.WithoutCancel(ctx))
	}
	return nil
}

func cloneprekeys(p *pqxdh.PrekeySet) (*pqxdh.PrekeySet, error) {
	raw, err := p.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return pqxdh.UnmarshalPrekeySet(raw)
}

// apply stores what a decrypted message says: a chat message (and a
// delivered receipt back) or a receipt for our own messages.
func (n *Node) apply(tx *storage.Txn, m sealed.Message, nowMs int64) ([]*job, []chat.Event, error) {
	var p payload
	if err := json.Unmarshal(m.Body, &p); err != nil {
		n.log.Info("undecodable payload", "from", m.Sender.String(), "err", err)
		return nil, nil, nil
	}
	self := n.keys.account.ID()
	switch p.Kind {
	case "text":
		chatAcct := m.Sender
		outgoing := false
		if m.Sender == self { // a copy of our own message from another device
			a, err := identity.ParseAccountID(p.Chat)
			if err != nil {
				return nil, nil, nil
			}
			chatAcct, outgoing = a, true
		}
		if err := n.ensureContact(tx, chatAcct); err != nil {
			return nil, nil, err
		}
		rec := &messageRecord{Message: chat.Message{
			ID: chat.MessageID(m.ID).String(), Chat: chatAcct.String(), From: m.Sender.String(), Outgoing: outgoing,
			Text: p.Text, SentAt: time.UnixMilli(m.Timestamp).UTC(), Received: time.UnixMilli(nowMs).UTC(),
			Status: chat.StatusReceived, Seq: p.Seq,
		}}
		if outgoing {
			rec.Status = chat.StatusSent
		}
		if err := n.st.putMessage(tx, chatAcct, rec); err != nil {
			return nil, nil, err
		}
		evs := []chat.Event{{Type: chat.EventMessage, Message: rec.Message}}
		if outgoing {
			return nil, evs, nil
		}
		j, err := n.receiptJob(tx, m.Sender, chat.StatusDelivered, []string{rec.ID}, nowMs)
		return []*job{j}, evs, err
	case "receipt":
		status := chat.Status(p.Status)
		if status != chat.StatusDelivered && status != chat.StatusRead {
			return nil, nil, nil
		}
		var evs []chat.Event
		for _, s := range p.IDs {
			id, err := chat.ParseMessageID(s)
			if err != nil {
				continue
			}
			rec, err := n.st.getMessage(tx, m.Sender, id)
			if errors.Is(err, storage.ErrNotFound) || (err == nil && !rec.Outgoing) {
				continue // not ours: a receipt names only messages we sent to its sender
			}
			if err != nil {
				return nil, nil, err
			}
			next := chat.Advance(rec.Status, status)
			if next == rec.Status {
				continue
			}
			rec.Status = next
			if err := n.st.putMessage(tx, m.Sender, rec); err != nil {
				return nil, nil, err
			}
			evs = append(evs, chat.Event{Type: chat.EventStatus, Message: rec.Message})
		}
		return nil, evs, nil
	}
	return nil, nil, nil
}

func (n *Node) ensureContact(tx *storage.Txn, a identity.AccountID) error {
	_, err := n.st.getContact(tx, a)
	if errors.Is(err, chat.ErrUnknownContact) {
		return n.st.putContact(tx, &contactRecord{Account: a, Added: n.cfg.Now(), Unsolicited: true})
	}
	return err
}

func (n *Node) receiptJob(tx *storage.Txn, to identity.AccountID, status chat.Status, ids []string, nowMs int64) (*job, error) {
	body, err := json.Marshal(payload{Kind: "receipt", Status: string(status), IDs: ids})
	if err != nil {
		return nil, err
	}
	var id chat.MessageID
	if _, err := n.rand.Read(id[:]); err != nil {
		return nil, err
	}
	j := &job{ID: id, To: to, Payload: body, SentAt: nowMs}
	return j, n.enqueue(tx, j)
}

// refillPrekeys makes more one-time prekeys and publishes them.
func (n *Node) refillPrekeys(ctx context.Context) {
	n.mu.Lock()
	pk, err := cloneprekeys(n.keys.prekeys)
	if err == nil {
		_, err = pk.Refill(n.rand, n.keys.device, initialOneTimePrekeys)
	}
	if err == nil {
		err = n.db.Update(func(tx *storage.Txn) error { return n.st.putPrekeys(tx, pk) })
	}
	if err == nil {
		n.keys.prekeys = pk
	}
	n.mu.Unlock()
	if err != nil {
		n.log.Error("prekey refill", "err", err)
		return
	}
	for _, r := range n.relays {
		if err := n.publish(ctx, r.ID); err != nil {
			n.log.Warn("prekey publish", "relay", r.ID, "err", err)
		}
	}
}

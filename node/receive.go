package node

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
// success. It is safe for concurrent use: envelopes of different peer
// devices are opened in parallel (only prekey envelopes that start a new
// session take the node's prekey lock).
func (n *Node) receive(ctx context.Context, raw []byte) error {
	env, err := sealed.ParseEnvelope(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", errPermanent, err)
	}
	if env.Recipient != n.keys.device.ID() {
		return fmt.Errorf("%w: %w", errPermanent, sealed.ErrWrongRecipient)
	}
	nowMs := n.cfg.Now().UnixMilli()
	var (
		p       peerKey
		st      *stored         // an existing session, advanced by opening
		fresh   *sealed.Session // a session accepted from this envelope
		newPK   *pqxdh.PrekeySet
		msg     sealed.Message
		openErr error
		archive bool // keep the session a fresh one replaces (contacts only)
	)
	switch env.Kind {
	case sealed.KindMessage:
		var ik [32]byte
		err := n.db.View(func(tx *storage.Txn) error {
			var err error
			if p, st, err = n.st.sessionByRecv(tx, env.SessionID); err == nil {
				ik = st.sess.PeerIdentityKey()
			}
			return err
		})
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("%w: no session %x", errPermanent, env.SessionID[:4])
		}
		if err != nil {
			return err
		}
		// The device must still be on its account's list.
		if err := n.checkListed(ctx, p, ik); err != nil {
			return err
		}
		defer n.devLocks.lock(p)()
		if err := n.db.View(func(tx *storage.Txn) error {
			var err error
			_, st, err = n.st.sessionByRecv(tx, env.SessionID)
			return err
		}); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("%w: session %x dropped", errPermanent, env.SessionID[:4])
			}
			return err
		}
		msg, openErr = st.sess.Open(n.rand, env, nowMs)
	default:
		h, err := sealed.Unseal(n.self, env)
		if err != nil {
			return fmt.Errorf("%w: %w", errPermanent, err)
		}
		p = peerKey{h.SenderCert.Account, h.SenderCert.Device}
		// The sealed layer proves nothing about the sender (anyone who
		// knows our public key can write it, naming anyone's public
		// certificate). So first: an ignored account is dropped, and an
		// envelope that starts a new session must authenticate — tried
		// on the current prekeys, read-only, no lock — before the node
		// looks the sender up in a directory or takes a lock for it.
		c, err := n.knownAccount(p.account)
		if err != nil {
			return err
		}
		if c != nil && c.state() == stateIgnored {
			return nil // taken and dropped, as if read: the sender learns nothing
		}
		var existing bool
		if err := n.db.View(func(tx *storage.Txn) error {
			_, _, err := n.st.sessionByRecv(tx, h.SessionID)
			existing = err == nil
			if errors.Is(err, storage.ErrNotFound) {
				return nil
			}
			return err
		}); err != nil {
			return err
		}
		if !existing {
			if _, _, err := sealed.Trial(n.rand, n.self, n.currentPrekeys(), h, nowMs); err != nil && !sealed.IsPolicy(err) {
				return fmt.Errorf("%w: %w", errPermanent, err)
			}
			if p.account != n.keys.account.ID() && (c == nil || !c.accepted()) {
				if err := n.checkStrangerDevices(p); err != nil {
					return err
				}
			}
		}
		// Authentic; the certificate must also be on the account's
		// current list (a removed or never-listed device is refused).
		if err := n.checkListed(ctx, p, h.SenderCert.DH); err != nil {
			return err
		}
		defer n.devLocks.lock(p)()
		var owner peerKey
		err = n.db.View(func(tx *storage.Txn) error {
			var err error
			owner, st, err = n.st.sessionByRecv(tx, h.SessionID)
			return err
		})
		switch {
		case err == nil:
			if owner != p {
				return fmt.Errorf("%w: prekey envelope for another peer's session", errPermanent)
			}
			msg, openErr = st.sess.OpenPrekey(n.rand, h, nowMs)
		case errors.Is(err, storage.ErrNotFound):
			// Prekeys are shared by all peers: hold their lock until the
			// consumed ones are committed.
			n.pkMu.Lock()
			defer n.pkMu.Unlock()
			pk := n.currentPrekeys().Clone()
			fresh, msg, openErr = sealed.Accept(n.rand, n.self, pk, h, nowMs)
			if fresh != nil {
				newPK = pk
				archive = p.account == n.keys.account.ID() || (c != nil && c.accepted())
			}
		default:
			return err
		}
	}
	if (st == nil && fresh == nil) || (openErr != nil && !sealed.IsPolicy(openErr)) {
		return fmt.Errorf("%w: %w", errPermanent, openErr)
	}
	keep := openErr == nil || errors.Is(openErr, sealed.ErrTimestamp)
	var (
		dup      bool
		receipts []*job
		events   []chat.Event
	)
	err = n.db.Update(func(tx *storage.Txn) error {
		receipts, events, dup = nil, nil, false
		if fresh != nil {
			if err := n.st.installSession(tx, fresh, archive, n.cfg.Now().UnixNano()); err != nil {
				return err
			}
			if err := n.st.putPrekeys(tx, newPK); err != nil {
				return err
			}
		} else if err := n.st.saveSession(tx, st); err != nil {
			return err
		}
		if !keep {
			dup = errors.Is(openErr, sealed.ErrDuplicate)
			return nil // consumed: the session moved on; nothing to store
		}
		key := seenKey(msg.Sender, msg.ID)
		if ok, err := tx.Has(n.st.seen, key); err != nil {
			return err
		} else if ok {
			dup = true
			return nil
		}
		if err := tx.SetTTL(n.st.seen, key, nil, seenTTL); err != nil {
			return err
		}
		var warning string
		if openErr != nil {
			warning = chat.WarnTimestamp
		}
		var err error
		receipts, events, err = n.apply(tx, msg, nowMs, warning, nil)
		return err
	})
	if err != nil {
		return err
	}
	if newPK != nil {
		n.setPrekeys(newPK)
		n.afterAccept(ctx, newPK)
	}
	if openErr != nil && !dup && !keep {
		n.log.Info("message rejected by policy", "err", openErr)
	}
	n.published(events)
	if len(receipts) > 0 {
		n.notify(receipts[0].To)
	}
	return nil
}

// seenKey names a received message for deduplication: by sender and ID,
// so no account can make the node drop another's message by reusing its
// ID.
func seenKey(sender identity.AccountID, id sealed.MessageID) []byte {
	return append(append(make([]byte, 0, 48), sender[:]...), id[:]...)
}

// currentPrekeys and setPrekeys guard n.keys.prekeys, which publish reads.
func (n *Node) currentPrekeys() *pqxdh.PrekeySet {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.keys.prekeys
}

func (n *Node) setPrekeys(pk *pqxdh.PrekeySet) {
	n.mu.Lock()
	n.keys.prekeys = pk
	n.mu.Unlock()
}

// afterAccept tops up one-time prekeys and rotates the signed prekey when
// a session was accepted, in the background.
func (n *Node) afterAccept(ctx context.Context, pk *pqxdh.PrekeySet) {
	x, _ := pk.OneTimeLeft()
	if x < refillBelow || pk.NeedsRotation() {
		go n.refillPrekeys(context.WithoutCancel(ctx))
	}
}

// maxStrangerDevices bounds the devices of an account that is not a
// contact that the node keeps sessions with: a stranger's list can name
// 64 devices, each session up to ~140 kB (2,000 skipped keys), and
// accounts are free to make.
const maxStrangerDevices = 4

// checkStrangerDevices refuses a new session with a device of p.account,
// which is not a contact, once maxStrangerDevices devices of it have one.
func (n *Node) checkStrangerDevices(p peerKey) error {
	return n.db.View(func(tx *storage.Txn) error {
		peers, err := n.st.peerSessions(tx, p.account)
		if err != nil {
			return err
		}
		if len(peers) >= maxStrangerDevices && !slices.Contains(peers, p) {
			return fmt.Errorf("%w: %s is not a contact and already has sessions with %d devices", errPermanent, p.account, len(peers))
		}
		return nil
	})
}

// knownAccount returns the record of a, or nil if the node has none.
func (n *Node) knownAccount(a identity.AccountID) (*contactRecord, error) {
	var c *contactRecord
	err := n.db.View(func(tx *storage.Txn) (err error) {
		c, err = n.st.getContact(tx, a)
		return err
	})
	if errors.Is(err, chat.ErrUnknownContact) {
		return nil, nil
	}
	return c, err
}

// apply stores what a decrypted message says: a chat message (and a
// delivered receipt back, if the sender is a contact) or a receipt for our
// own messages. A message from an account that is not a contact is kept as
// a message request: no receipt goes back until the user accepts it, and
// nothing is kept from an account the user ignored. With rc set, the IDs
// a delivered receipt is due for are added to it instead of being
// enqueued (a batch sends one receipt for many messages), and contact
// records are read once and written at the end of the batch.
func (n *Node) apply(tx *storage.Txn, m sealed.Message, nowMs int64, warning string, rc *batchState) ([]*job, []chat.Event, error) {
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
			if err != nil || a == self {
				return nil, nil, nil
			}
			chatAcct, outgoing = a, true
		}
		var c *contactRecord
		if rc != nil {
			c = rc.contacts[chatAcct]
		}
		changed := false
		if c == nil {
			var err error
			c, err = n.st.getContact(tx, chatAcct)
			if errors.Is(err, chat.ErrUnknownContact) {
				c = &contactRecord{Account: chatAcct, Added: time.UnixMilli(nowMs).UTC(), State: stateRequest}
				if outgoing {
					c.State = stateContact // we wrote to them from another device
				}
				changed = true
			} else if err != nil {
				return nil, nil, err
			}
			if rc != nil {
				rc.contacts[chatAcct] = c
			}
		}
		switch c.state() {
		case stateIgnored:
			if !outgoing {
				return nil, nil, nil
			}
		case stateNone:
			if !outgoing {
				c.State, changed = stateRequest, true
			}
		}
		if !outgoing {
			tokChanged, err := storePeerToken(c, m.Device, p.DT)
			if err != nil {
				n.log.Info("bad delivery token", "from", m.Sender.String(), "err", err)
			}
			changed = changed || tokChanged
		}
		switch {
		case !changed:
		case rc != nil:
			rc.dirty[chatAcct] = true
		default:
			if err := n.st.putContact(tx, c); err != nil {
				return nil, nil, err
			}
		}
		sentAt := time.UnixMilli(m.Timestamp).UTC()
		if warning != "" {
			// The sender's time is off the window: order the chat by
			// arrival instead (and a time JSON cannot hold, past year
			// 9999, never reaches the store).
			sentAt = time.UnixMilli(nowMs).UTC()
		}
		rec := &messageRecord{Message: chat.Message{
			ID: chat.MessageID(m.ID).String(), Chat: chatAcct.String(), From: m.Sender.String(), Outgoing: outgoing,
			Text: p.Text, SentAt: sentAt, Received: time.UnixMilli(nowMs).UTC(),
			Status: chat.StatusReceived, Seq: p.Seq, Warning: warning,
		}}
		if outgoing {
			rec.Status = chat.StatusSent
		}
		if _, err := n.st.getMessage(tx, chatAcct, chat.MessageID(m.ID)); err == nil {
			// Another sender already used this ID in this chat: keep both.
			var id chat.MessageID
			if _, err := n.rand.Read(id[:]); err != nil {
				return nil, nil, err
			}
			rec.ID = id.String()
		}
		if p.File != nil {
			n.fileReceiveTx(tx, rec, p.File)
		}
		if p.Fwd != nil && p.Fwd.check() == nil {
			rec.Forwarded = p.Fwd.view()
		}
		if err := n.st.putMessage(tx, chatAcct, rec); err != nil {
			return nil, nil, err
		}
		evs := []chat.Event{{Type: chat.EventMessage, Message: n.messageView(c, rec.Message)}}
		if outgoing || !c.accepted() {
			return nil, evs, nil
		}
		if rc != nil {
			rc.receipts[m.Sender] = append(rc.receipts[m.Sender], rec.ID)
			return nil, evs, nil
		}
		jobs, err := n.receiptJobs(tx, m.Sender, chat.StatusDelivered, []string{rec.ID}, nowMs)
		return jobs, evs, err
	case "call":
		// Signals from contacts only; to the engine once this commits
		// (one goroutine takes them in order).
		if m.Sender == self {
			return nil, nil, nil
		}
		c, err := n.st.getContact(tx, m.Sender)
		if err != nil || !c.accepted() {
			return nil, nil, nil
		}
		n.takeCallSignal(m.Sender, m.Device, p.Call)
		return nil, nil, nil
	case "file-delete":
		if len(p.IDs) > 64 {
			return nil, nil, nil
		}
		evs, err := n.fileDeleteTx(tx, m.Sender.String(), m.Sender, p.IDs)
		return nil, evs, err
	case "group-log":
		if err := n.applyGroupLog(tx, m.Sender, p); err != nil {
			return nil, nil, err
		}
		// An invitation it made (or holds) is news to the clients: a
		// join says so itself (groupChanged).
		return nil, n.invitationEvents(tx, p.Group), nil
	case "group-key":
		from := &messageFrom{account: m.Sender, device: m.Device, contact: m.Sender == self}
		if c, err := n.st.getContact(tx, m.Sender); err == nil {
			from.contact = c.accepted()
		} else if !errors.Is(err, chat.ErrUnknownContact) {
			return nil, nil, err
		}
		evs, err := n.applyGroupKey(tx, from, p)
		return nil, evs, err
	case "receipt":
		status := chat.Status(p.Status)
		if status != chat.StatusDelivered && status != chat.StatusRead {
			return nil, nil, nil
		}
		if p.DT != "" && m.Sender != self {
			c, err := n.st.getContact(tx, m.Sender)
			if err == nil {
				if changed, err := storePeerToken(c, m.Device, p.DT); err == nil && changed {
					if err := n.st.putContact(tx, c); err != nil {
						return nil, nil, err
					}
				}
			} else if !errors.Is(err, chat.ErrUnknownContact) {
				return nil, nil, err
			}
		}
		var evs []chat.Event
		for _, s := range p.IDs {
			id, err := chat.ParseMessageID(s)
			if err != nil {
				continue
			}
			// A receipt names only messages we sent to its sender: others
			// are left as they are.
			ev, err := n.advanceStatus(tx, m.Sender, id, status)
			if err != nil {
				return nil, nil, err
			}
			if ev != nil {
				evs = append(evs, *ev)
			}
		}
		return nil, evs, nil
	}
	return nil, nil, nil
}

// maxReceiptIDs bounds the message IDs one receipt names, so a receipt
// for a long unread chat stays far below the body limit (35 bytes an ID).
const maxReceiptIDs = 1000

// receiptJobs enqueues receipts for ids to account to, in batches of at
// most maxReceiptIDs.
func (n *Node) receiptJobs(tx *storage.Txn, to identity.AccountID, status chat.Status, ids []string, nowMs int64) ([]*job, error) {
	var jobs []*job
	for len(ids) > 0 {
		batch := ids[:min(len(ids), maxReceiptIDs)]
		ids = ids[len(batch):]
		body, err := json.Marshal(payload{Kind: "receipt", Status: string(status), IDs: batch, DT: n.tokenHex()})
		if err != nil {
			return nil, err
		}
		var id chat.MessageID
		if _, err := n.rand.Read(id[:]); err != nil {
			return nil, err
		}
		j := &job{ID: id, To: to, Payload: body, SentAt: nowMs}
		if err := n.enqueue(tx, j); err != nil {
			return nil, err
		}
		jobs = append(jobs, j)
	}
	return jobs, nil
}

// signedPrekeyLifetime is how long a signed prekey is current before the
// device rotates it (Signal §3.2 suggests a week to a month).
const signedPrekeyLifetime = 7 * 24 * time.Hour

// refillPrekeys tops up one-time prekeys, rotates the signed and
// last-resort prekeys when they are old or have accepted many sessions,
// and publishes the result to every home relay.
func (n *Node) refillPrekeys(ctx context.Context) {
	n.refillPrekeysIf(ctx, false)
}

// refillPrekeysIf is refillPrekeys that refills one-time prekeys also when
// force is set (a directory's pool runs low though the node holds many:
// handed out, never used).
func (n *Node) refillPrekeysIf(ctx context.Context, force bool) {
	changed, err := n.maintainPrekeys(force)
	if err != nil {
		n.log.Error("prekey maintenance", "err", err)
		return
	}
	if !changed {
		return
	}
	for _, r := range n.relays {
		if err := n.publish(ctx, r.ID); err != nil {
			n.log.Warn("prekey publish", "relay", r.ID, "err", err)
		}
	}
}

func (n *Node) maintainPrekeys(force bool) (bool, error) {
	n.pkMu.Lock()
	defer n.pkMu.Unlock()
	pk := n.currentPrekeys().Clone()
	var rotated time.Time
	if err := n.db.View(func(tx *storage.Txn) error {
		raw, err := tx.Get(n.st.meta, []byte("spk-rotated"))
		if err == nil && len(raw) == 8 {
			rotated = time.Unix(0, int64(binary.BigEndian.Uint64(raw)))
		} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		return nil
	}); err != nil {
		return false, err
	}
	now := n.cfg.Now()
	changed := false
	if x, _ := pk.OneTimeLeft(); x < refillBelow || force {
		count := initialOneTimePrekeys
		if !force {
			count -= x
		}
		if _, err := pk.Refill(n.rand, n.keys.device, count); err != nil {
			return false, err
		}
		changed = true
	}
	if rotated.IsZero() {
		rotated = now // homes made before rotation was tracked: start the clock
		changed = true
	}
	if pk.NeedsRotation() || now.Sub(rotated) >= signedPrekeyLifetime {
		if err := pk.RotateSigned(n.rand, n.keys.device); err != nil {
			return false, err
		}
		rotated, changed = now, true
	}
	if !changed {
		return false, nil
	}
	if err := n.db.Update(func(tx *storage.Txn) error {
		if err := tx.Set(n.st.meta, []byte("spk-rotated"), binary.BigEndian.AppendUint64(nil, uint64(rotated.UnixNano()))); err != nil {
			return err
		}
		return n.st.putPrekeys(tx, pk)
	}); err != nil {
		return false, err
	}
	n.setPrekeys(pk)
	return true, nil
}

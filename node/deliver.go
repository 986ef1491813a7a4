package node

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/sealed"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/directory"
	"github.com/peergram/peergram/relay/mailbox"
	"github.com/peergram/peergram/storage"
)

// ProtocolID is the direct device-to-device delivery protocol: one sealed
// envelope per stream, answered by one status byte once the receiver has
// stored it.
const ProtocolID = "/peergram/msg/1.0.0"

// Direct delivery answers. Append-only.
const (
	directOK       byte = 0 // stored (or already had it)
	directRejected byte = 1 // could not be opened; do not retry this copy
)

// Timeouts of the delivery paths.
const (
	directTimeout  = 4 * time.Second
	depositTimeout = 10 * time.Second
	fetchTimeout   = 10 * time.Second
)

// payload is what a sealed message carries for the node: a chat message or
// a receipt. Encoded as JSON inside the encryption.
type payload struct {
	Kind   string   `json:"k"`              // "text" or "receipt"
	Seq    uint64   `json:"seq,omitempty"`  // sender's chat sequence
	Text   string   `json:"text,omitempty"` // text messages
	Chat   string   `json:"chat,omitempty"` // copies to the sender's own devices: the chat's account
	Status string   `json:"status,omitempty"`
	IDs    []string `json:"ids,omitempty"` // receipts: message IDs
	// DT is the sending device's delivery token (hex): deposits to its
	// mailbox that carry it are not limited as strangers' are.
	DT string `json:"dt,omitempty"`
}

// job is one outbox entry: a payload to deliver to every device of an
// account (and the sender's own other devices).
type job struct {
	Seq      uint64             `json:"seq"`
	ID       chat.MessageID     `json:"id"`
	To       identity.AccountID `json:"to"`
	Payload  []byte             `json:"payload"`
	SentAt   int64              `json:"sent_at"` // unix ms
	Done     []string           `json:"done,omitempty"`
	Attempts int                `json:"attempts"`
	NextAt   int64              `json:"next_at"` // unix ms
	Text     bool               `json:"text"`    // updates a stored message's status
	// Sealed holds, per device not yet done, the envelope sealed for it:
	// sealed once, committed with the session it advanced, and resent
	// byte for byte on every retry, so retries never advance the ratchet.
	Sealed map[string]sealedCopy `json:"sealed,omitempty"`
}

// sealedCopy is one device's envelope of a job and the identity key it was
// sealed to (a copy for a key the device no longer has is sealed again).
type sealedCopy struct {
	Env []byte   `json:"env"`
	IK  [32]byte `json:"ik"`
}

// How long the outbox retries a job before it gives up: a text as long as
// a relay would keep it (its recipient may be offline that long), a
// receipt a few days.
const (
	maxTextRetry    = 30 * 24 * time.Hour
	maxReceiptRetry = 3 * 24 * time.Hour
)

// errUndeliverable marks a job that can never succeed (the message can
// never fit in an envelope, or the recipient has no devices): it fails at
// once instead of retrying.
var errUndeliverable = errors.New("node: undeliverable")

func jobKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// enqueue stores a job in the outbox inside tx and wakes the worker after
// commit (the caller calls n.kick).
func (n *Node) enqueue(tx *storage.Txn, j *job) error {
	seq, err := n.st.nextOutboxSeq(tx)
	if err != nil {
		return err
	}
	j.Seq = seq
	raw, err := json.Marshal(j)
	if err != nil {
		return err
	}
	return tx.Set(n.st.outbox, jobKey(seq), raw)
}

func (n *Node) kick() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// runOutbox delivers outbox jobs until ctx ends. Each recipient's jobs go
// in order, by one worker at a time; recipients are served in parallel (at
// most outboxWorkers at once), so a recipient that is slow to reach holds
// up only its own messages. The dispatcher wakes when a job is added
// (kick), when a worker ends, and when the earliest backoff runs out.
func (n *Node) runOutbox(ctx context.Context) {
	var (
		mu     sync.Mutex
		active = map[identity.AccountID]bool{}
		wg     sync.WaitGroup
		sem    = make(chan struct{}, outboxWorkers)
	)
	defer wg.Wait()
	for ctx.Err() == nil {
		jobs, err := n.outboxJobs()
		if err != nil {
			n.log.Error("outbox: read", "err", err)
		}
		now := n.cfg.Now()
		first := map[identity.AccountID]*job{}
		for _, j := range jobs {
			if first[j.To] == nil {
				first[j.To] = j
			}
		}
		var next time.Time
		mu.Lock()
		for to, j := range first {
			if active[to] {
				continue
			}
			if j.NextAt > now.UnixMilli() {
				at := time.UnixMilli(j.NextAt)
				if next.IsZero() || at.Before(next) {
					next = at
				}
				continue
			}
			select {
			case sem <- struct{}{}:
			default:
				continue // all workers busy: a worker's end wakes us
			}
			active[to] = true
			wg.Go(func() {
				defer func() { <-sem }()
				n.serveRecipient(ctx, to)
				mu.Lock()
				delete(active, to)
				mu.Unlock()
				n.kick() // the dispatcher looks again: new jobs, the next backoff
			})
		}
		mu.Unlock()
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), 0)
		}
		select {
		case <-ctx.Done():
			return
		case <-n.wake:
		case <-time.After(wait):
		}
	}
}

// outboxJobs reads the outbox in order.
func (n *Node) outboxJobs() ([]*job, error) {
	var jobs []*job
	err := n.db.View(func(tx *storage.Txn) error {
		return tx.Iterate(n.st.outbox, nil, func(_, val []byte) error {
			var j job
			if err := json.Unmarshal(val, &j); err != nil {
				return err
			}
			jobs = append(jobs, &j)
			return nil
		})
	})
	return jobs, err
}

// serveRecipient delivers to's jobs until none is due, re-reading the
// outbox so jobs added meanwhile go too. It returns when the first waiting
// job is due (zero if none is left).
func (n *Node) serveRecipient(ctx context.Context, to identity.AccountID) time.Time {
	for ctx.Err() == nil {
		all, err := n.outboxJobs()
		if err != nil {
			n.log.Error("outbox: read", "err", err)
			return time.Time{}
		}
		var jobs []*job
		for _, j := range all {
			if j.To == to {
				jobs = append(jobs, j)
			}
		}
		if len(jobs) == 0 {
			return time.Time{}
		}
		if at := n.deliverQueue(ctx, jobs); !at.IsZero() {
			return at
		}
	}
	return time.Time{}
}

// outboxWorkers is how many recipients the outbox serves at once.
const outboxWorkers = 32

// jobBudget bounds one attempt at one job: a recipient whose devices and
// relays do not answer waits out its backoff instead of the outbox.
const jobBudget = 30 * time.Second

// deliverQueue delivers one recipient's jobs in order. A job waiting out a
// retry backoff, or failing now, holds back the later ones: per-contact
// order is kept. It returns when the first waiting job is due (zero if
// all went).
func (n *Node) deliverQueue(ctx context.Context, jobs []*job) time.Time {
	for _, j := range jobs {
		if ctx.Err() != nil {
			return time.Time{}
		}
		now := n.cfg.Now()
		if j.NextAt > now.UnixMilli() {
			return time.UnixMilli(j.NextAt)
		}
		jctx, cancel := context.WithTimeout(ctx, jobBudget)
		err := n.deliverJob(jctx, j)
		cancel()
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return time.Time{}
		}
		limit := maxReceiptRetry
		if j.Text {
			limit = maxTextRetry
		}
		if errors.Is(err, errUndeliverable) || now.Sub(time.UnixMilli(j.SentAt)) > limit {
			n.log.Warn("outbox: giving up", "to", j.To.String(), "id", j.ID.String(), "attempts", j.Attempts, "err", err)
			if err := n.failJob(j, err); err != nil {
				n.log.Error("outbox: fail", "err", err)
			}
			continue
		}
		j.Attempts++
		delay := min(n.cfg.RetryMin<<min(j.Attempts, 16), n.cfg.RetryMax)
		j.NextAt = now.Add(jitter(delay)).UnixMilli()
		n.log.Info("outbox: delivery failed; will retry", "to", j.To.String(), "id", j.ID.String(), "attempt", j.Attempts, "err", err)
		if err := n.saveJob(j); err != nil {
			n.log.Error("outbox: save", "err", err)
		}
		return time.UnixMilli(j.NextAt)
	}
	return time.Time{}
}

// failJob removes a job that cannot be delivered and marks its message
// failed, with the reason.
func (n *Node) failJob(j *job, reason error) error {
	var ev *chat.Event
	err := n.db.Update(func(tx *storage.Txn) error {
		ev = nil
		if err := tx.Delete(n.st.outbox, jobKey(j.Seq)); err != nil {
			return err
		}
		if !j.Text {
			return nil
		}
		m, err := n.st.getMessage(tx, j.To, j.ID)
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if m.Status != chat.StatusPending {
			return nil
		}
		m.Status = chat.StatusFailed
		m.Error = failReason(reason)
		ev = &chat.Event{Type: chat.EventStatus, Message: m.Message}
		return n.st.putMessage(tx, j.To, m)
	})
	if err == nil && ev != nil {
		n.events.publish(*ev)
	}
	return err
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

func (n *Node) saveJob(j *job) error {
	raw, err := json.Marshal(j)
	if err != nil {
		return err
	}
	return n.db.Update(func(tx *storage.Txn) error { return tx.Set(n.st.outbox, jobKey(j.Seq), raw) })
}

// target is one device a job goes to.
type target struct {
	account identity.AccountID
	cert    identity.DeviceCert
	record  *directory.Record
}

// targets lists the devices of account to (from its current, fresh list)
// and the node's own other devices.
func (n *Node) targets(ctx context.Context, to identity.AccountID) ([]target, error) {
	self := n.keys.account.ID()
	now := n.cfg.Now()
	var out []target
	if to != self {
		var c *contactRecord
		err := n.db.View(func(tx *storage.Txn) (err error) {
			c, err = n.st.getContact(tx, to)
			return err
		})
		if err != nil {
			return nil, err
		}
		list, err := c.deviceList()
		if err != nil {
			return nil, err
		}
		if list == nil || list.CheckFresh(now.Unix()) != nil || now.Sub(c.ListChecked) >= listRecheck {
			fresh, err := n.refreshContact(ctx, to)
			switch {
			case err == nil:
				c = fresh
				if list, err = c.deviceList(); err != nil {
					return nil, err
				}
			case list == nil || list.CheckFresh(now.Unix()) != nil:
				return nil, err
			default:
				// The list we hold is still valid: use it this time.
				n.log.Info("could not re-check a contact's device list", "contact", to.String(), "err", err)
			}
		}
		if len(list.Devices) == 0 {
			return nil, fmt.Errorf("%w: %s lists no devices", errUndeliverable, to)
		}
		for _, d := range list.Devices {
			out = append(out, target{account: to, cert: d, record: c.record(d.Device)})
		}
	}
	n.mu.Lock()
	own, checked := n.keys.list, n.keys.listChecked
	n.mu.Unlock()
	if len(own.Devices) > 1 && now.Sub(checked) >= listRecheck && len(n.relays) > 0 {
		// Copies go to the account's other devices: make sure none of
		// them was removed (by another device) since we last looked.
		if l, err := n.refreshOwnList(ctx); err == nil {
			own = l
		} else {
			n.log.Info("could not re-check the account's device list", "err", err)
		}
	}
	for _, d := range own.Devices {
		if d.Device != n.keys.device.ID() {
			out = append(out, target{account: self, cert: d})
		}
	}
	return out, nil
}

// deliverJob seals j for every target device not yet done (or reuses the
// copy sealed on an earlier attempt) and hands each copy to the device or
// its relays.
func (n *Node) deliverJob(ctx context.Context, j *job) error {
	ts, err := n.targets(ctx, j.To)
	if err != nil {
		return err
	}
	var failed error
	for _, t := range ts {
		dev := t.cert.Device.String()
		if slices.Contains(j.Done, dev) {
			continue
		}
		env, err := n.sealFor(ctx, t, j)
		if err == nil {
			err = n.send(ctx, t, env)
		}
		if err != nil {
			if errors.Is(err, sealed.ErrTooLarge) {
				return fmt.Errorf("%w: %w", errUndeliverable, err)
			}
			failed = errors.Join(failed, fmt.Errorf("device %.8s: %w", dev, err))
			continue
		}
		j.Done = append(j.Done, dev)
		delete(j.Sealed, dev)
	}
	if failed != nil {
		if err := n.saveJob(j); err != nil {
			return err
		}
		return failed
	}
	var ev *chat.Event
	err = n.db.Update(func(tx *storage.Txn) error {
		ev = nil
		if err := tx.Delete(n.st.outbox, jobKey(j.Seq)); err != nil {
			return err
		}
		if !j.Text {
			return nil
		}
		m, err := n.st.getMessage(tx, j.To, j.ID)
		if err != nil {
			return err
		}
		m.Status = chat.Advance(m.Status, chat.StatusSent)
		ev = &chat.Event{Type: chat.EventStatus, Message: m.Message}
		return n.st.putMessage(tx, j.To, m)
	})
	if err == nil && ev != nil {
		n.events.publish(*ev) // only once the status is committed
	}
	return err
}

// sealFor returns j's envelope for device t: the copy sealed on an earlier
// attempt if it was sealed to t's current key, else a new one. A new copy
// is committed together with the session it advanced and the job, so a
// crash never leaves a sealed copy the job does not know of.
func (n *Node) sealFor(ctx context.Context, t target, j *job) ([]byte, error) {
	dev := t.cert.Device.String()
	if c, ok := j.Sealed[dev]; ok && c.IK == t.cert.DH {
		return c.Env, nil
	}
	p := peerKey{t.account, t.cert.Device}
	var sess *sealed.Session
	err := n.db.View(func(tx *storage.Txn) (err error) {
		sess, err = n.st.currentSession(tx, p)
		return err
	})
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	if sess == nil || sess.PeerIdentityKey() != t.cert.DH {
		// No session, or one agreed with a key the device's current
		// certificate no longer has: start a new one (network, unlocked).
		if sess, err = n.newSession(ctx, t); err != nil {
			return nil, err
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
		return nil, err
	}
	if sess.PeerIdentityKey() != t.cert.DH || sess.PeerAccount() != t.account || sess.PeerDevice() != t.cert.Device {
		return nil, fmt.Errorf("node: session does not match the certificate of %s", t.cert.Device)
	}
	env, err := sess.Seal(n.rand, sealed.Message{ID: sealed.MessageID(j.ID), Timestamp: j.SentAt, Body: j.Payload})
	if err != nil {
		return nil, err
	}
	if j.Sealed == nil {
		j.Sealed = map[string]sealedCopy{}
	}
	j.Sealed[dev] = sealedCopy{Env: env, IK: t.cert.DH}
	raw, err := json.Marshal(j)
	if err != nil {
		return nil, err
	}
	if err := n.db.Update(func(tx *storage.Txn) error {
		if install {
			if err := n.st.installSession(tx, sess, false, n.cfg.Now().UnixNano()); err != nil {
				return err
			}
		} else if err := n.st.saveSession(tx, &stored{sess: sess}); err != nil {
			return err
		}
		return tx.Set(n.st.outbox, jobKey(j.Seq), raw)
	}); err != nil {
		delete(j.Sealed, dev)
		return nil, err
	}
	return env, nil
}

// newSession starts a session with a device from a bundle kept since the
// account was looked up, or fetched now. It stores nothing: sealFor
// installs it with the first envelope.
func (n *Node) newSession(ctx context.Context, t target) (*sealed.Session, error) {
	var bundleRaw []byte
	if t.account != n.keys.account.ID() {
		if err := n.db.View(func(tx *storage.Txn) error {
			c, err := n.st.getContact(tx, t.account)
			if err != nil {
				return nil
			}
			bundleRaw = c.Devices[t.cert.Device.String()].Bundle
			return nil
		}); err != nil {
			return nil, err
		}
	}
	if bundleRaw == nil {
		res, err := n.fetchList(ctx, t.account, nil)
		if err != nil {
			return nil, err
		}
		for _, d := range res.Devices {
			if d.Cert.Device == t.cert.Device && d.Bundle != nil {
				bundleRaw, _ = d.Bundle.MarshalBinary()
			}
		}
		if bundleRaw == nil {
			return nil, fmt.Errorf("%w: no prekeys published for device %s", chat.ErrUnavailable, t.cert.Device)
		}
	}
	b, err := parseBundle(bundleRaw)
	if err != nil {
		return nil, err
	}
	sess, err := sealed.Initiate(n.rand, n.self, &t.cert, b, nil)
	if err != nil {
		return nil, err
	}
	if t.account != n.keys.account.ID() {
		// The bundle's one-time prekeys are now used: forget them.
		err = n.db.Update(func(tx *storage.Txn) error {
			c, err := n.st.getContact(tx, t.account)
			if err != nil {
				return nil
			}
			d := c.Devices[t.cert.Device.String()]
			d.Bundle = nil
			c.Devices[t.cert.Device.String()] = d
			return n.st.putContact(tx, c)
		})
	}
	return sess, err
}

// send hands one envelope to the device directly, or else to one of its
// home relays' mailboxes.
func (n *Node) send(ctx context.Context, t target, env []byte) error {
	var errs []error
	if t.record != nil && t.record.PeerID != "" && t.record.PeerID != n.host.ID() &&
		n.reach.tryDirect(n.host.Network(), t.record.PeerID, n.cfg.Now()) {
		n.directAttempts.Add(1)
		err := n.sendDirect(ctx, t.record.PeerID, t.record.Relays, env)
		if err == nil {
			n.reach.reached(t.record.PeerID)
			n.sentDirect.Add(1)
			return nil
		}
		n.reach.failed(t.record.PeerID, n.cfg.Now())
		errs = append(errs, fmt.Errorf("direct: %w", err))
	}
	relays := []string(nil)
	if t.record != nil {
		relays = t.record.Relays
	}
	if len(relays) == 0 {
		relays = n.cfg.Relays // same home relays as ours: the common case in a small deployment
	}
	sum := sha256.Sum256(env)
	var id mailbox.EnvelopeID
	copy(id[:], sum[:])
	addr := mailbox.Address(t.cert.Device)
	tok := n.peerToken(t)
	for _, s := range relays {
		ai, err := addrInfo(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, time.Hour)
		dctx, cancel := context.WithTimeout(ctx, depositTimeout)
		err = n.mbox.DepositWithToken(dctx, ai.ID, addr, id, env, tok)
		cancel()
		if err == nil {
			n.sentMailbox.Add(1)
			return nil
		}
		errs = append(errs, fmt.Errorf("relay %s: %w", ai.ID, err))
	}
	if len(errs) == 0 {
		return fmt.Errorf("%w: no route to device %s", chat.ErrUnavailable, t.cert.Device)
	}
	return errors.Join(errs...)
}

func (n *Node) sendDirect(ctx context.Context, p peer.ID, relays []string, env []byte) error {
	if n.host.Network().Connectedness(p) != network.Connected {
		n.addCircuitAddrs(p, relays)
		if len(n.host.Peerstore().Addrs(p)) == 0 {
			return fmt.Errorf("no address")
		}
	}
	ctx, cancel := context.WithTimeout(ctx, directTimeout)
	defer cancel()
	s, err := n.host.NewStream(network.WithAllowLimitedConn(ctx, "peergram-msg"), p, ProtocolID)
	if err != nil {
		return err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(directTimeout))
	w := bufio.NewWriter(s)
	if err := writeFrame(w, env); err != nil {
		s.Reset()
		return err
	}
	if err := w.Flush(); err != nil {
		s.Reset()
		return err
	}
	if err := s.CloseWrite(); err != nil {
		s.Reset()
		return err
	}
	var ack [1]byte
	if _, err := io.ReadFull(s, ack[:]); err != nil {
		s.Reset()
		return fmt.Errorf("no acknowledgement: %w", err)
	}
	if ack[0] != directOK {
		return fmt.Errorf("peer rejected the envelope")
	}
	return nil
}

func writeFrame(w io.Writer, b []byte) error {
	var hdr [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(hdr[:], uint64(len(b)))
	if _, err := w.Write(hdr[:k]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

// ErrFrameTooLarge reports a direct frame over sealed.MaxEnvelopeSize.
var ErrFrameTooLarge = errors.New("node: frame too large")

func readFrame(r *bufio.Reader) ([]byte, error) {
	size, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if size > sealed.MaxEnvelopeSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, size)
	}
	b := make([]byte, size)
	_, err = io.ReadFull(r, b)
	return b, err
}

// handleDirect receives one envelope from a peer device.
func (n *Node) handleDirect(s network.Stream) {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(directTimeout * 2))
	env, err := readFrame(bufio.NewReader(s))
	if err != nil {
		n.log.Info("direct: bad frame", "peer", s.Conn().RemotePeer(), "err", err)
		s.Reset()
		return
	}
	ack := directOK
	if err := n.receive(context.Background(), env); err != nil {
		if !errors.Is(err, errPermanent) {
			s.Reset() // transient: the sender retries
			return
		}
		ack = directRejected
	}
	_, _ = s.Write([]byte{ack})
}

// handleMailbox receives an envelope from the node's relay mailbox. A nil
// return acks it (the relay deletes it); only transient local failures
// leave it for redelivery.
func (n *Node) handleMailbox(ctx context.Context, d mailbox.Delivery) error {
	err := n.receive(ctx, d.Envelope)
	if errors.Is(err, errPermanent) {
		return nil
	}
	return err
}

func addrInfo(s string) (*peer.AddrInfo, error) {
	return peer.AddrInfoFromString(s)
}

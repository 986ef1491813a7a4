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
	Kind   string   `json:"k"`              // "text", "receipt" or "group-log"
	Seq    uint64   `json:"seq,omitempty"`  // sender's chat sequence
	Text   string   `json:"text,omitempty"` // text messages
	Chat   string   `json:"chat,omitempty"` // copies to the sender's own devices: the chat's account
	Status string   `json:"status,omitempty"`
	IDs    []string `json:"ids,omitempty"` // receipts: message IDs
	// DT is the sending device's delivery token (hex): deposits to its
	// mailbox that carry it are not limited as strangers' are.
	DT string `json:"dt,omitempty"`
	// Group and Log: "group-log", a group's ID (hex) and its state log
	// (encoded entries, oldest first), sent to the group's members.
	Group string   `json:"group,omitempty"`
	Log   [][]byte `json:"log,omitempty"`
	// From and Relays: a "group-log" of a log over maxLogSync entries
	// carries its end only, from entry From on; a receiver that holds
	// less (a new member) fetches the rest from a relay that keeps the
	// group's history: one of Relays (the sender's home relays,
	// multiaddrs with /p2p/, at most maxLogRelays) or its own.
	From   uint64   `json:"from,omitempty"`
	Relays []string `json:"relays,omitempty"`
	// Title and Members: with a long log's end, the group's title
	// (sealed with its info keys, as in the log) and member count as the
	// sender's log has them — what an invitation shows until it is
	// accepted (the sender's word: the log before the end is not there).
	Title   string `json:"title,omitempty"`
	Members int    `json:"members,omitempty"`
	// staged: a whole log whose entries after the creation this node
	// wrote already (grouplogstage.go); viaGroup: an entry taken from the
	// group's gossip or a relay's history (takeStateEntry). Never on the
	// wire, nor is partial.
	staged, viaGroup bool
	// partial: a verified log's prefix, applied in a transaction of its
	// own before the whole (applyFetched): its sender need not be a
	// member yet at its end. accepted: a log the user accepted an
	// invitation to (groupinvite.go): joined, whoever added this account.
	partial, accepted bool
	// Info: "group-log" to members, the group's info keys (titles and
	// descriptions in the log are sealed with them).
	Info []infoKey `json:"info,omitempty"`
	// Fwd: a "text" message that is a forward (Text is the copy), its
	// origin as the sender states it.
	Fwd *forwardRef `json:"fwd,omitempty"`
	// File: a "text" message that carries a file (Text is its caption).
	File *fileRef `json:"file,omitempty"`
	// Call: a "call" payload's signal (calls.Signal, JSON).
	Call json.RawMessage `json:"call,omitempty"`
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
	// Stored apart from the job (outbox.sealed), so a job is written once
	// however many devices it goes to; jobs of older nodes carry it
	// inline.
	Sealed map[string]sealedCopy `json:"sealed,omitempty"`
}

// sealedCopy is one device's envelope of a job and the identity key it was
// sealed to (a copy for a key the device no longer has is sealed again).
type sealedCopy struct {
	Env []byte   `json:"env"`
	IK  [32]byte `json:"ik"`
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

// sendBatch hands envelopes to device t, in order: directly while the
// device is reachable, the rest to one of its home relays' mailboxes with
// many deposits in flight. It returns per envelope nil (handed over) or
// why not.
func (n *Node) sendBatch(ctx context.Context, t target, envs [][]byte) []error {
	errs := make([]error, len(envs))
	left := make([]int, 0, len(envs))
	if t.record != nil && t.record.PeerID != "" && t.record.PeerID != n.host.ID() &&
		n.reach.tryDirect(n.host.Network(), t.record.PeerID, n.cfg.Now()) {
		n.directAttempts.Add(1)
		for k, err := range n.sendDirectAll(ctx, t.record.PeerID, t.record.Relays, envs) {
			if err != nil {
				errs[k] = fmt.Errorf("direct: %w", err)
				left = append(left, k)
				continue
			}
			n.sentDirect.Add(1)
		}
		if len(left) < len(envs) {
			n.reach.reached(t.record.PeerID)
		} else {
			n.reach.failed(t.record.PeerID, n.cfg.Now())
		}
	} else {
		for k := range envs {
			left = append(left, k)
		}
	}
	if len(left) == 0 {
		return errs
	}
	relays := []string(nil)
	if t.record != nil {
		relays = t.record.Relays
	}
	if len(relays) == 0 {
		relays = n.cfg.Relays // same home relays as ours: the common case in a small deployment
	}
	if len(relays) == 0 {
		for _, k := range left {
			errs[k] = errors.Join(errs[k], fmt.Errorf("%w: no route to device %s", chat.ErrUnavailable, t.cert.Device))
		}
		return errs
	}
	addr := mailbox.Address(t.cert.Device)
	tok := n.peerToken(t)
	for _, s := range relays {
		ai, err := addrInfo(s)
		if err != nil {
			for _, k := range left {
				errs[k] = errors.Join(errs[k], err)
			}
			continue
		}
		n.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, time.Hour)
		items := make([]mailbox.Item, len(left))
		for k, i := range left {
			sum := sha256.Sum256(envs[i])
			items[k] = mailbox.Item{To: addr, Envelope: envs[i], Token: tok}
			copy(items[k].ID[:], sum[:])
		}
		dctx, cancel := context.WithTimeout(ctx, depositTimeout)
		var failed []int
		for k, err := range n.mbox.DepositAll(dctx, ai.ID, items) {
			i := left[k]
			if err != nil {
				errs[i] = errors.Join(errs[i], fmt.Errorf("relay %s: %w", ai.ID, err))
				failed = append(failed, i)
				continue
			}
			errs[i] = nil
			n.sentMailbox.Add(1)
		}
		cancel()
		if left = failed; len(left) == 0 {
			break
		}
	}
	return errs
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
	if !n.takesDirect() {
		// The sender deposits in the mailbox instead (see takesDirect).
		_ = s.Reset()
		return
	}
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

// handleMailboxBatch is handleMailbox for many deliveries, committed
// together (receiveBatch); the relay deletes those acked.
func (n *Node) handleMailboxBatch(ctx context.Context, ds []mailbox.Delivery) []error {
	raws := make([][]byte, len(ds))
	for i, d := range ds {
		raws[i] = d.Envelope
	}
	errs := n.receiveBatch(ctx, raws)
	for i, err := range errs {
		if errors.Is(err, errPermanent) {
			n.log.Info("mailbox: envelope rejected", "err", err)
			errs[i] = nil
		}
	}
	return errs
}

func addrInfo(s string) (*peer.AddrInfo, error) {
	return peer.AddrInfoFromString(s)
}

package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/sealed"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/node/localapi"
	"github.com/peergram/peergram/relay/directory"
	"github.com/peergram/peergram/storage"
)

var (
	_ localapi.Backend           = (*Node)(nil)
	_ localapi.CallBackend       = (*Node)(nil)
	_ localapi.GroupCallBackend  = (*Node)(nil)
	_ localapi.ClientCallBackend = (*Node)(nil)
)

// MaxTextSize bounds a text message (bytes of UTF-8), leaving room in the
// sealed body for the payload's framing.
const MaxTextSize = sealed.MaxBodySize - 1024

// Identity implements localapi.Backend.
func (n *Node) Identity(context.Context) (localapi.Identity, error) {
	id := n.keys.account.ID()
	addrs := []string{}
	for _, a := range n.host.Addrs() {
		addrs = append(addrs, a.String()+"/p2p/"+n.host.ID().String())
	}
	return localapi.Identity{AccountID: id.String(), Link: id.Link(), PeerID: n.host.ID().String(), Addrs: addrs, Name: n.keys.name}, nil
}

// Status implements localapi.Backend.
func (n *Node) Status(context.Context) (localapi.Status, error) {
	st := localapi.Status{Relays: make([]localapi.RelayStatus, len(n.relays))}
	for i, r := range n.relays {
		st.Relays[i] = localapi.RelayStatus{Peer: r.ID.String(), Ready: n.relayState[i].ready()}
	}
	st.Received, st.SentDirect, st.SentMailbox = n.received.Load(), n.sentDirect.Load(), n.sentMailbox.Load()
	err := n.db.View(func(tx *storage.Txn) error {
		c, err := tx.Count(n.st.outbox, nil)
		st.Outbox = c
		return err
	})
	return st, err
}

// publish sends the device list, a fresh bundle of all unused prekeys and
// the device's directory record to one relay's directory.
func (n *Node) publish(ctx context.Context, relay peer.ID) error {
	n.mu.Lock()
	bundle := n.keys.prekeys.Bundle(n.keys.device)
	list := n.keys.list // replaced (never changed in place) by refreshOwnList and re-signing
	n.mu.Unlock()
	issued, err := n.nextRecordIssued()
	if err != nil {
		return err
	}
	rec, err := directory.SignRecord(n.keys.device, directory.Record{
		Device: n.keys.device.ID(), PeerID: n.host.ID(), Relays: n.relayAddrs(), Issued: issued,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	if err := n.dir.Publish(ctx, relay, list, bundle, rec); err != nil {
		return fmt.Errorf("publish keys: %w", err)
	}
	return nil
}

// nextRecordIssued returns the Issued time of the next directory record:
// now, or one second after the last one if the clock went back (after
// running ahead), since a directory refuses an older record as a
// rollback.
func (n *Node) nextRecordIssued() (int64, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	issued := n.cfg.Now().Unix()
	key := []byte("record-issued")
	err := n.db.Update(func(tx *storage.Txn) error {
		raw, err := tx.Get(n.st.meta, key)
		switch {
		case err == nil && len(raw) == 8:
			issued = max(issued, int64(binary.BigEndian.Uint64(raw))+1)
		case err != nil && !errors.Is(err, storage.ErrNotFound):
			return err
		}
		return tx.Set(n.st.meta, key, binary.BigEndian.AppendUint64(nil, uint64(issued)))
	})
	return issued, err
}

// resolve finds an account the node knows (a contact, a request, a
// removed contact) by account ID or link, or a contact by alias.
func (n *Node) resolve(tx *storage.Txn, s string) (*contactRecord, error) {
	s = strings.TrimSpace(s)
	if a, err := identity.ParseAccountID(s); err == nil {
		return n.st.getContact(tx, a)
	}
	if s != "" {
		c, err := n.aliasOwner(tx, s)
		if err != nil || c != nil {
			return c, err
		}
	}
	return nil, fmt.Errorf("%w: %q", chat.ErrUnknownContact, s)
}

func (n *Node) contactView(c *contactRecord) chat.Contact {
	devs := 0
	if l, err := c.deviceList(); err == nil && l != nil {
		devs = len(l.Devices)
	}
	return chat.Contact{
		AccountID: c.Account.String(), Name: c.Name, Display: c.displayName(), Link: c.Account.Link(), Devices: devs,
		Safety: identity.SafetyNumber(n.keys.account.ID(), c.Account), Added: c.Added,
	}
}

// messageView fills in how the sender of m is shown: its alias if it is a
// contact, else the name it gives itself, marked as not a contact.
func (n *Node) messageView(c *contactRecord, m chat.Message) chat.Message {
	if m.Outgoing {
		m.FromName, m.FromContact = n.keys.name, true
		return m
	}
	if c.accepted() && c.Name != "" {
		m.FromName, m.FromContact = c.Name, true
		return m
	}
	m.FromName, m.FromContact = c.displayName(), c.accepted()
	return m
}

func checkAlias(name string) error {
	if len(name) > 64 || !utf8.ValidString(name) {
		return fmt.Errorf("%w: name must be at most 64 bytes of UTF-8", chat.ErrInvalid)
	}
	if _, err := identity.ParseAccountID(name); err == nil {
		return fmt.Errorf("%w: a name cannot be an account ID", chat.ErrInvalid)
	}
	return nil
}

// aliasOwner returns the contact whose alias is name, if any.
func (n *Node) aliasOwner(tx *storage.Txn, name string) (*contactRecord, error) {
	all, err := n.st.allContacts(tx)
	if err != nil {
		return nil, err
	}
	for _, c := range all {
		if c.Name == name && c.accepted() {
			return c, nil
		}
	}
	return nil, nil
}

// uniqueAlias returns base, or base with " (2)", " (3)"… appended, whichever
// is first not taken by a contact other than a.
func (n *Node) uniqueAlias(tx *storage.Txn, base string, a identity.AccountID) (string, error) {
	if base == "" {
		return "", nil
	}
	for i := 1; ; i++ {
		cand := base
		if i > 1 {
			suffix := fmt.Sprintf(" (%d)", i)
			cand = truncateUTF8(base, 64-len(suffix)) + suffix
		}
		if _, err := identity.ParseAccountID(cand); err == nil {
			continue
		}
		other, err := n.aliasOwner(tx, cand)
		if err != nil {
			return "", err
		}
		if other == nil || other.Account == a {
			return cand, nil
		}
	}
}

func truncateUTF8(s string, n int) string {
	for len(s) > n {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// AddContact implements localapi.Backend. It looks up the account's keys
// in the relays' directories and stores it as a contact; a contact whose
// keys cannot be found yet is still added (sending retries the lookup).
// Without a name the alias is the name the account gives itself, made
// unique. Adding an account that is already a contact under another name
// fails with chat.ErrExists (rename it instead). Adding an account whose
// messages wait as a request accepts them: delivered receipts go out.
func (n *Node) AddContact(ctx context.Context, idOrLink, name string) (chat.Contact, error) {
	a, err := identity.ParseAccountID(idOrLink)
	if err != nil {
		return chat.Contact{}, fmt.Errorf("%w: %q is not an account ID or peergram:// link", chat.ErrInvalid, idOrLink)
	}
	if a == n.keys.account.ID() {
		return chat.Contact{}, fmt.Errorf("%w: that is your own account", chat.ErrInvalid)
	}
	name = strings.TrimSpace(name)
	if err := checkAlias(name); err != nil {
		return chat.Contact{}, err
	}
	var existing *contactRecord
	if err := n.db.View(func(tx *storage.Txn) (err error) {
		existing, err = n.st.getContact(tx, a)
		if errors.Is(err, chat.ErrUnknownContact) {
			return nil
		}
		return err
	}); err != nil {
		return chat.Contact{}, err
	}
	if existing != nil && existing.accepted() {
		if name != "" && name != existing.Name {
			return chat.Contact{}, fmt.Errorf("%w: %s is already a contact named %q (use 'contacts rename' to change it)", chat.ErrExists, a, existing.Name)
		}
		if existing.List == nil { // keys not found when it was added: try again
			if fresh, err := n.refreshContact(ctx, a); err == nil {
				existing = fresh
			}
		}
		return n.contactView(existing), nil
	}
	if _, err := n.refreshContact(ctx, a); err != nil {
		n.log.Info("contact keys not found yet", "contact", a.String(), "err", err)
	}
	var c *contactRecord
	var receipts []*job
	err = n.db.Update(func(tx *storage.Txn) error {
		receipts = nil
		var err error
		c, err = n.st.getContact(tx, a)
		if errors.Is(err, chat.ErrUnknownContact) {
			c = &contactRecord{Account: a, Added: n.cfg.Now().UTC(), State: stateNone}
		} else if err != nil {
			return err
		}
		if c.accepted() { // added meanwhile
			return nil
		}
		receipts, err = n.acceptTx(tx, c, name)
		return err
	})
	if err != nil {
		return chat.Contact{}, err
	}
	if len(receipts) > 0 {
		n.notify(c.Account)
	}
	return n.contactView(c), nil
}

// acceptTx makes c a contact with alias name (or its own name, made
// unique). If its messages waited as a request, delivered receipts for
// them are enqueued.
func (n *Node) acceptTx(tx *storage.Txn, c *contactRecord, name string) ([]*job, error) {
	wasRequest := c.state() == stateRequest || c.state() == stateIgnored
	if name != "" {
		if other, err := n.aliasOwner(tx, name); err != nil {
			return nil, err
		} else if other != nil && other.Account != c.Account {
			return nil, fmt.Errorf("%w: the name %q is taken by another contact", chat.ErrExists, name)
		}
		c.Name = name
	} else {
		var err error
		if c.Name, err = n.uniqueAlias(tx, c.displayName(), c.Account); err != nil {
			return nil, err
		}
	}
	c.State, c.Unsolicited = stateContact, false
	c.Added = n.cfg.Now().UTC()
	if err := n.st.putContact(tx, c); err != nil {
		return nil, err
	}
	if !wasRequest {
		return nil, nil
	}
	recs, err := n.st.chatMessages(tx, c.Account)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, r := range recs {
		if !r.Outgoing {
			ids = append(ids, r.ID)
		}
	}
	return n.receiptJobs(tx, c.Account, chat.StatusDelivered, ids, n.cfg.Now().UnixMilli())
}

// RenameContact implements localapi.Backend.
func (n *Node) RenameContact(_ context.Context, contact, name string) (chat.Contact, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return chat.Contact{}, fmt.Errorf("%w: the new name must not be empty", chat.ErrInvalid)
	}
	if err := checkAlias(name); err != nil {
		return chat.Contact{}, err
	}
	var c *contactRecord
	err := n.db.Update(func(tx *storage.Txn) error {
		var err error
		if c, err = n.resolveContact(tx, contact); err != nil {
			return err
		}
		if other, err := n.aliasOwner(tx, name); err != nil {
			return err
		} else if other != nil && other.Account != c.Account {
			return fmt.Errorf("%w: the name %q is taken by another contact", chat.ErrExists, name)
		}
		c.Name = name
		return n.st.putContact(tx, c)
	})
	if err != nil {
		return chat.Contact{}, err
	}
	return n.contactView(c), nil
}

// RemoveContact implements localapi.Backend. The chat and its history
// stay; the alias is freed; later messages from the account arrive as a
// message request.
func (n *Node) RemoveContact(_ context.Context, contact string) error {
	err := n.db.Update(func(tx *storage.Txn) error {
		c, err := n.resolveContact(tx, contact)
		if err != nil {
			return err
		}
		c.State, c.Name, c.Unsolicited = stateNone, "", false
		if err := n.st.putContact(tx, c); err != nil {
			return err
		}
		// It knows our delivery token: a new one, so its deposits count
		// as a stranger's again.
		return n.rotateToken(tx)
	})
	if err == nil {
		n.tokenRotated()
	}
	return err
}

// resolveContact is resolve restricted to contacts.
func (n *Node) resolveContact(tx *storage.Txn, s string) (*contactRecord, error) {
	c, err := n.resolve(tx, s)
	if err != nil {
		return nil, err
	}
	if !c.accepted() {
		return nil, fmt.Errorf("%w: %q is not a contact", chat.ErrUnknownContact, s)
	}
	return c, nil
}

// Requests implements localapi.Backend: accounts that wrote first and
// were neither added nor ignored.
func (n *Node) Requests(context.Context) ([]chat.Contact, error) {
	out := []chat.Contact{}
	err := n.db.View(func(tx *storage.Txn) error {
		all, err := n.st.allContacts(tx)
		for _, c := range all {
			if c.state() == stateRequest {
				out = append(out, n.contactView(c))
			}
		}
		return err
	})
	return out, err
}

// IgnoreRequest implements localapi.Backend: the account's later messages
// are dropped unread (no receipts); adding it as a contact undoes this.
func (n *Node) IgnoreRequest(_ context.Context, account string) error {
	return n.db.Update(func(tx *storage.Txn) error {
		c, err := n.resolve(tx, account)
		if err != nil {
			return err
		}
		if c.accepted() {
			return fmt.Errorf("%w: %s is a contact (remove it first)", chat.ErrInvalid, c.Account)
		}
		c.State = stateIgnored
		// Its sessions go too: what it sends next is dropped unread.
		peers, err := n.st.peerSessions(tx, c.Account)
		if err != nil {
			return err
		}
		for _, p := range peers {
			if err := n.st.dropSessions(tx, p); err != nil {
				return err
			}
		}
		return n.st.putContact(tx, c)
	})
}

// Contacts implements localapi.Backend: accounts the user added (or
// whose request the user accepted).
func (n *Node) Contacts(context.Context) ([]chat.Contact, error) {
	out := []chat.Contact{}
	err := n.db.View(func(tx *storage.Txn) error {
		all, err := n.st.allContacts(tx)
		for _, c := range all {
			if c.accepted() {
				out = append(out, n.contactView(c))
			}
		}
		return err
	})
	return out, err
}

// encodePayload encodes p as the JSON a sealed message carries, without
// HTML escaping (which would turn "<" into six bytes).
func encodePayload(p payload) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Send implements localapi.Backend: the message is stored in the chat and
// the outbox, then delivered in the background. Concurrent sends are
// committed together (sends.go). The size limit applies to the encoded
// payload, so a message that is accepted always fits in an envelope.
// Writing to an account whose message request waits accepts the request.
func (n *Node) Send(ctx context.Context, contact, text string) (chat.Message, error) {
	if strings.TrimSpace(text) == "" {
		return chat.Message{}, fmt.Errorf("%w: empty message", chat.ErrInvalid)
	}
	if !utf8.ValidString(text) {
		return chat.Message{}, fmt.Errorf("%w: text is not UTF-8", chat.ErrInvalid)
	}
	if len(text) > MaxTextSize {
		return chat.Message{}, fmt.Errorf("%w: %d bytes (at most %d)", chat.ErrTooLarge, len(text), MaxTextSize)
	}
	var id chat.MessageID
	if _, err := n.rand.Read(id[:]); err != nil {
		return chat.Message{}, err
	}
	return n.submitSend(ctx, &sendReq{contact: contact, text: text, id: id, now: n.cfg.Now()})
}

// Messages implements localapi.Backend. With markRead, incoming messages
// not yet seen become seen and, if the sender is a contact, a read receipt
// goes to it.
func (n *Node) Messages(_ context.Context, contact string, markRead bool) ([]chat.Message, error) {
	var out []chat.Message
	var unread []string
	var c *contactRecord
	err := n.db.View(func(tx *storage.Txn) error {
		var err error
		if c, err = n.resolve(tx, contact); err != nil {
			return err
		}
		recs, err := n.st.chatMessages(tx, c.Account)
		for _, r := range recs {
			out = append(out, n.messageView(c, r.Message))
			if !r.Outgoing && r.Status == chat.StatusReceived {
				unread = append(unread, r.ID)
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	// A call's entry carries the call's ID, which the caller drew: one
	// that is a message's ID too is left out (review finding: a contact
	// dated such a call early and the chat's pages lost their place).
	ids := make(map[string]bool, len(out))
	for _, m := range out {
		ids[m.ID] = true
	}
	for _, ce := range n.callEntries(c.Account) {
		if !ids[ce.ID] {
			ids[ce.ID] = true
			out = append(out, ce)
		}
	}
	slices.SortFunc(out, func(a, b chat.Message) int {
		switch {
		case chat.Less(a, b):
			return -1
		case chat.Less(b, a):
			return 1
		}
		return 0
	})
	if markRead && len(unread) > 0 {
		if err := n.markRead(c.Account, unread); err != nil {
			return nil, err
		}
		for i := range out {
			if slices.Contains(unread, out[i].ID) {
				out[i].Status = chat.StatusSeen
			}
		}
	}
	if out == nil {
		out = []chat.Message{}
	}
	return out, nil
}

// MarkRead implements localapi.Backend.
func (n *Node) MarkRead(_ context.Context, contact string, ids []chat.MessageID) error {
	var acct identity.AccountID
	if err := n.db.View(func(tx *storage.Txn) error {
		c, err := n.resolve(tx, contact)
		if err == nil {
			acct = c.Account
		}
		return err
	}); err != nil {
		return err
	}
	strs := make([]string, len(ids))
	for i, id := range ids {
		strs[i] = id.String()
	}
	return n.markRead(acct, strs)
}

func (n *Node) markRead(acct identity.AccountID, ids []string) error {
	var evs []chat.Event
	err := n.db.Update(func(tx *storage.Txn) error {
		evs = nil
		c, err := n.st.getContact(tx, acct)
		if err != nil {
			return err
		}
		var changed []string
		for _, s := range ids {
			id, err := chat.ParseMessageID(s)
			if err != nil {
				return fmt.Errorf("%w: %w", chat.ErrInvalid, err)
			}
			rec, err := n.st.getMessage(tx, acct, id)
			if errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("%w: no message %s in this chat", chat.ErrInvalid, s)
			}
			if err != nil {
				return err
			}
			if rec.Outgoing || rec.Status == chat.StatusSeen {
				continue
			}
			rec.Status = chat.StatusSeen
			if err := n.st.putStatus(tx, acct, rec); err != nil {
				return err
			}
			changed = append(changed, s)
			evs = append(evs, chat.Event{Type: chat.EventStatus, Message: n.messageView(c, rec.Message)})
		}
		if len(changed) == 0 || !c.accepted() {
			return nil // no read receipts to accounts that are not contacts
		}
		_, err = n.receiptJobs(tx, acct, chat.StatusRead, changed, n.cfg.Now().UnixMilli())
		return err
	})
	if err != nil {
		return err
	}
	for _, e := range evs {
		n.events.publish(e)
	}
	n.notify(acct)
	return nil
}

// Subscribe implements localapi.Backend.
func (n *Node) Subscribe(ctx context.Context) <-chan chat.Event { return n.events.subscribe(ctx) }

package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/sealed"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/node/localapi"
	"github.com/peergram/peergram/relay/directory"
	"github.com/peergram/peergram/storage"
)

var _ localapi.Backend = (*Node)(nil)

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

// publish sends the device list, a fresh bundle of all unused prekeys and
// the device's directory record to one relay's directory.
func (n *Node) publish(ctx context.Context, relay peer.ID) error {
	n.mu.Lock()
	bundle := n.keys.prekeys.Bundle(n.keys.device)
	n.mu.Unlock()
	rec, err := directory.SignRecord(n.keys.device, directory.Record{
		Device: n.keys.device.ID(), PeerID: n.host.ID(), Relays: n.relayAddrs(), Issued: n.cfg.Now().Unix(),
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	if err := n.dir.Publish(ctx, relay, n.keys.list, bundle, rec); err != nil {
		return fmt.Errorf("publish keys: %w", err)
	}
	return nil
}

// resolve finds a contact by alias or account ID (or link).
func (n *Node) resolve(tx *storage.Txn, s string) (*contactRecord, error) {
	s = strings.TrimSpace(s)
	if a, err := identity.ParseAccountID(s); err == nil {
		return n.st.getContact(tx, a)
	}
	all, err := n.st.allContacts(tx)
	if err != nil {
		return nil, err
	}
	for _, c := range all {
		if c.Name != "" && c.Name == s {
			return c, nil
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
		AccountID: c.Account.String(), Name: c.Name, Link: c.Account.Link(), Devices: devs,
		Safety: identity.SafetyNumber(n.keys.account.ID(), c.Account), Added: c.Added,
	}
}

// AddContact implements localapi.Backend. It stores the contact at once
// and looks up its keys in the relays' directories; a contact whose keys
// cannot be found yet is still added (sending retries the lookup).
func (n *Node) AddContact(ctx context.Context, idOrLink, name string) (chat.Contact, error) {
	a, err := identity.ParseAccountID(idOrLink)
	if err != nil {
		return chat.Contact{}, fmt.Errorf("%w: %q is not an account ID or peergram:// link", chat.ErrInvalid, idOrLink)
	}
	if a == n.keys.account.ID() {
		return chat.Contact{}, fmt.Errorf("%w: that is your own account", chat.ErrInvalid)
	}
	name = strings.TrimSpace(name)
	if len(name) > 64 || !utf8.ValidString(name) {
		return chat.Contact{}, fmt.Errorf("%w: name must be at most 64 bytes of UTF-8", chat.ErrInvalid)
	}
	if _, err := identity.ParseAccountID(name); err == nil {
		return chat.Contact{}, fmt.Errorf("%w: a name cannot be an account ID", chat.ErrInvalid)
	}
	var c *contactRecord
	err = n.db.Update(func(tx *storage.Txn) error {
		if name != "" {
			if other, err := n.resolve(tx, name); err == nil && other.Account != a {
				return fmt.Errorf("%w: the name %q is taken by another contact", chat.ErrInvalid, name)
			}
		}
		c, err = n.st.getContact(tx, a)
		if errors.Is(err, chat.ErrUnknownContact) {
			c = &contactRecord{Account: a, Added: n.cfg.Now().UTC()}
		} else if err != nil {
			return err
		}
		c.Unsolicited = false
		if name != "" {
			c.Name = name
		}
		return n.st.putContact(tx, c)
	})
	if err != nil {
		return chat.Contact{}, err
	}
	if fresh, err := n.refreshContact(ctx, a); err == nil {
		c = fresh
	} else {
		n.log.Info("contact keys not found yet", "contact", a.String(), "err", err)
	}
	return n.contactView(c), nil
}

// Contacts implements localapi.Backend.
func (n *Node) Contacts(context.Context) ([]chat.Contact, error) {
	var out []chat.Contact
	err := n.db.View(func(tx *storage.Txn) error {
		all, err := n.st.allContacts(tx)
		for _, c := range all {
			out = append(out, n.contactView(c))
		}
		return err
	})
	if out == nil {
		out = []chat.Contact{}
	}
	return out, err
}

// Send implements localapi.Backend: the message is stored in the chat and
// the outbox in one transaction, then delivered in the background.
func (n *Node) Send(_ context.Context, contact, text string) (chat.Message, error) {
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
	now := n.cfg.Now()
	var rec *messageRecord
	err := n.db.Update(func(tx *storage.Txn) error {
		c, err := n.resolve(tx, contact)
		if err != nil {
			return err
		}
		seq, err := n.st.nextChatSeq(tx, c.Account)
		if err != nil {
			return err
		}
		body, err := json.Marshal(payload{Kind: "text", Seq: seq, Text: text})
		if err != nil {
			return err
		}
		rec = &messageRecord{Message: chat.Message{
			ID: id.String(), Chat: c.Account.String(), From: n.keys.account.ID().String(), Outgoing: true,
			Text: text, SentAt: time.UnixMilli(now.UnixMilli()).UTC(), Status: chat.StatusPending, Seq: seq,
		}}
		if err := n.st.putMessage(tx, c.Account, rec); err != nil {
			return err
		}
		return n.enqueue(tx, &job{ID: id, To: c.Account, Payload: body, SentAt: now.UnixMilli(), Text: true})
	})
	if err != nil {
		return chat.Message{}, err
	}
	n.events.publish(chat.Event{Type: chat.EventMessage, Message: rec.Message})
	n.kick()
	return rec.Message, nil
}

// Messages implements localapi.Backend. With markRead, incoming messages
// not yet seen become seen and a read receipt goes to their sender.
func (n *Node) Messages(_ context.Context, contact string, markRead bool) ([]chat.Message, error) {
	var out []chat.Message
	var unread []string
	var acct identity.AccountID
	err := n.db.View(func(tx *storage.Txn) error {
		c, err := n.resolve(tx, contact)
		if err != nil {
			return err
		}
		acct = c.Account
		recs, err := n.st.chatMessages(tx, c.Account)
		for _, r := range recs {
			out = append(out, r.Message)
			if !r.Outgoing && r.Status == chat.StatusReceived {
				unread = append(unread, r.ID)
			}
		}
		return err
	})
	if err != nil {
		return nil, err
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
		if err := n.markRead(acct, unread); err != nil {
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
			if err := n.st.putMessage(tx, acct, rec); err != nil {
				return err
			}
			changed = append(changed, s)
			evs = append(evs, chat.Event{Type: chat.EventStatus, Message: rec.Message})
		}
		if len(changed) == 0 {
			return nil
		}
		_, err := n.receiptJob(tx, acct, chat.StatusRead, changed, n.cfg.Now().UnixMilli())
		return err
	})
	if err != nil {
		return err
	}
	for _, e := range evs {
		n.events.publish(e)
	}
	n.kick()
	return nil
}

// Subscribe implements localapi.Backend.
func (n *Node) Subscribe(ctx context.Context) <-chan chat.Event { return n.events.subscribe(ctx) }

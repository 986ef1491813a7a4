package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/history"
	"github.com/peergram/peergram/storage"
)

// Channels are groups whose log says so at creation (groupstate
// FlagChannel): subscribers (members) read, only admins post, add, pin
// and invite. They ride the same machinery as groups — a gossip topic,
// relay history, Sender Keys chains (only admins ever start one), invite
// links to join, and public names (a public invite link bound to a name
// at the relays, relay/history). What they do not have yet: the epoch-key
// tier the design calls for above ~1,000 members.

// CreateChannel creates a channel owned by this account.
func (n *Node) CreateChannel(ctx context.Context, title string) (chat.Group, error) {
	return n.createGroup(ctx, title, groupstate.FlagChannel)
}

// ForwardGroupMessage forwards a message of a group or channel into a
// chat: a contact (account ID or alias) or a group (ID or title). The
// copy is a new message of this account, its text the original's, that
// says where it came from beside the text (Forwarded: the source's title,
// the original's time and, from a group, its sender) — the forwarder's word,
// shown as a forward, so that text typed to look like one is never taken
// for one. A contact is looked for first: group titles are chosen by
// others, and an outside review had a group titled like a contact catch
// a forward meant for that contact.
func (n *Node) ForwardGroupMessage(ctx context.Context, group, message, to string) (string, error) {
	var text string
	var fwd *forwardRef
	toGroup := false
	err := n.db.View(func(tx *storage.Txn) error {
		l, err := n.findGroup(tx, group)
		if err != nil {
			return err
		}
		gid := l.Group()
		fwd = &forwardRef{From: n.groupTitle(tx, l.State())}
		if len(fwd.From) > chat.MaxForwardFrom || !utf8.ValidString(fwd.From) || fwd.From == "" {
			fwd.From = "a group"
		}
		found := false
		err = n.eachGroupMessage(tx, gid, func(gm *groupMessage) {
			if gm.ID == strings.ToLower(message) && gm.shown() {
				text, found = gm.Text, true
				if gm.Poll != nil {
					text = "poll: " + gm.Poll.Question
				}
				fwd.At = gm.SentAt
				if !l.State().Channel() {
					// A group's post names its sender, as Telegram's
					// forwards do; a channel's speaks for the channel
					// (which admin posted stays among its admins).
					fwd.Author = gm.From.String()
				}
			}
		})
		if err == nil && !found {
			err = fmt.Errorf("%w: no message %s in this group", chat.ErrInvalid, message)
		}
		if err != nil {
			return err
		}
		toGroup, err = n.forwardsToGroup(tx, to)
		return err
	})
	if err != nil {
		return "", err
	}
	limit := maxGroupText
	if !toGroup {
		limit = min(limit, MaxTextSize)
	}
	if len(text) > limit {
		text = strings.ToValidUTF8(text[:limit], "") // (a cut rune goes)
	}
	if strings.TrimSpace(text) == "" {
		return "", fmt.Errorf("%w: the message has no text to forward", chat.ErrInvalid)
	}
	if toGroup {
		m, err := n.postGroup(ctx, to, &groupBody{Text: text, Fwd: fwd}, nil)
		if err != nil {
			return "", err
		}
		return m.ID, nil
	}
	var id chat.MessageID
	if _, err := n.rand.Read(id[:]); err != nil {
		return "", err
	}
	m, err := n.submitSend(ctx, &sendReq{contact: to, text: text, forward: fwd, id: id, now: n.cfg.Now()})
	if err != nil {
		return "", err
	}
	return m.ID, nil
}

// forwardsToGroup tells where a forward to to goes: a contact (an account
// ID, or a contact's alias) before a group of this node (its ID or
// title); neither is chat.ErrUnknownContact.
func (n *Node) forwardsToGroup(tx *storage.Txn, to string) (bool, error) {
	to = strings.TrimSpace(to)
	if _, err := identity.ParseAccountID(to); err == nil {
		return false, nil
	}
	if _, err := n.resolve(tx, to); err == nil {
		return false, nil
	}
	l, err := n.findGroup(tx, to)
	switch {
	case err == nil && l.State().Role(n.keys.account.ID()) != groupstate.RoleNone:
		return true, nil
	case err == nil || errors.Is(err, chat.ErrUnknownGroup):
		return false, fmt.Errorf("%w: %q is neither a contact nor a group of yours", chat.ErrUnknownContact, to)
	}
	return false, err
}

// forwardRef is a forward's origin on the wire (a "text" payload's and a
// group body's "fwd"): chat.Forward, compact and bounded.
type forwardRef struct {
	From   string `json:"f"`
	Author string `json:"a,omitempty"`
	At     int64  `json:"t,omitempty"` // Unix ms
}

// check bounds a forward's origin as it arrives: a title of 1 to
// chat.MaxForwardFrom bytes of UTF-8, an account ID, a time within what
// JSON times hold.
func (f *forwardRef) check() error {
	switch {
	case f.From == "" || len(f.From) > chat.MaxForwardFrom || !utf8.ValidString(f.From):
		return fmt.Errorf("a forward's source is 1 to %d bytes of UTF-8", chat.MaxForwardFrom)
	case f.At < 0 || f.At > maxForwardTime:
		return errors.New("a forward's time is out of range")
	}
	if f.Author != "" {
		if _, err := identity.ParseAccountID(f.Author); err != nil {
			return fmt.Errorf("a forward's author: %w", err)
		}
	}
	return nil
}

// maxForwardTime is the last Unix ms a forward's time may name (year 9999).
const maxForwardTime = 253402300799999

// view is f as the API shows it (nil for nil).
func (f *forwardRef) view() *chat.Forward {
	if f == nil {
		return nil
	}
	v := &chat.Forward{From: f.From, Author: f.Author}
	if f.At > 0 {
		v.SentAt = time.UnixMilli(f.At).UTC()
	}
	return v
}

// PublishChannelName makes a channel (or group) public under name: a
// public invite link (it does not expire) bound to the name at every home
// relay, so anyone joins with `channel join @name`. The relays check that
// an admin signed it and that the link's invite is in the group's log.
func (n *Node) PublishChannelName(ctx context.Context, group, name string) (chat.Group, error) {
	name = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(name), "@"))
	if !history.ValidName(name) {
		return chat.Group{}, fmt.Errorf("%w: a public name is 5 to 32 of a-z, 0-9 and _, starting with a letter", chat.ErrInvalid)
	}
	if len(n.relays) == 0 {
		return chat.Group{}, fmt.Errorf("%w: no home relay to publish the name at", chat.ErrUnavailable)
	}
	inv, err := n.CreateInvite(ctx, group, 0)
	if err != nil {
		return chat.Group{}, err
	}
	raw, _ := hex.DecodeString(inv.Group)
	gid := groupstate.GroupID(raw)
	var entries, lists [][]byte
	if err := n.db.View(func(tx *storage.Txn) error {
		l, err := n.findGroup(tx, inv.Group)
		if err != nil {
			return err
		}
		for _, e := range l.Entries(0) {
			b, err := e.MarshalBinary()
			if err != nil {
				return err
			}
			entries = append(entries, b)
		}
		lists = n.memberLists(tx, l.State(), nil)
		return nil
	}); err != nil {
		return chat.Group{}, err
	}
	c := history.NewClient(n.host)
	var errs []error
	published := 0
	for _, r := range n.relays {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := c.Register(pctx, r.ID, gid, entries, lists, n.keys.device)
		if err == nil {
			err = c.PublishName(pctx, r.ID, name, gid, inv.Link, n.keys.device)
		}
		cancel()
		var se *history.StatusError
		switch {
		case err == nil:
			published++
		case errors.As(err, &se) && se.Code == history.CodeFull:
			return chat.Group{}, fmt.Errorf("%w: the name @%s is taken", chat.ErrInvalid, name)
		case errors.As(err, &se) && se.Code == history.CodeInvalid:
			return chat.Group{}, fmt.Errorf("%w: %w", chat.ErrInvalid, err)
		default:
			errs = append(errs, fmt.Errorf("relay %s: %w", r.ID, err))
		}
	}
	if published == 0 {
		return chat.Group{}, fmt.Errorf("%w: publishing @%s: %w", chat.ErrUnavailable, name, errors.Join(errs...))
	}
	if err := n.db.Update(func(tx *storage.Txn) error {
		return tx.Set(n.st.groupKeys, publicNameKey(gid), []byte(name))
	}); err != nil {
		return chat.Group{}, err
	}
	return n.Group(ctx, inv.Group)
}

// publicNameKey (groups.sk: group || 'N') is the public name this node
// published for a group, or joined it by.
func publicNameKey(g groupstate.GroupID) []byte { return append(append([]byte(nil), g[:]...), 'N') }

// joinByName looks a public name up at the home relays and joins by its
// link.
func (n *Node) joinByName(ctx context.Context, name string) (chat.Group, error) {
	name = strings.ToLower(strings.TrimPrefix(name, "@"))
	if !history.ValidName(name) {
		return chat.Group{}, fmt.Errorf("%w: %q is not a public name", chat.ErrInvalid, name)
	}
	c := history.NewClient(n.host)
	var errs []error
	for _, r := range n.relays {
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		rec, err := c.LookupName(lctx, r.ID, name)
		cancel()
		if err == nil {
			g, err := n.joinByLink(ctx, rec.Link, rec)
			if err != nil {
				return g, err
			}
			// Shown with the channel, as its publisher sees it (the
			// record's signer is an admin: joinByLink checked).
			raw, _ := hex.DecodeString(g.ID)
			if err := n.db.Update(func(tx *storage.Txn) error {
				return tx.Set(n.st.groupKeys, publicNameKey(groupstate.GroupID(raw)), []byte(name))
			}); err != nil {
				return chat.Group{}, err
			}
			g.PublicName = name
			return g, nil
		}
		errs = append(errs, err)
	}
	for _, err := range errs {
		if !errors.Is(err, history.ErrUnknownGroup) {
			return chat.Group{}, fmt.Errorf("%w: looking up @%s: %w", chat.ErrUnavailable, name, errors.Join(errs...))
		}
	}
	return chat.Group{}, fmt.Errorf("%w: no channel is called @%s at your relays", chat.ErrUnknownGroup, name)
}

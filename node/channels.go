package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
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
// chat: a contact (alias or account ID) or a group (ID or title). The
// copy is a new message of this account that names where it came from.
func (n *Node) ForwardGroupMessage(ctx context.Context, group, message, to string) (string, error) {
	var text, from string
	err := n.db.View(func(tx *storage.Txn) error {
		l, err := n.findGroup(tx, group)
		if err != nil {
			return err
		}
		from = n.groupTitle(tx, l.State())
		found := false
		err = n.eachGroupMessage(tx, l.Group(), func(gm *groupMessage) {
			if gm.ID == strings.ToLower(message) && gm.shown() {
				text, found = gm.Text, true
				if gm.Poll != nil {
					text = "poll: " + gm.Poll.Question
				}
			}
		})
		if err == nil && !found {
			err = fmt.Errorf("%w: no message %s in this group", chat.ErrInvalid, message)
		}
		return err
	})
	if err != nil {
		return "", err
	}
	copyText := "Forwarded from " + from + ":\n" + text
	if len(copyText) > maxGroupText {
		copyText = copyText[:maxGroupText]
	}
	// A group or channel of this node, else a contact.
	if g, err := n.PostGroup(ctx, to, chat.GroupPost{Text: copyText}); err == nil {
		return g.ID, nil
	} else if !errors.Is(err, chat.ErrUnknownGroup) {
		return "", err
	}
	m, err := n.Send(ctx, to, copyText)
	if err != nil {
		return "", err
	}
	return m.ID, nil
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
// published for a group.
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
			return n.joinByLink(ctx, rec.Link, rec)
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

package node

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// Channels are groups whose log says so at creation (groupstate
// FlagChannel): subscribers (members) read, only admins post, add, pin
// and invite. They ride the same machinery as groups — a gossip topic,
// relay history, Sender Keys chains (only admins ever start one), invite
// links to join. What they do not have yet: the epoch-key tier the design
// calls for above ~1,000 members, and public names in the relay
// directory (see the notes of issue 8).

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

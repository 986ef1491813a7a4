package node

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// Invitations: a group's log that adds this account, sent by a member,
// when the account that added it is not a contact. Telegram lets anyone
// add anyone (a privacy setting narrows it); here a stranger's group is
// held as an invitation (groups.inv) that the user accepts with
// JoinGroup, and until then nothing of it reaches the user but its
// listing. Invitations are bounded in number and expire.

const (
	maxInvitations = 100
	invitationTTL  = 30 * 24 * time.Hour
)

// invitation is a stored invitation (groups.inv: group(32) → JSON).
type invitation struct {
	Log  [][]byte           `json:"log"`
	Info []infoKey          `json:"info,omitempty"`
	By   identity.AccountID `json:"by"` // the account that added this one
	At   int64              `json:"at"` // received, Unix ms
}

func (n *Node) storeInvitation(tx *storage.Txn, id groupstate.GroupID, by identity.AccountID, p payload) error {
	if ok, err := tx.Has(n.st.groupInv, id[:]); err != nil || ok {
		return err // the first invitation stays
	}
	count, err := tx.Count(n.st.groupInv, nil)
	if err != nil {
		return err
	}
	if n.largeLog(p.Log) {
		n.log.Info("group invitation dropped: its log is too long to keep as an invitation", "group", hex.EncodeToString(id[:8]), "entries", len(p.Log))
		return nil
	}
	if count >= maxInvitations {
		n.log.Info("group invitation dropped: too many pending", "group", hex.EncodeToString(id[:8]))
		return nil
	}
	raw, err := json.Marshal(invitation{Log: p.Log, Info: p.Info, By: by, At: n.cfg.Now().UnixMilli()})
	if err != nil {
		return err
	}
	n.log.Info("group invitation", "group", hex.EncodeToString(id[:8]), "by", by.String())
	return tx.SetTTL(n.st.groupInv, id[:], raw, invitationTTL)
}

// loadInvitation reads and verifies a stored invitation.
func (n *Node) loadInvitation(tx *storage.Txn, id []byte) (*invitation, *groupstate.Log, error) {
	raw, err := tx.Get(n.st.groupInv, id)
	if err != nil {
		return nil, nil, err
	}
	var inv invitation
	if err := json.Unmarshal(raw, &inv); err != nil {
		return nil, nil, err
	}
	entries := make([]*groupstate.Entry, len(inv.Log))
	for i, b := range inv.Log {
		if entries[i], err = n.parseEntry(b); err != nil {
			return nil, nil, err
		}
	}
	l, err := groupstate.Replay(entries)
	if err != nil {
		return nil, nil, err
	}
	return &inv, l, nil
}

// invitedBy reports whether an invitation to group lists account as a
// member (its Sender Keys chain may then be kept before the user joins).
func (n *Node) invitedBy(tx *storage.Txn, group groupstate.GroupID, account identity.AccountID) bool {
	_, l, err := n.loadInvitation(tx, group[:])
	return err == nil && l.State().Role(account) != groupstate.RoleNone
}

// invitations lists the pending invitations as groups with role
// "invited".
func (n *Node) invitations(tx *storage.Txn) ([]chat.Group, error) {
	var ids [][]byte
	if err := tx.Iterate(n.st.groupInv, nil, func(k, _ []byte) error {
		ids = append(ids, append([]byte(nil), k...))
		return nil
	}); err != nil {
		return nil, err
	}
	var out []chat.Group
	for _, id := range ids {
		inv, l, err := n.loadInvitation(tx, id)
		if err != nil {
			continue
		}
		title, _ := openInfo(inv.Info, l.State().Title)
		g := chat.Group{ID: hex.EncodeToString(id), Title: title, Role: "invited", Members: []chat.GroupMember{}}
		for a, r := range l.State().Members {
			name := ""
			if a == inv.By {
				name = "(invited you)"
			}
			g.Members = append(g.Members, chat.GroupMember{AccountID: a.String(), Name: name, Role: r.String()})
		}
		out = append(out, g)
	}
	return out, nil
}

// JoinGroup accepts an invitation, named by the group's ID or its title,
// or joins by an invite link (grouplink.go).
func (n *Node) JoinGroup(ctx context.Context, groupOrLink string) (chat.Group, error) {
	want := strings.TrimSpace(groupOrLink)
	if strings.Contains(want, "://") {
		return n.joinByLink(ctx, want, nil)
	}
	if strings.HasPrefix(want, "@") {
		return n.joinByName(ctx, want)
	}
	var st *groupstate.State
	var already bool
	err := n.db.Update(func(tx *storage.Txn) error {
		already = false
		invs, err := n.invitations(tx)
		if err != nil {
			return err
		}
		var found []string
		for _, g := range invs {
			if strings.EqualFold(g.ID, want) || g.Title == want {
				found = append(found, g.ID)
			}
		}
		switch len(found) {
		case 0:
			if _, err := n.findGroup(tx, want); err == nil {
				return fmt.Errorf("%w: you are a member of %q already", chat.ErrInvalid, want)
			}
			return fmt.Errorf("%w: no invitation to %q", chat.ErrUnknownGroup, want)
		case 1:
		default:
			return fmt.Errorf("%w: %d invitations are titled %q; name one by its ID", chat.ErrUnknownGroup, len(found), want)
		}
		id, _ := hex.DecodeString(found[0])
		inv, l, err := n.loadInvitation(tx, id)
		if err != nil {
			return err
		}
		gid := l.Group()
		// A log of the group held already (joined meanwhile through a
		// contact, or one this account left): a member keeps its own,
		// and the invitation goes; otherwise the invitation's log
		// replaces it whole.
		held, err := n.loadGroupTx(tx, gid)
		switch {
		case err == nil && held.State().Role(n.keys.account.ID()) != groupstate.RoleNone:
			already = true
			return tx.Delete(n.st.groupInv, id)
		case err != nil && !errors.Is(err, chat.ErrUnknownGroup):
			n.log.Warn("group: a stored log replaced by an invitation's", "err", err)
		}
		if err := n.clearGroupLog(tx, gid); err != nil {
			return err
		}
		for _, e := range l.Entries(0) {
			if err := tx.Set(n.st.groupLog, groupEntryKey(gid, e.Seq), inv.Log[e.Seq]); err != nil {
				return err
			}
		}
		if err := n.addInfoKeys(tx, gid, inv.Info); err != nil {
			return err
		}
		if err := tx.Delete(n.st.groupInv, id); err != nil {
			return err
		}
		st = l.State()
		return nil
	})
	if err != nil {
		return chat.Group{}, err
	}
	if already {
		return chat.Group{}, fmt.Errorf("%w: you are a member of %q already", chat.ErrInvalid, want)
	}
	n.groupChanged(n.runCtx, st)
	return n.groupView(st)
}

// learnMembers fetches, from the home relays' directories, the device
// lists of a group's members that this node knows nothing of (members
// that are not contacts): validators, Sender Keys distribution and
// direct dials need them. They are kept as accounts that are not
// contacts.
func (n *Node) learnMembers(ctx context.Context, st *groupstate.State) {
	self := n.keys.account.ID()
	var unknown []identity.AccountID
	_ = n.db.View(func(tx *storage.Txn) error {
		for a := range st.Members {
			if a == self {
				continue
			}
			c, err := n.st.getContact(tx, a)
			if errors.Is(err, chat.ErrUnknownContact) || (err == nil && len(c.List) == 0) {
				unknown = append(unknown, a)
			}
		}
		return nil
	})
	for _, a := range unknown {
		if ctx.Err() != nil {
			return
		}
		if _, err := n.refreshContact(ctx, a); err != nil {
			n.log.Info("group: a member's keys not found", "account", a.String(), "err", err)
		}
	}
	if len(unknown) > 0 {
		n.refreshDevices()
	}
}

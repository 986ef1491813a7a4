package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// Groups. A group's state is its log (crypto/groupstate), stored entry by
// entry under groups.log and verified whole when read: the store holds
// what the node accepted, and a replay re-checks every signature and
// right, so a store edited behind the node's back is refused, not
// trusted. What is built so far: creating a group and reading groups
// back. Members, messages over gossip, keys and relay history come next
// (issue 8).

// CreateGroup creates a group with this account as its owner and the
// default member permissions.
func (n *Node) CreateGroup(_ context.Context, title string) (chat.Group, error) {
	title = strings.TrimSpace(title)
	if title == "" || len(title) > groupstate.MaxTitle {
		return chat.Group{}, fmt.Errorf("%w: a group title is 1 to %d bytes", chat.ErrInvalid, groupstate.MaxTitle)
	}
	var nonce [32]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return chat.Group{}, err
	}
	n.mu.Lock()
	cert := n.keys.cert
	n.mu.Unlock()
	e, err := groupstate.Sign(n.keys.device, cert, nil, n.cfg.Now().UnixMilli(),
		groupstate.Change{Kind: groupstate.KindCreate, Text: title, Perms: groupstate.DefaultPerms, Ref: nonce})
	if err != nil {
		return chat.Group{}, fmt.Errorf("%w: %w", chat.ErrInvalid, err)
	}
	l, err := groupstate.NewLog(e)
	if err != nil {
		return chat.Group{}, err
	}
	raw, err := e.MarshalBinary()
	if err != nil {
		return chat.Group{}, err
	}
	id := l.Group()
	if err := n.db.Update(func(tx *storage.Txn) error {
		return tx.Set(n.st.groupLog, groupEntryKey(id, 0), raw)
	}); err != nil {
		return chat.Group{}, err
	}
	return n.groupView(l.State())
}

// Groups lists the node's groups, by title.
func (n *Node) Groups(context.Context) ([]chat.Group, error) {
	logs, err := n.loadGroups()
	if err != nil {
		return nil, err
	}
	out := make([]chat.Group, 0, len(logs))
	for _, l := range logs {
		g, err := n.groupView(l.State())
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b chat.Group) int {
		if c := strings.Compare(a.Title, b.Title); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Group returns one group, named by its ID or by a title no other group
// of the node has.
func (n *Node) Group(_ context.Context, idOrTitle string) (chat.Group, error) {
	logs, err := n.loadGroups()
	if err != nil {
		return chat.Group{}, err
	}
	want := strings.TrimSpace(idOrTitle)
	var found []*groupstate.Log
	for _, l := range logs {
		id := l.Group()
		if strings.EqualFold(hex.EncodeToString(id[:]), want) {
			return n.groupView(l.State())
		}
		if l.State().Title == want {
			found = append(found, l)
		}
	}
	switch len(found) {
	case 1:
		return n.groupView(found[0].State())
	case 0:
		return chat.Group{}, fmt.Errorf("%w: %q", chat.ErrUnknownGroup, idOrTitle)
	}
	return chat.Group{}, fmt.Errorf("%w: %d groups are titled %q; name one by its ID", chat.ErrUnknownGroup, len(found), idOrTitle)
}

func groupEntryKey(g groupstate.GroupID, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, 40), g[:]...), seq)
}

// loadGroups reads and verifies every group's log.
func (n *Node) loadGroups() ([]*groupstate.Log, error) {
	var logs []*groupstate.Log
	var cur []*groupstate.Entry
	var curID []byte
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		l, err := groupstate.Replay(cur)
		if err != nil {
			return fmt.Errorf("node: group %x: stored log does not verify: %w", curID, err)
		}
		logs, cur = append(logs, l), nil
		return nil
	}
	err := n.db.View(func(tx *storage.Txn) error {
		return tx.Iterate(n.st.groupLog, nil, func(k, v []byte) error {
			if len(k) != 40 {
				return fmt.Errorf("node: group log key of %d bytes", len(k))
			}
			if curID != nil && string(curID) != string(k[:32]) {
				if err := flush(); err != nil {
					return err
				}
			}
			curID = append(curID[:0], k[:32]...)
			e, err := groupstate.Parse(v)
			if err != nil {
				return fmt.Errorf("node: group %x entry %d: %w", k[:32], binary.BigEndian.Uint64(k[32:]), err)
			}
			cur = append(cur, e)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return logs, nil
}

// groupView is a group's state as the API shows it.
func (n *Node) groupView(st *groupstate.State) (chat.Group, error) {
	self := n.keys.account.ID()
	g := chat.Group{ID: hex.EncodeToString(st.Group[:]), Title: st.Title, Role: st.Role(self).String(), Members: []chat.GroupMember{}}
	var names map[identity.AccountID]string
	if err := n.db.View(func(tx *storage.Txn) error {
		names = map[identity.AccountID]string{}
		for a := range st.Members {
			if a == self {
				names[a] = n.keys.name
				continue
			}
			c, err := n.st.getContact(tx, a)
			if errors.Is(err, chat.ErrUnknownContact) {
				continue
			}
			if err != nil {
				return err
			}
			names[a] = c.Name
		}
		return nil
	}); err != nil {
		return chat.Group{}, err
	}
	for a, r := range st.Members {
		g.Members = append(g.Members, chat.GroupMember{AccountID: a.String(), Name: names[a], Role: r.String()})
	}
	// Owner first, then admins, then members; by account within a role.
	slices.SortFunc(g.Members, func(a, b chat.GroupMember) int {
		ra, rb := groupRank(a.Role), groupRank(b.Role)
		if ra != rb {
			return rb - ra
		}
		return strings.Compare(a.AccountID, b.AccountID)
	})
	return g, nil
}

func groupRank(role string) int {
	switch role {
	case "owner":
		return 3
	case "admin":
		return 2
	}
	return 1
}

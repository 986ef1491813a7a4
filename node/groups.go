package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/senderkey"
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
func (n *Node) CreateGroup(ctx context.Context, title string) (chat.Group, error) {
	return n.createGroup(ctx, title, groupstate.DefaultPerms)
}

// checkTitle refuses a title this node would not set: empty, too long,
// not UTF-8, or on more than one line (control characters).
func checkTitle(title string) error {
	if title == "" || !titleShown(title) {
		return fmt.Errorf("%w: a group title is 1 to %d bytes of UTF-8 on one line", chat.ErrInvalid, groupstate.MaxTitle)
	}
	return nil
}

// titleShown reports whether a title (set here, or opened from a
// member's log) is one this node shows: at most MaxTitle bytes of UTF-8
// on one line. Another node's title that is not (its node skipped the
// check) is shown as none (outside review 23: a title with line breaks
// and escape codes passed to API clients).
func titleShown(title string) bool {
	return len(title) <= groupstate.MaxTitle && utf8.ValidString(title) && !strings.ContainsFunc(title, unicode.IsControl)
}

func (n *Node) createGroup(_ context.Context, title string, perms groupstate.Perm) (chat.Group, error) {
	title = strings.TrimSpace(title)
	if err := checkTitle(title); err != nil {
		return chat.Group{}, err
	}
	var nonce [32]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return chat.Group{}, err
	}
	n.mu.Lock()
	cert := n.keys.cert
	n.mu.Unlock()
	info, err := newInfoKey()
	if err != nil {
		return chat.Group{}, err
	}
	sealedTitle, err := sealInfo(info, title)
	if err != nil {
		return chat.Group{}, err
	}
	e, err := groupstate.Sign(n.keys.device, cert, nil, n.cfg.Now().UnixMilli(),
		groupstate.Change{Kind: groupstate.KindCreate, Text: sealedTitle, Perms: perms, Ref: nonce})
	if err != nil {
		return chat.Group{}, fmt.Errorf("%w: %w", chat.ErrInvalid, err)
	}
	l, err := groupstate.NewLog(e)
	if err != nil {
		return chat.Group{}, err
	}
	h := e.Hash()
	info.AtHash = h[:] // (made at the creation)
	raw, err := e.MarshalBinary()
	if err != nil {
		return chat.Group{}, err
	}
	id := l.Group()
	if err := n.signInfoKey(id, &info); err != nil {
		return chat.Group{}, err
	}
	if err := n.db.Update(func(tx *storage.Txn) error {
		if err := n.addInfoKeys(tx, id, []infoKey{info}); err != nil {
			return err
		}
		return n.putEntry(tx, id, 0, raw)
	}); err != nil {
		return chat.Group{}, err
	}
	n.groupChanged(n.runCtx, l.State())
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
	if err := n.db.View(func(tx *storage.Txn) error {
		invs, err := n.invitations(tx)
		out = append(out, invs...)
		return err
	}); err != nil {
		return nil, err
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
	var l *groupstate.Log
	var inv *chat.Group
	if err := n.db.View(func(tx *storage.Txn) (err error) {
		l, err = n.findGroup(tx, idOrTitle)
		if errors.Is(err, chat.ErrUnknownGroup) {
			// An invitation, if it names one.
			invs, ierr := n.invitations(tx)
			if ierr != nil {
				return ierr
			}
			for _, g := range invs {
				if strings.EqualFold(g.ID, strings.TrimSpace(idOrTitle)) || g.Title == strings.TrimSpace(idOrTitle) {
					inv = &g
					return nil
				}
			}
		}
		return err
	}); err != nil {
		return chat.Group{}, err
	}
	if inv != nil {
		return *inv, nil
	}
	return n.groupView(l.State())
}

// findGroup returns the log of the group named by idOrTitle.
func (n *Node) findGroup(tx *storage.Txn, idOrTitle string) (*groupstate.Log, error) {
	want := strings.TrimSpace(idOrTitle)
	if raw, err := hex.DecodeString(want); err == nil && len(raw) == 32 {
		l, err := n.loadGroupTx(tx, groupstate.GroupID(raw))
		if !errors.Is(err, chat.ErrUnknownGroup) {
			return l, err
		}
	}
	logs, err := n.loadGroupsTx(tx)
	if err != nil {
		return nil, err
	}
	var found []*groupstate.Log
	for _, l := range logs {
		id := l.Group()
		if strings.EqualFold(hex.EncodeToString(id[:]), want) {
			return l, nil
		}
		if n.groupTitle(tx, l.State()) == want {
			found = append(found, l)
		}
	}
	if len(found) > 1 {
		// A group this account left or was removed from keeps its title
		// in the list; the one it is in now is what the title means.
		self := n.keys.account.ID()
		var in []*groupstate.Log
		for _, l := range found {
			if l.State().Role(self) != groupstate.RoleNone {
				in = append(in, l)
			}
		}
		if len(in) == 1 {
			return in[0], nil
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return nil, fmt.Errorf("%w: %q", chat.ErrUnknownGroup, idOrTitle)
	}
	return nil, fmt.Errorf("%w: %d groups are titled %q; name one by its ID", chat.ErrUnknownGroup, len(found), idOrTitle)
}

// maxEntryAhead is how far ahead of this node's clock a state-log entry
// from another device may be dated and still be taken: clocks differ,
// by seconds on synchronised devices (groupstate.MaxSkew is the same
// allowance backwards).
const maxEntryAhead = groupstate.MaxSkew * time.Millisecond

// entryTime is the time to sign a new entry after head at: this clock's,
// or as early before head as groupstate allows if head is ahead of it.
// (Signed at head's own time, as before, one entry dated ahead within the
// bound above carried its time into every later entry and expired invite
// links made meanwhile: outside review.)
func entryTime(now int64, head *groupstate.Entry) int64 {
	return max(now, head.Time-groupstate.MaxSkew)
}

// logClaimKey (groups.sk: group || 'L') is the key every transaction
// that changes the group's stored log reads and writes (claimLog).
func logClaimKey(g groupstate.GroupID) []byte { return append(append([]byte(nil), g[:]...), 'L') }

// claimLog makes tx conflict with every other transaction that changes
// group id's stored log. Badger detects read-write conflicts only: two
// transactions that each appended an entry at the same place (a
// member's own change, and an entry signed on the same head taken from
// gossip at that moment) both committed, the later silently
// overwriting the other — a leave vanished from its author's log after
// it had been published, so the author's node never learnt that the
// fork rule had dropped it elsewhere. With the claim, the later one
// fails to commit and storage.Update runs it again on the log the first
// one left, where the fork rule applies. putEntry, dropEntry and
// clearGroupLog claim; a transaction may claim more than once.
func (n *Node) claimLog(tx *storage.Txn, id groupstate.GroupID) error {
	k := logClaimKey(id)
	if _, err := tx.Get(n.st.groupKeys, k); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	return tx.Set(n.st.groupKeys, k, nil)
}

// putEntry stores entry seq of group id's log (raw: its encoding).
func (n *Node) putEntry(tx *storage.Txn, id groupstate.GroupID, seq uint64, raw []byte) error {
	if err := n.claimLog(tx, id); err != nil {
		return err
	}
	return tx.Set(n.st.groupLog, groupEntryKey(id, seq), raw)
}

// dropEntry deletes entry seq of group id's log.
func (n *Node) dropEntry(tx *storage.Txn, id groupstate.GroupID, seq uint64) error {
	if err := n.claimLog(tx, id); err != nil {
		return err
	}
	return tx.Delete(n.st.groupLog, groupEntryKey(id, seq))
}

// clearGroupLog deletes every stored entry of group id, before a whole
// log replaces it (a longer one left behind would no longer chain).
func (n *Node) clearGroupLog(tx *storage.Txn, id groupstate.GroupID) error {
	if err := n.claimLog(tx, id); err != nil {
		return err
	}
	var keys [][]byte
	if err := tx.Iterate(n.st.groupLog, id[:], func(k, _ []byte) error {
		keys = append(keys, slices.Clone(k))
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := tx.Delete(n.st.groupLog, k); err != nil {
			return err
		}
	}
	return nil
}

// holds reports whether l holds e (the same entry at its place).
func holds(l *groupstate.Log, e *groupstate.Entry) bool {
	have := l.At(e.Seq)
	return have != nil && have.Hash() == e.Hash()
}

// maxLogSync bounds the entries of a log sent to members in one payload
// (each ~300 bytes; the body limit holds about this many). A longer log
// is sent from a little before the change on (the last ForkWindow+1
// entries before it, so that a member that holds the log up to the
// change, or a fork of its end, takes it as it is), with the sender's
// home relays: a member further behind, or a new one, fetches the rest
// from a relay that keeps the group's history (fetchGroupLog).
const maxLogSync = 150

// maxLogRelays bounds the relays a "group-log" names.
const maxLogRelays = 4

// AddGroupMembers adds contacts to a group: one signed entry each, then
// the whole log to every other member over the pairwise sessions, so
// every member (the new ones included) holds and checks the same log.
// A member added by an account in its contacts joins at once.
func (n *Node) AddGroupMembers(_ context.Context, group string, contacts []string) (chat.Group, error) {
	if len(contacts) == 0 {
		return chat.Group{}, fmt.Errorf("%w: no contact to add", chat.ErrInvalid)
	}
	self := n.keys.account.ID()
	return n.changeGroup(group, func(tx *storage.Txn, l *groupstate.Log) ([]groupstate.Change, error) {
		var cs []groupstate.Change
		seen := map[identity.AccountID]bool{}
		for _, name := range contacts {
			c, err := n.resolveContact(tx, name)
			if errors.Is(err, chat.ErrUnknownContact) && (name == self.String() || name == n.keys.name) {
				return nil, fmt.Errorf("%w: %s is you", chat.ErrInvalid, name)
			}
			if err != nil {
				return nil, err
			}
			if seen[c.Account] {
				continue // named twice: added once
			}
			seen[c.Account] = true
			if r := l.State().Role(c.Account); r != groupstate.RoleNone {
				return nil, fmt.Errorf("%w: %s is in the group already (%s)", chat.ErrInvalid, name, r)
			}
			cs = append(cs, groupstate.Change{Kind: groupstate.KindAdd, Account: c.Account})
		}
		return cs, nil
	})
}

// RemoveGroupMember removes a member (a contact's alias or any account
// ID). The removed account gets the log too, so its node knows it is out;
// every remaining member starts a new Sender Keys chain, so it reads
// nothing sent after this.
func (n *Node) RemoveGroupMember(_ context.Context, group, member string) (chat.Group, error) {
	return n.changeGroup(group, func(tx *storage.Txn, l *groupstate.Log) ([]groupstate.Change, error) {
		a, err := n.memberAccount(tx, l.State(), member)
		if err != nil {
			return nil, err
		}
		return []groupstate.Change{{Kind: groupstate.KindRemove, Account: a}}, nil
	})
}

// SetGroupInfo changes a group's title and description: one signed
// entry each, sealed with the group's current info key (relays keep the
// log and must not read them; members who left before the key turned
// cannot). Members with the "change info" permission may (admins always).
func (n *Node) SetGroupInfo(ctx context.Context, group string, ch chat.GroupInfoChange) (chat.Group, error) {
	var title, descr string
	if ch.Title != nil {
		title = strings.TrimSpace(*ch.Title)
		if err := checkTitle(title); err != nil {
			return chat.Group{}, err
		}
	}
	if ch.Description != nil {
		if descr = strings.TrimSpace(*ch.Description); len(descr) > groupstate.MaxDescription || !utf8.ValidString(descr) {
			return chat.Group{}, fmt.Errorf("%w: a group description is at most %d bytes of UTF-8", chat.ErrInvalid, groupstate.MaxDescription)
		}
	}
	if ch.Title == nil && ch.Description == nil {
		return chat.Group{}, fmt.Errorf("%w: nothing to change (a title or a description)", chat.ErrInvalid)
	}
	if err := n.ensureSealingKey(ctx, group); err != nil {
		return chat.Group{}, err
	}
	return n.changeGroup(group, func(tx *storage.Txn, l *groupstate.Log) ([]groupstate.Change, error) {
		key, err := n.infoEditKey(tx, l)
		if err != nil {
			return nil, err
		}
		var cs []groupstate.Change
		if ch.Title != nil {
			sealed, err := sealInfo(key, title)
			if err != nil {
				return nil, err
			}
			cs = append(cs, groupstate.Change{Kind: groupstate.KindTitle, Text: sealed})
		}
		if ch.Description != nil {
			sealed := ""
			if descr != "" {
				if sealed, err = sealInfo(key, descr); err != nil {
					return nil, err
				}
			}
			cs = append(cs, groupstate.Change{Kind: groupstate.KindDescription, Text: sealed})
		}
		return cs, nil
	})
}

// infoEditKey checks that this account may change l's info and returns
// the key to seal it with.
func (n *Node) infoEditKey(tx *storage.Txn, l *groupstate.Log) (infoKey, error) {
	if !l.State().MayChangeInfo(n.keys.account.ID()) {
		return infoKey{}, fmt.Errorf("%w: you may not change this group's info", chat.ErrInvalid)
	}
	key, ok, err := n.sealingInfoKey(tx, l)
	if err == nil && !ok {
		err = fmt.Errorf("%w: the group's info key is being renewed by its admins; try again shortly", chat.ErrUnavailable)
	}
	return key, err
}

// ensureSealingKey makes sure an admin's node has a key to seal group's
// info with (sealingInfoKey): none may be tied to the fresh epoch (in a
// group whose info keys go under epoch keys) or to the log since its
// last removal or leave (in others) — a removal or a leave whose turn of
// the key the owner's node has not made yet; then this node, if an
// admin's, turns the key and posts it now, or sends it with the log.
func (n *Node) ensureSealingKey(ctx context.Context, group string) error {
	var gid groupstate.GroupID
	need, post := false, false
	var notify []identity.AccountID
	err := n.db.Update(func(tx *storage.Txn) error {
		need, post, notify = false, false, nil
		l, err := n.findGroup(tx, group)
		if err != nil {
			return err
		}
		gid = l.Group()
		st := l.State()
		if st.Role(n.keys.account.ID()) < groupstate.RoleAdmin {
			return nil
		}
		if _, ok, err := n.sealingInfoKey(tx, l); err != nil || ok {
			return err
		}
		need = true
		pairwise, err := n.rotateInfoKey(tx, l)
		post = !pairwise
		if err != nil || post {
			return err
		}
		// Outside the epoch tier the key goes with the log, pairwise,
		// to every member (a leave whose key the owner's node, offline,
		// has not turned yet).
		var members []identity.AccountID
		for a := range st.Members {
			members = append(members, a)
		}
		notify, err = n.sendGroupLog(tx, l, members, l.Head().Seq)
		return err
	})
	if err != nil || !need {
		return err
	}
	if post {
		n.postInfoKey(ctx, gid)
	}
	for _, a := range notify {
		n.notify(a)
	}
	return nil
}

// SetGroupRole makes a member an admin (role "admin") or a member again
// ("member"); only the owner may (Telegram's admin rights to add admins
// are not modelled).
func (n *Node) SetGroupRole(_ context.Context, group, member, role string) (chat.Group, error) {
	var kind groupstate.Kind
	switch role {
	case "admin":
		kind = groupstate.KindPromote
	case "member":
		kind = groupstate.KindDemote
	default:
		return chat.Group{}, fmt.Errorf("%w: a role is \"admin\" or \"member\", not %q", chat.ErrInvalid, role)
	}
	self := n.keys.account.ID()
	return n.changeGroup(group, func(tx *storage.Txn, l *groupstate.Log) ([]groupstate.Change, error) {
		st := l.State()
		if r := st.Role(self); r != groupstate.RoleOwner {
			return nil, denied(&groupstate.DeniedError{Kind: kind, Author: self, Role: r, Why: "the owner promotes and demotes"})
		}
		a, err := n.memberAccount(tx, st, member)
		if err != nil {
			return nil, err
		}
		switch cur := st.Role(a); {
		case cur == groupstate.RoleOwner:
			return nil, fmt.Errorf("%w: %s is the group's owner", chat.ErrInvalid, member)
		case kind == groupstate.KindPromote && cur == groupstate.RoleAdmin:
			return nil, fmt.Errorf("%w: %s is an admin already", chat.ErrInvalid, member)
		case kind == groupstate.KindDemote && cur == groupstate.RoleMember:
			return nil, fmt.Errorf("%w: %s is not an admin", chat.ErrInvalid, member)
		}
		return []groupstate.Change{{Kind: kind, Account: a}}, nil
	})
}

// BanGroupMember bans an account (a contact's alias or any account ID)
// from a group: out of it if a member (every member starts a new key, as
// on a removal), and not to be added again until unbanned (ban false).
// Admins and the owner may.
func (n *Node) BanGroupMember(_ context.Context, group, member string, ban bool) (chat.Group, error) {
	return n.changeGroup(group, func(tx *storage.Txn, l *groupstate.Log) ([]groupstate.Change, error) {
		var a identity.AccountID
		if c, err := n.resolveContact(tx, member); err == nil {
			a = c.Account
		} else if parsed, perr := identity.ParseAccountID(member); perr == nil {
			a = parsed
		} else {
			return nil, err
		}
		banned := l.State().Banned[a]
		switch {
		case ban && banned:
			return nil, fmt.Errorf("%w: %s is banned already", chat.ErrInvalid, member)
		case !ban && !banned:
			return nil, fmt.Errorf("%w: %s is not banned", chat.ErrInvalid, member)
		case ban:
			return []groupstate.Change{{Kind: groupstate.KindBan, Account: a}}, nil
		}
		return []groupstate.Change{{Kind: groupstate.KindUnban, Account: a}}, nil
	})
}

// LeaveGroup leaves a group (the owner cannot: chat.ErrInvalid).
func (n *Node) LeaveGroup(_ context.Context, group string) (chat.Group, error) {
	return n.changeGroup(group, func(*storage.Txn, *groupstate.Log) ([]groupstate.Change, error) {
		return []groupstate.Change{{Kind: groupstate.KindLeave}}, nil
	})
}

// memberAccount resolves a member named by a contact alias or account ID.
func (n *Node) memberAccount(tx *storage.Txn, st *groupstate.State, name string) (identity.AccountID, error) {
	var a identity.AccountID
	if c, err := n.resolveContact(tx, name); err == nil {
		a = c.Account
	} else if parsed, perr := identity.ParseAccountID(name); perr == nil {
		a = parsed
	} else {
		return a, err
	}
	if st.Role(a) == groupstate.RoleNone {
		return a, fmt.Errorf("%w: %s is not a member", chat.ErrInvalid, name)
	}
	return a, nil
}

// changeGroup signs the changes build returns, one entry each, stores
// them, and sends the whole log to every member and to every account the
// changes took out; a change that takes someone out also retires this
// device's Sender Keys chain (the next message starts a new one, handed
// to the remaining members only).
func (n *Node) changeGroup(group string, build func(*storage.Txn, *groupstate.Log) ([]groupstate.Change, error)) (chat.Group, error) {
	self := n.keys.account.ID()
	n.mu.Lock()
	cert := n.keys.cert
	n.mu.Unlock()
	var st *groupstate.State
	var notify []identity.AccountID
	var envs [][]byte
	err := n.db.Update(func(tx *storage.Txn) error {
		notify = notify[:0]
		l, err := n.findGroup(tx, group)
		if err != nil {
			return err
		}
		id := l.Group()
		changes, err := build(tx, l)
		if err != nil {
			return err
		}
		var added, out []identity.AccountID
		first := l.Head().Seq + 1
		for _, c := range changes {
			e, err := groupstate.Sign(n.keys.device, cert, l.Head(), entryTime(n.cfg.Now().UnixMilli(), l.Head()), c)
			if err != nil {
				return err
			}
			if _, err := l.Add(e); err != nil {
				if errors.Is(err, groupstate.ErrForbidden) {
					return denied(err)
				}
				return err
			}
			raw, err := e.MarshalBinary()
			if err != nil {
				return err
			}
			if err := n.putEntry(tx, id, e.Seq, raw); err != nil {
				return err
			}
			switch c.Kind {
			case groupstate.KindAdd:
				added = append(added, c.Account)
			case groupstate.KindRemove, groupstate.KindBan:
				out = append(out, c.Account)
			case groupstate.KindLeave:
				out = append(out, self)
			}
		}
		rotated := false // the info key goes to every member pairwise
		if len(out) > 0 {
			if err := n.retireChain(tx, id); err != nil {
				return err
			}
			// Titles set from now on are for the remaining members
			// (a member that leaves has nothing to rotate for them).
			if st := l.State(); st.Role(self) != groupstate.RoleNone {
				if rotated, err = n.rotateInfoKey(tx, l); err != nil {
					return err
				}
			}
		} else if err := n.sendOwnChain(tx, id, added); err != nil {
			return err
		}
		st = l.State()
		to := append([]identity.AccountID(nil), out...)
		envs = nil
		if n.gossipsLog(st) {
			// A large group's members take the change from gossip (or a
			// relay's history); the accounts added get the log pairwise,
			// and every member does when a removal turns the info key
			// and the group has no epoch key to send it under.
			if envs, err = n.sealEntries(tx, id, l.Entries(first)); err != nil {
				return err
			}
			to = append(to, added...)
		}
		if !n.gossipsLog(st) || rotated {
			for a := range st.Members {
				to = append(to, a)
			}
		}
		notify, err = n.sendGroupLog(tx, l, to, first)
		return err
	})
	if err != nil {
		return chat.Group{}, err
	}
	n.publishEnvelopes(n.runCtx, st.Group, envs)
	n.groupChanged(n.runCtx, st)
	for _, a := range notify {
		n.notify(a)
	}
	return n.groupView(st)
}

// sendGroupLog enqueues group's log for the accounts to (but this one)
// and returns whom to notify: the whole log, or, if it is longer than
// maxLogSync, its end from a little before entry first (the first this
// change added) on, with the relays to fetch the rest from.
func (n *Node) sendGroupLog(tx *storage.Txn, l *groupstate.Log, to []identity.AccountID, first uint64) ([]identity.AccountID, error) {
	self := n.keys.account.ID()
	id := l.Group()
	entries := l.Entries(0)
	p := payload{Kind: "group-log", Group: hex.EncodeToString(id[:]), DT: n.tokenHex()}
	if len(entries) > maxLogSync {
		if len(n.cfg.Relays) == 0 {
			return nil, fmt.Errorf("%w: the group's log has %d entries; a log over %d goes to members through a relay's history, and this node has no relay", chat.ErrUnavailable, len(entries), maxLogSync)
		}
		first = min(first, uint64(len(entries)))
		p.From = max(first-min(first, groupstate.ForkWindow+1), uint64(len(entries)-maxLogSync))
		p.Relays = n.relayAddrs()[:min(len(n.cfg.Relays), maxLogRelays)]
		entries = entries[p.From:]
		if len(l.State().Title) <= groupstate.MaxText {
			p.Title, p.Members = l.State().Title, len(l.State().Members)
		}
	}
	for _, e := range entries {
		raw, err := e.MarshalBinary()
		if err != nil {
			return nil, err
		}
		p.Log = append(p.Log, raw)
	}
	// Accounts the log leaves out get it without the info keys.
	outBody, err := encodePayload(p)
	if err != nil {
		return nil, err
	}
	if p.Info, err = n.infoKeys(tx, id); err != nil {
		return nil, err
	}
	body, err := encodePayload(p)
	if err != nil {
		return nil, err
	}
	st := l.State()
	nowMs := n.cfg.Now().UnixMilli()
	var notify []identity.AccountID
	seen := map[identity.AccountID]bool{self: true}
	for _, a := range to {
		if seen[a] {
			continue
		}
		seen[a] = true
		var mid chat.MessageID
		if _, err := n.rand.Read(mid[:]); err != nil {
			return nil, err
		}
		b := body
		if st.Role(a) == groupstate.RoleNone {
			b = outBody
		}
		if err := n.enqueue(tx, &job{ID: mid, To: a, Payload: b, SentAt: nowMs}); err != nil {
			return nil, err
		}
		n.logsSent.Add(1)
		notify = append(notify, a)
	}
	return notify, nil
}

// retireChain drops this device's Sender Keys chain in a group after
// someone left it; the next message starts a chain with the next key ID,
// handed to the members of that time.
func (n *Node) retireChain(tx *storage.Txn, id groupstate.GroupID) error {
	raw, err := tx.Get(n.st.groupKeys, senderKey(id))
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	s, err := senderkey.ParseSender(raw)
	if err != nil {
		return err
	}
	if err := tx.Set(n.st.groupKeys, nextKeyIDKey(id), binary.BigEndian.AppendUint32(nil, s.KeyID()+1)); err != nil {
		return err
	}
	return tx.Delete(n.st.groupKeys, senderKey(id))
}

// nextKeyIDKey (groups.sk: group || 'K') holds the key ID of the device's
// next chain in a group, after one was retired.
func nextKeyIDKey(g groupstate.GroupID) []byte { return append(append([]byte(nil), g[:]...), 'K') }

// applyGroupLog takes a group's log sent by sender, who must be a member
// of it. A group the node does not have is taken if the node's account is
// a member and was added by one of its contacts (joining at once); one it
// has is brought up to date with the entries beyond its own. Anything that
// does not verify is dropped (and logged): the sender cannot make the node
// hold a log it could not have built itself.
//
// A log that starts after its creation (p.From > 0, a long log's end) is
// taken with the entries before it that this node holds; a node that
// holds fewer fetches them from a relay first (fetchGroupLog).
func (n *Node) applyGroupLog(tx *storage.Txn, sender identity.AccountID, p payload) error {
	gid, err := hex.DecodeString(p.Group)
	if err != nil || len(gid) != 32 || len(p.Log) == 0 || len(p.Log) > maxLogSync || len(p.Relays) > maxLogRelays {
		n.log.Info("group log dropped", "from", sender.String(), "why", "malformed", "err", err)
		return nil
	}
	if p.From > 0 {
		mine, err := n.loadGroupTx(tx, groupstate.GroupID(gid))
		switch {
		case errors.Is(err, chat.ErrUnknownGroup):
		case err != nil:
			return err
		case mine.Head().Seq+1 >= p.From && followsHeld(mine, p, n.parseEntry):
			// An entry of the end dated ahead: the end (not the whole
			// log) waits until it is due.
			ahead := n.cfg.Now().Add(maxEntryAhead).UnixMilli()
			for _, raw := range p.Log {
				if e, err := n.parseEntry(raw); err == nil && e.Time > ahead && !holds(mine, e) {
					n.deferLog(groupstate.GroupID(gid), sender, p, e.Time)
					return nil
				}
			}
			// The end follows an entry this node holds: applied onto its
			// log (a fork in it resolved as a branch), never replayed from
			// the group's creation — one entry must not cost the whole
			// log (an outside review made it quadratic).
			end, err := endEntries(p, n.parseEntry)
			if err != nil {
				n.log.Info("group log dropped", "from", sender.String(), "why", "malformed end", "err", err)
				return nil
			}
			return ignoreRejected(n.applyEnd(tx, sender, mine, end, p))
		}
		// The rest is fetched for a sender this node trusts with it: a
		// contact, or a member of the group it holds (the relays it names
		// are dialled for them only); an entry that came through the
		// group (gossip, a relay's history; validated there) from this
		// node's own relays. A stranger's long log is an invitation too
		// large to keep.
		contact := false
		if c, err := n.st.getContact(tx, sender); err == nil && c.accepted() {
			contact = true
		}
		member := mine != nil && mine.State().Role(sender) != groupstate.RoleNone
		switch {
		case contact || member:
		case p.viaGroup && mine != nil:
			p.Relays = nil
		case mine == nil && !p.viaGroup:
			// A stranger's long log that adds this account: an invitation,
			// the rest fetched (from this node's own relays) only if the
			// user accepts it.
			return n.storeEndInvitation(tx, groupstate.GroupID(gid), sender, p)
		default:
			n.log.Info("group log dropped", "from", sender.String(), "why", "a long log's end from someone not a contact nor a member")
			return nil
		}
		n.fetchGroupLog(groupstate.GroupID(gid), sender, p)
		return nil
	}
	return ignoreRejected(n.applyWholeLog(tx, sender, p))
}

// followsHeld reports whether the end p sends follows the entries
// before it in l (else it is on another branch from before its start:
// the log it follows is fetched, and compared as a branch).
func followsHeld(l *groupstate.Log, p payload, parse func([]byte) (*groupstate.Entry, error)) bool {
	e, err := parse(p.Log[0])
	if err != nil {
		return true // (dropped as it is applied)
	}
	prev := l.At(p.From - 1)
	return prev != nil && prev.Hash() == e.Prev
}

// endEntries parses the end p sends: every entry verifies, is numbered
// from p.From on and follows the one before it.
func endEntries(p payload, parse func([]byte) (*groupstate.Entry, error)) ([]*groupstate.Entry, error) {
	end := make([]*groupstate.Entry, len(p.Log))
	for i, raw := range p.Log {
		e, err := parse(raw)
		switch {
		case err != nil:
			return nil, fmt.Errorf("entry %d: %w", p.From+uint64(i), err)
		case e.Seq != p.From+uint64(i) || (i > 0 && e.Prev != end[i-1].Hash()):
			return nil, fmt.Errorf("entry %d does not follow the one before it", p.From+uint64(i))
		}
		end[i] = e
	}
	return end, nil
}

// applyEnd is applyWholeLog for an end whose first entry follows an
// entry of mine: the log the sender holds is mine with the end in place
// of what follows that entry (groupstate.Log.With), checked without the
// whole log; then the end is merged into mine (mergeLog: a fork in it
// resolved as a branch).
func (n *Node) applyEnd(tx *storage.Txn, sender identity.AccountID, mine *groupstate.Log, end []*groupstate.Entry, p payload) error {
	bad := func(why string, err error) error {
		n.log.Info("group log dropped", "from", sender.String(), "why", why, "err", err)
		return fmt.Errorf("%w: %s", errLogRejected, why)
	}
	// (No entry of it is dated ahead: applyGroupLog deferred such ends.)
	theirs, err := mine.With(end)
	if err != nil {
		return bad("log does not verify", err)
	}
	if !p.partial && !sentByMember(theirs, end[len(end)-1], sender) {
		return bad("sender is not a member", nil)
	}
	return n.mergeLog(tx, sender, mine, end, p)
}

// sentByMember reports whether sender may send the log l, whose last
// entry is last: a member of it, or one that just left it (telling the
// others).
func sentByMember(l *groupstate.Log, last *groupstate.Entry, sender identity.AccountID) bool {
	return l.State().Role(sender) != groupstate.RoleNone || (last.Change.Kind == groupstate.KindLeave && last.Author() == sender)
}

// errLogRejected reports a group log dropped as invalid (logged): to the
// sender's message it is no error.
var errLogRejected = errors.New("group log rejected")

func ignoreRejected(err error) error {
	if errors.Is(err, errLogRejected) {
		return nil
	}
	return err
}

// applyWholeLog is applyGroupLog for a log from the group's creation on,
// of any length.
func (n *Node) applyWholeLog(tx *storage.Txn, sender identity.AccountID, p payload) error {
	bad := func(why string, err error) error {
		n.log.Info("group log dropped", "from", sender.String(), "why", why, "err", err)
		return fmt.Errorf("%w: %s", errLogRejected, why)
	}
	gid, err := hex.DecodeString(p.Group)
	if err != nil || len(gid) != 32 || len(p.Log) == 0 {
		return bad("malformed", err)
	}
	entries, errs := n.parseEntries(p.Log)
	for _, err := range errs {
		if err != nil {
			return bad("entry does not verify", err)
		}
	}
	theirs, err := groupstate.Replay(entries)
	if err != nil {
		return bad("log does not verify", err)
	}
	id := theirs.Group()
	if string(id[:]) != string(gid) {
		return bad("log of another group", nil)
	}
	if last := entries[len(entries)-1]; !p.partial && theirs.State().Role(sender) == groupstate.RoleNone &&
		(last.Change.Kind != groupstate.KindLeave || last.Author() != sender) {
		return bad("sender is not a member", nil) // (one that just left tells the others)
	}
	self := n.keys.account.ID()
	mine, err := n.loadGroupTx(tx, id)
	switch {
	case errors.Is(err, chat.ErrUnknownGroup):
		mine = nil
	case err != nil:
		return err
	}
	ahead := n.cfg.Now().Add(maxEntryAhead).UnixMilli()
	if mine == nil {
		if theirs.State().Role(self) == groupstate.RoleNone {
			return bad("not a member", nil)
		}
		if i := slices.IndexFunc(entries, func(e *groupstate.Entry) bool { return e.Time > ahead }); i >= 0 {
			n.deferLog(id, sender, p, entries[i].Time)
			return bad("an entry dated ahead of this node's clock", nil) // (see below)
		}
		// Joining at once is for groups a contact added us to; an
		// invitation to accept comes later (issue 8).
		adder := self
		for _, e := range entries {
			if e.Change.Kind == groupstate.KindAdd && e.Change.Account == self {
				adder = e.Author()
			}
		}
		if adder != self && !p.accepted {
			ac, err := n.st.getContact(tx, adder)
			if errors.Is(err, chat.ErrUnknownContact) || (err == nil && !ac.accepted()) {
				// Added by someone who is not a contact: an invitation the
				// user accepts with JoinGroup (or not).
				return n.storeInvitation(tx, id, sender, adder, p)
			}
			if err != nil {
				return err
			}
		}
		// Entries staged for this log must be there unchanged; entries
		// of no held log (a staging that was not kept) must go.
		if p.staged {
			if err := n.checkStaged(tx, id, p.Log); err != nil {
				return err
			}
		} else if err := n.clearGroupLog(tx, id); err != nil {
			return err
		}
		for _, e := range entries {
			if p.staged && e.Seq > 0 {
				break // written already
			}
			if err := n.putEntry(tx, id, e.Seq, p.Log[e.Seq]); err != nil {
				return err
			}
		}
		if err := n.addInfoKeys(tx, id, pairwiseKeys(p.Info)); err != nil {
			return err
		}
		// An invitation to it held from before (a fork someone else
		// sent) is moot now: accepted later it would overwrite this log.
		if err := n.dropInvitations(tx, id[:]); err != nil {
			return err
		}
		n.touch(id)
		return nil
	}

	if !p.accepted && !p.partial && mine.State().Role(self) == groupstate.RoleNone && theirs.State().Role(self) != groupstate.RoleNone {
		// Added back to a group this account left or was taken out of:
		// by a contact, at once; by anyone else, an invitation, as for a
		// group it never held (before, a stranger's add took it back in
		// unasked: outside review 19).
		adder := self
		for _, e := range entries {
			if e.Seq > mine.Head().Seq && e.Change.Kind == groupstate.KindAdd && e.Change.Account == self {
				adder = e.Author()
			}
		}
		if adder != self {
			ac, err := n.st.getContact(tx, adder)
			if errors.Is(err, chat.ErrUnknownContact) || (err == nil && !ac.accepted()) {
				return n.storeInvitation(tx, id, sender, adder, p)
			}
			if err != nil {
				return err
			}
		}
	}
	return n.mergeLog(tx, sender, mine, entries, p)
}

// mergeLog takes entries, consecutive and with their bytes in p.Log,
// into mine, the log this node holds, and writes what it took: entries
// that extend it, and a branch that wins a fork (see
// groupstate.Log.AddBranch).
func (n *Node) mergeLog(tx *storage.Txn, sender identity.AccountID, mine *groupstate.Log, entries []*groupstate.Entry, p payload) error {
	id := mine.Group()
	ahead := n.cfg.Now().Add(maxEntryAhead).UnixMilli()
	raw := func(e *groupstate.Entry) []byte { return p.Log[e.Seq-entries[0].Seq] }
	var added, joined, restored []identity.AccountID
	retire := false
	firstTaken := uint64(math.MaxUint64) // the first entry this log changed
	wasMember := mine.State().Role(n.keys.account.ID()) != groupstate.RoleNone
	for k := 0; k < len(entries); k++ {
		e := entries[k]
		oldHead := mine.Head().Seq
		if e.Time > ahead && !holds(mine, e) {
			// Dated ahead of this node's clock: not taken now (nor what
			// follows it). Taken, a far-future time would carry into every
			// later entry (each is dated at most groupstate.MaxSkew before
			// its predecessor) and expire every invite link of the group. The log is
			// applied again when the entry is due (deferLog), unless it
			// is dated too far ahead.
			n.log.Info("group log: an entry dated ahead; not taken", "group", hex.EncodeToString(id[:8]), "seq", e.Seq, "ahead", time.Duration(e.Time-n.cfg.Now().UnixMilli())*time.Millisecond)
			n.deferLog(id, sender, p, e.Time)
			break
		}
		branch := entries[k : k+1]
		if e.Seq <= oldHead && !holds(mine, e) {
			// A fork: the rest of the log sent (up to an entry dated
			// ahead) competes with this node's as one branch, so that
			// every member ends on the same branch whatever order the
			// branches came in (groupstate.Log.AddBranch).
			end := k + 1
			for end < len(entries) && entries[end].Time <= ahead {
				end++
			}
			branch = entries[k:end]
		}
		k += len(branch) - 1
		dropped, err := mine.AddBranch(branch)
		if err != nil {
			if e.Seq > oldHead || !errors.Is(err, groupstate.ErrLostFork) {
				n.log.Info("group log: entry not taken", "group", hex.EncodeToString(id[:8]), "seq", e.Seq, "err", err)
			}
			continue
		}
		if dropped == nil && e.Seq <= oldHead {
			continue // had it
		}
		for _, e := range branch {
			firstTaken = min(firstTaken, e.Seq)
			if err := n.putEntry(tx, id, e.Seq, raw(e)); err != nil {
				return err
			}
			n.touch(id)
			switch e.Change.Kind {
			case groupstate.KindAdd:
				added = append(added, e.Change.Account)
			case groupstate.KindJoin:
				added = append(added, e.Author())
				joined = append(joined, e.Author())
			case groupstate.KindRemove, groupstate.KindBan, groupstate.KindLeave:
				retire = true
			}
		}
		for seq := branch[len(branch)-1].Seq + 1; seq <= oldHead && dropped != nil; seq++ {
			if err := n.dropEntry(tx, id, seq); err != nil {
				return err
			}
		}
		// Members the dropped branch had taken out are members again (an
		// owner's change won over an admin's removal): they get this
		// device's chain, and the owner's node sends them the log with
		// the info keys turned meanwhile.
		// A leave is its author's choice, not undone by a fork: that
		// member is not handed anything, and this account, if it is the
		// one that left, leaves again on the winning branch (an outside
		// review saw a leaver pulled back by the owner's concurrent
		// change).
		for _, d := range dropped {
			a := d.Change.Account
			switch d.Change.Kind {
			case groupstate.KindRemove, groupstate.KindBan:
			case groupstate.KindLeave:
				if d.Author() == n.keys.account.ID() && mine.State().Role(d.Author()) != groupstate.RoleNone {
					n.touchedMu.Lock()
					n.leaveLater = append(n.leaveLater, id)
					n.touchedMu.Unlock()
				}
				continue
			default:
				continue
			}
			if a != n.keys.account.ID() && mine.State().Role(a) != groupstate.RoleNone && !slices.Contains(added, a) {
				added = append(added, a)
				restored = append(restored, a)
			}
		}
	}
	// Info keys only from an admin (or the owner) of the log as this
	// node holds it now (not of the log the sender chose to send: a
	// removed member could send one from before its removal); from
	// another member only while this node has none (it was just added,
	// and its adder hands it the keys) or when this log made this account
	// a member again (a member added it back: it holds the keys from
	// before its removal only). Only keys an admin signed seal, but a
	// member's junk keys would push out the held ones (maxInfoKeys).
	if role := mine.State().Role(sender); role >= groupstate.RoleAdmin || role == groupstate.RoleMember {
		held, err := n.infoKeys(tx, id)
		if err != nil {
			return err
		}
		back := !wasMember && mine.State().Role(n.keys.account.ID()) != groupstate.RoleNone
		if role >= groupstate.RoleAdmin || len(held) == 0 || back {
			if err := n.addInfoKeys(tx, id, pairwiseKeys(p.Info)); err != nil {
				return err
			}
		}
	}
	if back := append(joined, restored...); len(back) > 0 && mine.State().Owner == n.keys.account.ID() {
		// Whoever joined by a link has the log but not the info keys:
		// the owner's node sends them (with the log); so for a member
		// restored by a fork, whose removal turned them.
		notify, err := n.sendGroupLog(tx, mine, back, firstTaken)
		if err != nil {
			return err
		}
		n.touchedMu.Lock()
		n.notifyLater = append(n.notifyLater, notify...)
		n.touchedMu.Unlock()
	}
	if retire {
		if err := n.retireChain(tx, id); err != nil {
			return err
		}
		// Someone left or was taken out by another: the owner's node
		// makes a new info key for the members that remain (one who left
		// cannot do it for them).
		if mine.State().Owner == n.keys.account.ID() {
			pairwise, err := n.rotateInfoKey(tx, mine)
			if err != nil || !pairwise {
				return err // !pairwise: posted under the next epoch key
			}
			var members []identity.AccountID
			for a := range mine.State().Members {
				members = append(members, a)
			}
			notify, err := n.sendGroupLog(tx, mine, members, firstTaken)
			if err != nil {
				return err
			}
			n.touchedMu.Lock()
			n.notifyLater = append(n.notifyLater, notify...)
			n.touchedMu.Unlock()
		}
		return nil
	}
	return n.sendOwnChain(tx, id, added)
}

// sendOwnChain hands this device's chain in group, if it has one, to the
// accounts just added (they read what it sends from now on).
func (n *Node) sendOwnChain(tx *storage.Txn, id groupstate.GroupID, to []identity.AccountID) error {
	if len(to) == 0 {
		return nil
	}
	raw, err := tx.Get(n.st.groupKeys, senderKey(id))
	if errors.Is(err, storage.ErrNotFound) {
		return nil // its first message will hand it to every member
	}
	if err != nil {
		return err
	}
	s, err := senderkey.ParseSender(raw)
	if err != nil {
		return err
	}
	return n.sendDistribution(tx, s, to)
}

// touch notes a group whose log a receive changed; refreshTouched reloads
// them once the receive committed.
func (n *Node) touch(id groupstate.GroupID) {
	n.touchedMu.Lock()
	if n.touched == nil {
		n.touched = map[groupstate.GroupID]bool{}
	}
	n.touched[id] = true
	n.touchedMu.Unlock()
}

func (n *Node) refreshTouched() {
	n.touchedMu.Lock()
	ids := n.touched
	n.touched = nil
	later := n.notifyLater
	n.notifyLater = nil
	leave := n.leaveLater
	n.leaveLater = nil
	n.touchedMu.Unlock()
	if len(later) > 0 {
		n.notify(later...)
	}
	for id := range ids {
		n.refreshGroup(n.runCtx, id)
	}
	left := map[groupstate.GroupID]bool{}
	for _, id := range leave {
		if left[id] {
			continue // noted twice: its transaction ran again after a conflict
		}
		left[id] = true
		if _, err := n.LeaveGroup(n.runCtx, hex.EncodeToString(id[:])); err != nil {
			n.log.Warn("group: leaving again after a fork dropped the leave", "group", hex.EncodeToString(id[:8]), "err", err)
		}
	}
}

func groupEntryKey(g groupstate.GroupID, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, 40), g[:]...), seq)
}

// loadGroups reads and verifies every group's log.
func (n *Node) loadGroups() ([]*groupstate.Log, error) {
	var logs []*groupstate.Log
	err := n.db.View(func(tx *storage.Txn) (err error) {
		logs, err = n.loadGroupsTx(tx)
		return err
	})
	return logs, err
}

// loadGroupsTx is loadGroups inside tx. A group whose stored log does
// not verify (a damaged store) is left out, and logged: it must not take
// every other group down with it.
func (n *Node) loadGroupsTx(tx *storage.Txn) ([]*groupstate.Log, error) {
	ids, err := n.groupIDsTx(tx)
	if err != nil {
		return nil, err
	}
	var logs []*groupstate.Log
	for _, id := range ids {
		l, bad, err := n.readGroupTx(tx, id)
		switch {
		case err != nil:
			return nil, err
		case bad != nil:
			n.log.Error("group: stored log does not verify; left out", "group", hex.EncodeToString(id[:]), "err", bad)
		case l != nil:
			logs = append(logs, l)
		}
	}
	return logs, nil
}

// loadGroupTx loads one group's verified log (chat.ErrUnknownGroup if
// none is stored): what an operation on a group named by its ID reads,
// instead of every group's. The log is the caller's to change.
func (n *Node) loadGroupTx(tx *storage.Txn, id groupstate.GroupID) (*groupstate.Log, error) {
	l, bad, err := n.readGroupTx(tx, id)
	switch {
	case err != nil:
		return nil, err
	case bad != nil:
		return nil, bad
	case l == nil:
		return nil, fmt.Errorf("%w: %x", chat.ErrUnknownGroup, id)
	}
	return l, nil
}

// replayLogs replays the stored logs under prefix (every group's, or one
// group's ID), handing each to fn with the error that kept it from
// verifying, if any; the error returned is the store's.
func (n *Node) replayLogs(tx *storage.Txn, prefix []byte, fn func(id []byte, l *groupstate.Log, err error)) error {
	var cur []*groupstate.Entry
	var curID []byte
	var bad error   // an entry of the current group that does not parse
	staged := false // the current group's log has no creation entry: staged (grouplogstage.go), no group yet
	// Entries are read in batches and verified together (parseEntries).
	var pending [][]byte
	var pendingSeq []uint64
	parse := func() {
		if bad == nil && !staged && len(pending) > 0 {
			es, errs := n.parseEntries(pending)
			for i, e := range es {
				if errs[i] != nil {
					bad = fmt.Errorf("node: group %x entry %d: %w", curID, pendingSeq[i], errs[i])
					break
				}
				cur = append(cur, e)
			}
		}
		pending, pendingSeq = pending[:0], pendingSeq[:0]
	}
	flush := func() {
		parse()
		if staged {
			cur, bad, staged = nil, nil, false
			return
		}
		if len(cur) == 0 && bad == nil {
			return
		}
		switch {
		case bad != nil:
			fn(curID, nil, bad)
		default:
			l, err := groupstate.Replay(cur)
			if err != nil {
				fn(curID, nil, fmt.Errorf("node: group %x: stored log does not verify: %w", curID, err))
			} else {
				fn(curID, l, nil)
			}
		}
		cur, bad = nil, nil
	}
	err := tx.Iterate(n.st.groupLog, prefix, func(k, v []byte) error {
		if len(k) != 40 {
			return fmt.Errorf("node: group log key of %d bytes", len(k))
		}
		if curID != nil && string(curID) != string(k[:32]) {
			flush()
		}
		if curID == nil || string(curID) != string(k[:32]) {
			staged = binary.BigEndian.Uint64(k[32:]) != 0
		}
		curID = append(curID[:0], k[:32]...)
		if bad != nil || staged {
			return nil
		}
		pending = append(pending, append([]byte(nil), v...))
		pendingSeq = append(pendingSeq, binary.BigEndian.Uint64(k[32:]))
		if len(pending) == replayBatch {
			parse()
		}
		return nil
	})
	if err != nil {
		return err
	}
	flush()
	return nil
}

// replayBatch is how many stored entries replayLogs verifies at once.
const replayBatch = 4096

// groupView is a group's state as the API shows it.
func (n *Node) groupView(st *groupstate.State) (chat.Group, error) {
	self := n.keys.account.ID()
	g := chat.Group{ID: hex.EncodeToString(st.Group[:]), Role: st.Role(self).String(), Members: []chat.GroupMember{}, Channel: st.Channel()}
	if g.Channel {
		g.Subscribers = len(st.Members)
	}
	for _, p := range st.Pins {
		g.Pinned = append(g.Pinned, hex.EncodeToString(p[:]))
	}
	for a := range st.Banned {
		g.Banned = append(g.Banned, a.String())
	}
	slices.Sort(g.Banned)
	n.gcalls.mu.Lock()
	if call := n.gcalls.joined[g.ID]; call != "" {
		g.CallID = call
	} else if ac := n.gcalls.active[g.ID]; ac != nil {
		g.CallID = ac.ID
	}
	n.gcalls.mu.Unlock()
	var names map[identity.AccountID]chat.GroupMember
	if err := n.db.View(func(tx *storage.Txn) error {
		g.Title = n.groupTitle(tx, st)
		g.Description = n.groupInfoText(tx, st, st.Description)
		if n.openPhoto(tx, st) != nil {
			// Named once it is on this device (GET .../photo answers it).
			id := hex.EncodeToString(st.Photo[:])
			if rec, err := n.getFile(tx, id); err == nil && (rec.Outgoing || rec.State == chat.FileDownloaded) {
				g.Photo = id
			}
		}
		if name, err := tx.Get(n.st.groupKeys, publicNameKey(st.Group)); err == nil {
			g.PublicName = string(name)
		}
		names = map[identity.AccountID]chat.GroupMember{}
		for a := range st.Members {
			if a == self {
				names[a] = chat.GroupMember{Name: n.keys.name, Contact: true}
				continue
			}
			c, err := n.st.getContact(tx, a)
			if errors.Is(err, chat.ErrUnknownContact) {
				continue
			}
			if err != nil {
				return err
			}
			var m chat.GroupMember
			m.Name, m.Contact = c.shownName()
			names[a] = m
		}
		return nil
	}); err != nil {
		return chat.Group{}, err
	}
	for a, r := range st.Members {
		g.Members = append(g.Members, chat.GroupMember{AccountID: a.String(), Name: names[a].Name, Contact: names[a].Contact, Role: r.String()})
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

// parseEntry is groupstate.Parse with a cache: every read of the groups
// replays their logs (cheap), and parsing checks each entry's signature
// (not cheap: one Ed25519 verification per entry of every group, on every
// call). Entries are immutable once parsed, so one parsed entry serves
// every replay of the same bytes.
func (n *Node) parseEntry(raw []byte) (*groupstate.Entry, error) {
	h := sha256.Sum256(raw)
	n.entryMu.Lock()
	e := n.entries[h]
	n.entryMu.Unlock()
	if e != nil {
		return e, nil
	}
	e, err := groupstate.Parse(raw)
	if err != nil {
		return nil, err
	}
	n.entryMu.Lock()
	if n.entries == nil || len(n.entries) >= maxCachedEntries {
		n.entries = map[[32]byte]*groupstate.Entry{}
	}
	n.entries[h] = e
	n.entryMu.Unlock()
	return e, nil
}

// parseEntries is parseEntry for many entries at once: those not cached
// are verified together (groupstate.ParseAll: a certificate once, the
// signatures on every core). errs[i] is raws[i]'s error.
func (n *Node) parseEntries(raws [][]byte) ([]*groupstate.Entry, []error) {
	es := make([]*groupstate.Entry, len(raws))
	errs := make([]error, len(raws))
	hashes := make([][32]byte, len(raws))
	var missIdx []int
	var miss [][]byte
	n.entryMu.Lock()
	for i, raw := range raws {
		hashes[i] = sha256.Sum256(raw)
		if es[i] = n.entries[hashes[i]]; es[i] == nil {
			missIdx, miss = append(missIdx, i), append(miss, raw)
		}
	}
	n.entryMu.Unlock()
	if len(miss) == 0 {
		return es, errs
	}
	parsed, perrs := groupstate.ParseAll(miss)
	n.entryMu.Lock()
	defer n.entryMu.Unlock()
	for j, i := range missIdx {
		es[i], errs[i] = parsed[j], perrs[j]
		if es[i] == nil {
			continue
		}
		if n.entries == nil || len(n.entries) >= maxCachedEntries {
			n.entries = map[[32]byte]*groupstate.Entry{}
		}
		n.entries[hashes[i]] = es[i]
	}
	return es, errs
}

// maxCachedEntries bounds the parsed-entry cache (~1 KiB each).
const maxCachedEntries = 50_000

// deniedError is a change this account may not make, as its user is
// told: the rule and the account's role, not the entry's internals.
type deniedError struct {
	msg string
	err error
}

func (e *deniedError) Error() string   { return e.msg }
func (e *deniedError) Unwrap() []error { return []error{chat.ErrInvalid, e.err} }

// denied is err (groupstate.ErrForbidden) as chat.ErrInvalid with words
// for the user.
func denied(err error) error {
	var d *groupstate.DeniedError
	if !errors.As(err, &d) {
		return fmt.Errorf("%w: %w", chat.ErrInvalid, err)
	}
	role := d.Role.String()
	if d.Role == groupstate.RoleNone {
		role = "not a member"
	}
	return &deniedError{msg: fmt.Sprintf("%v: not allowed: %s (your role: %s)", chat.ErrInvalid, d.Why, role), err: err}
}

package node

import (
	"bytes"
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
	"github.com/peergram/peergram/relay/history"
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
	// maxInvitationsBy bounds the pending invitations one account
	// delivered: one stranger must not fill every place for 30 days,
	// leaving none for real invitations (a stranger's deposits to a
	// mailbox are rate-limited, and many accounts take many of them).
	maxInvitationsBy = 5
	invitationTTL    = 30 * 24 * time.Hour
)

// invitationRoom tells whether an invitation delivered by account from
// may be kept ("" if so, else why not): fewer than maxInvitations
// pending, and fewer than maxInvitationsBy of them delivered by from.
// The count is by the account that delivered the log (the pairwise
// session's, authenticated), not the adder named in it: adders cost a
// stranger nothing (a member it added adds this account), and an add
// someone else signed can be replayed in a junk end (outside review
// 18). It reads and writes one claim key, so that concurrent deliveries
// conflict rather than each find room (Badger does not see a key
// another transaction inserts in a range this one counted).
func (n *Node) invitationRoom(tx *storage.Txn, from identity.AccountID) (string, error) {
	if _, err := tx.Get(n.st.groupInvFrom, invClaimKey); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return "", err
	}
	if err := tx.Set(n.st.groupInvFrom, invClaimKey, nil); err != nil {
		return "", err
	}
	total, err := tx.Count(n.st.groupInv, nil)
	if err != nil {
		return "", err
	}
	if total >= maxInvitations {
		return "too many pending", nil
	}
	var keys [][]byte
	if err := tx.Iterate(n.st.groupInvFrom, from[:], func(k, _ []byte) error {
		keys = append(keys, append([]byte(nil), k[len(from):]...))
		return nil
	}); err != nil {
		return "", err
	}
	theirs := 0
	for _, k := range keys {
		ok, err := tx.Has(n.st.groupInv, k)
		if err != nil {
			return "", err
		}
		if ok {
			theirs++
		}
	}
	if theirs >= maxInvitationsBy {
		return "too many pending from this sender", nil
	}
	return "", nil
}

// invClaimKey is the key every store of an invitation reads and writes.
var invClaimKey = []byte("claim")

// keepInvitation stores inv under key, delivered by from, and notes it
// under from (groups.invfrom).
func (n *Node) keepInvitation(tx *storage.Txn, key []byte, from identity.AccountID, inv invitation) error {
	inv.Sender = from
	raw, err := json.Marshal(inv)
	if err != nil {
		return err
	}
	if err := tx.SetTTL(n.st.groupInvFrom, append(append([]byte(nil), from[:]...), key...), nil, invitationTTL); err != nil {
		return err
	}
	return tx.SetTTL(n.st.groupInv, key, raw, invitationTTL)
}

// invitation is a stored invitation (groups.inv: group(32) → JSON). An
// invitation to a log too long to keep (or sent as its end) keeps the
// entries from a little before the add on (From > 0): accepted, the rest
// is fetched from this node's relays.
type invitation struct {
	Log  [][]byte           `json:"log"`
	From uint64             `json:"from,omitempty"`
	Info []infoKey          `json:"info,omitempty"`
	By   identity.AccountID `json:"by"` // the account that added this one
	// Sender is the account that delivered it (zero: stored before it
	// was kept).
	Sender identity.AccountID `json:"sender,omitzero"`
	At     int64              `json:"at"` // received, Unix ms
	// Title (sealed) and Members: a long log's end's, as its sender said
	// (payload.Title), shown until the invitation is accepted.
	Title   string `json:"title,omitempty"`
	Members int    `json:"members,omitempty"`
}

func (n *Node) storeInvitation(tx *storage.Txn, id groupstate.GroupID, sender, by identity.AccountID, p payload) error {
	if ok, err := tx.Has(n.st.groupInv, id[:]); err != nil || ok {
		return err // the first invitation stays
	}
	if add, ok := n.addOf(p.Log); ok {
		if declined, err := tx.Has(n.st.groupDecl, append(append([]byte(nil), id[:]...), add[:]...)); err != nil || declined {
			if declined {
				n.log.Info("group invitation dropped", "group", hex.EncodeToString(id[:8]), "why", "an add this account declined")
			}
			return err
		}
	}
	if why, err := n.invitationRoom(tx, sender); err != nil || why != "" {
		if why != "" {
			n.log.Info("group invitation dropped", "group", hex.EncodeToString(id[:8]), "from", sender.String(), "why", why)
		}
		return err
	}
	inv := invitation{Log: p.Log, Info: p.Info, By: by, At: n.cfg.Now().UnixMilli(), Title: p.Title, Members: p.Members}
	if n.largeLog(p.Log) {
		// Kept as its end, from a little before the add on.
		from := uint64(len(p.Log)) - 1
		for seq := len(p.Log) - 1; seq > 0; seq-- {
			if e, err := n.parseEntry(p.Log[seq]); err == nil && e.Change.Kind == groupstate.KindAdd && e.Change.Account == n.keys.account.ID() {
				from = uint64(max(seq-groupstate.ForkWindow, 1))
				break
			}
		}
		if n.largeLog(p.Log[from:]) {
			n.log.Info("group invitation dropped: its log is too long to keep as an invitation", "group", hex.EncodeToString(id[:8]), "entries", len(p.Log))
			return nil
		}
		inv.Log, inv.From = p.Log[from:], from
	}
	n.log.Info("group invitation", "group", hex.EncodeToString(id[:8]), "by", by.String())
	return n.keepInvitation(tx, id[:], sender, inv)
}

// storeEndInvitation keeps a long log's end that adds this account,
// from someone who is not a contact, as an invitation: its entries
// verify and follow each other, and one adds this account (its author is
// who invited). What comes before is fetched if the user accepts.
func (n *Node) storeEndInvitation(tx *storage.Txn, id groupstate.GroupID, sender identity.AccountID, p payload) error {
	drop := func(why string) error {
		n.log.Info("group invitation dropped", "group", hex.EncodeToString(id[:8]), "why", why)
		return nil
	}
	end, err := endEntries(p, n.parseEntry)
	if err != nil {
		return drop(err.Error())
	}
	var by identity.AccountID
	var add [32]byte
	for _, e := range end {
		if e.Change.Kind == groupstate.KindAdd && e.Change.Account == n.keys.account.ID() {
			by, add = e.Author(), e.Hash()
		}
	}
	if by == (identity.AccountID{}) {
		return drop("a long log's end that does not add this account")
	}
	if ok, err := tx.Has(n.st.groupDecl, append(append([]byte(nil), id[:]...), add[:]...)); err != nil || ok {
		if ok {
			return drop("an add this account declined")
		}
		return err
	}
	// Kept under the group and the inviter: nothing ties an end to the
	// group it names until it is checked against a relay's log, so one
	// account's end must not take another's place (an outside review had
	// a stranger's junk end hold a real group's invitation for 30 days).
	key := append(append([]byte(nil), id[:]...), by[:]...)
	if ok, err := tx.Has(n.st.groupInv, key); err != nil || ok {
		return err // the first invitation stays
	}
	if why, err := n.invitationRoom(tx, sender); err != nil || why != "" {
		if why != "" {
			return drop(why)
		}
		return err
	}
	n.log.Info("group invitation (a long log's end)", "group", hex.EncodeToString(id[:8]), "by", by.String())
	return n.keepInvitation(tx, key, sender, invitation{Log: p.Log, From: p.From, Info: p.Info, By: by, At: n.cfg.Now().UnixMilli(), Title: p.Title, Members: p.Members})
}

// dropInvitations deletes every invitation to group id (a whole log's,
// and each inviter's end).
func (n *Node) dropInvitations(tx *storage.Txn, id []byte) error {
	var keys, notes [][]byte
	if err := tx.Iterate(n.st.groupInv, id[:32], func(k, v []byte) error {
		keys = append(keys, append([]byte(nil), k...))
		var inv struct {
			Sender identity.AccountID `json:"sender"`
		}
		if json.Unmarshal(v, &inv) == nil && inv.Sender != (identity.AccountID{}) {
			notes = append(notes, append(append([]byte(nil), inv.Sender[:]...), k...))
		}
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := tx.Delete(n.st.groupInv, k); err != nil {
			return err
		}
	}
	for _, k := range notes {
		if err := tx.Delete(n.st.groupInvFrom, k); err != nil {
			return err
		}
	}
	return nil
}

// loadInvitation reads and verifies a stored invitation: its log, or,
// for an invitation kept as its end (From > 0), no log (the end's entries
// verified).
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
	if inv.From > 0 {
		return &inv, nil, nil
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
	return err == nil && l != nil && l.State().Role(account) != groupstate.RoleNone
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
	listed := map[string]bool{}
	for _, key := range ids {
		id := key[:min(len(key), 32)]
		if listed[string(id)] {
			continue // one listing a group (a whole log's first: its key sorts first)
		}
		inv, l, err := n.loadInvitation(tx, key)
		if err != nil {
			continue
		}
		listed[string(id)] = true
		if l == nil {
			// Kept as its end: the members come with the log, once
			// accepted; the title (and the count) is the inviter's word
			// until then.
			g := chat.Group{ID: hex.EncodeToString(id), Role: "invited", InvitedMembers: inv.Members,
				Members: []chat.GroupMember{{AccountID: inv.By.String(), Name: "(invited you)"}}}
			if t, err := openInfo(inv.Info, inv.Title); err == nil && titleShown(t) {
				g.Title = t
			}
			out = append(out, g)
			continue
		}
		title, _ := openInfo(inv.Info, l.State().Title)
		if !titleShown(title) {
			title = ""
		}
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

// invitationEvents is a "group" event for group (hex) if an invitation
// to it is held, for the clients to show it; none otherwise.
func (n *Node) invitationEvents(tx *storage.Txn, group string) []chat.Event {
	id, err := hex.DecodeString(group)
	if err != nil || len(id) != 32 {
		return nil
	}
	held := false
	if err := tx.Iterate(n.st.groupInv, id, func(_, _ []byte) error {
		held = true
		return storage.ErrStop
	}); err != nil || !held {
		return nil
	}
	return []chat.Event{{Type: chat.EventGroup, GroupID: hex.EncodeToString(id)}}
}

// invitationTo finds the group an invitation to want (a group's ID, or
// an invitation's title as `group list` shows it) names.
func (n *Node) invitationTo(tx *storage.Txn, want string) ([]byte, error) {
	invs, err := n.invitations(tx)
	if err != nil {
		return nil, err
	}
	var found []string
	for _, g := range invs {
		if strings.EqualFold(g.ID, want) || g.Title == want {
			found = append(found, g.ID)
		}
	}
	switch len(found) {
	case 0:
		if l, err := n.findGroup(tx, want); err == nil && l.State().Role(n.keys.account.ID()) != groupstate.RoleNone {
			return nil, fmt.Errorf("%w: you are a member of %q already", chat.ErrInvalid, want)
		}
		return nil, fmt.Errorf("%w: no invitation to %q", chat.ErrUnknownGroup, want)
	case 1:
	default:
		return nil, fmt.Errorf("%w: %d invitations are titled %q; name one by its ID", chat.ErrUnknownGroup, len(found), want)
	}
	id, err := hex.DecodeString(found[0])
	if err != nil || len(id) != 32 {
		return nil, fmt.Errorf("%w: no invitation to %q", chat.ErrUnknownGroup, want)
	}
	return id, nil
}

// takeInvitation stores the log of an invitation that came whole (inv,
// l: loadInvitation's) as the group's, with its info keys, and drops
// every invitation to the group. A log of the group held already (joined
// meanwhile through a contact, or one this account left): a member
// keeps its own and the invitations go (already); otherwise the
// invitation's log replaces it whole.
func (n *Node) takeInvitation(tx *storage.Txn, id []byte, inv *invitation, l *groupstate.Log) (already bool, err error) {
	gid := l.Group()
	if !bytes.Equal(gid[:], id) {
		return false, fmt.Errorf("%w: the invitation to %x holds another group's log", chat.ErrInvalid, id[:8])
	}
	held, err := n.loadGroupTx(tx, gid)
	switch {
	case err == nil && held.State().Role(n.keys.account.ID()) != groupstate.RoleNone:
		return true, n.dropInvitations(tx, gid[:])
	case err != nil && !errors.Is(err, chat.ErrUnknownGroup):
		n.log.Warn("group: a stored log replaced by an invitation's", "err", err)
	}
	if err := n.clearGroupLog(tx, gid); err != nil {
		return false, err
	}
	for _, e := range l.Entries(0) {
		if err := n.putEntry(tx, gid, e.Seq, inv.Log[e.Seq]); err != nil {
			return false, err
		}
	}
	if err := n.addInfoKeys(tx, gid, pairwiseKeys(inv.Info)); err != nil {
		return false, err
	}
	return false, n.dropInvitations(tx, gid[:])
}

// DeclineGroup declines an invitation, named as JoinGroup names it, and
// frees its places; nothing of the group is kept. Every add of this
// account an invitation to the group holds is remembered for as long as
// an invitation lasts, so that the group's next change — which members
// send to everyone the log lists — or the same end sent again makes no
// new invitation; a later add (a new entry) is a new one. An invitation
// that came with the group's whole log is also left: a KindLeave entry
// signed after its log goes to the account that delivered it (or, if
// that one is not in the log, the one that added this account) — to no
// one else, without this device's delivery token and without any info
// key: the log is a stranger's word, and an outside review had a
// decline hand the token, and a held group's info keys, to accounts the
// stranger listed.
func (n *Node) DeclineGroup(_ context.Context, group string) error {
	want := strings.TrimSpace(group)
	self := n.keys.account.ID()
	n.mu.Lock()
	cert := n.keys.cert
	n.mu.Unlock()
	var id []byte
	var notify []identity.AccountID
	err := n.db.Update(func(tx *storage.Txn) error {
		notify = nil
		var err error
		if id, err = n.invitationTo(tx, want); err != nil {
			return err
		}
		type held struct {
			inv *invitation
			l   *groupstate.Log
		}
		var invs []held
		if err := tx.Iterate(n.st.groupInv, id, func(k, _ []byte) error {
			if inv, l, err := n.loadInvitation(tx, k); err == nil {
				invs = append(invs, held{inv, l})
			}
			return nil
		}); err != nil {
			return err
		}
		for _, h := range invs {
			if add, ok := n.addOf(h.inv.Log); ok {
				if err := tx.SetTTL(n.st.groupDecl, append(append([]byte(nil), id...), add[:]...), nil, invitationTTL); err != nil {
					return err
				}
			}
			if h.l == nil || h.l.Group() != groupstate.GroupID(id) || h.l.State().Role(self) == groupstate.RoleNone {
				continue // an end, or a log that does not list this account: nothing to leave
			}
			to := h.inv.Sender
			if h.l.State().Role(to) == groupstate.RoleNone {
				to = h.inv.By
			}
			if to == self || h.l.State().Role(to) == groupstate.RoleNone {
				continue
			}
			if err := n.sendDecline(tx, h.l, cert, to); err != nil {
				return err
			}
			notify = append(notify, to)
		}
		return n.dropInvitations(tx, id)
	})
	if err != nil {
		return err
	}
	for _, a := range notify {
		n.notify(a)
	}
	n.events.publish(chat.Event{Type: chat.EventGroupGone, GroupID: hex.EncodeToString(id)})
	n.log.Info("group invitation declined", "group", hex.EncodeToString(id[:8]), "left", len(notify) > 0)
	return nil
}

// addOf returns the hash of the last entry of log that adds this account.
func (n *Node) addOf(log [][]byte) ([32]byte, bool) {
	for i := len(log) - 1; i >= 0; i-- {
		if e, err := n.parseEntry(log[i]); err == nil && e.Change.Kind == groupstate.KindAdd && e.Change.Account == n.keys.account.ID() {
			return e.Hash(), true
		}
	}
	return [32]byte{}, false
}

// sendDecline signs this account's leave after l (an invitation's log)
// and enqueues the log's end with it for to alone: no delivery token, no
// info keys.
func (n *Node) sendDecline(tx *storage.Txn, l *groupstate.Log, cert *identity.DeviceCert, to identity.AccountID) error {
	e, err := groupstate.Sign(n.keys.device, cert, l.Head(), entryTime(n.cfg.Now().UnixMilli(), l.Head()), groupstate.Change{Kind: groupstate.KindLeave})
	if err != nil {
		return err
	}
	if _, err := l.Add(e); err != nil {
		return err
	}
	gid := l.Group()
	entries := l.Entries(0)
	p := payload{Kind: "group-log", Group: hex.EncodeToString(gid[:])}
	if len(entries) > maxLogSync {
		// to holds the log up to the add it made or delivered: the end.
		p.From = uint64(len(entries) - maxLogSync)
		entries = entries[p.From:]
	}
	for _, e := range entries {
		raw, err := e.MarshalBinary()
		if err != nil {
			return err
		}
		p.Log = append(p.Log, raw)
	}
	body, err := encodePayload(p)
	if err != nil {
		return err
	}
	var mid chat.MessageID
	if _, err := n.rand.Read(mid[:]); err != nil {
		return err
	}
	n.logsSent.Add(1)
	return n.enqueue(tx, &job{ID: mid, To: to, Payload: body, SentAt: n.cfg.Now().UnixMilli()})
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
	var longs []*invitation // invitations kept as their end: accepted below
	var longID groupstate.GroupID
	err := n.db.Update(func(tx *storage.Txn) error {
		already, longs = false, nil
		id, err := n.invitationTo(tx, want)
		if err != nil {
			return err
		}
		inv, l, err := n.loadInvitation(tx, id)
		if errors.Is(err, storage.ErrNotFound) {
			inv, err = nil, nil // (only ends, under their inviters)
		}
		if err != nil {
			return err
		}
		if l == nil {
			held, err := n.loadGroupTx(tx, groupstate.GroupID(id))
			if err == nil && held.State().Role(n.keys.account.ID()) != groupstate.RoleNone {
				already = true
				return n.dropInvitations(tx, id)
			}
			// Every end kept for the group, the whole log's slot first:
			// the first that a relay's log holds is joined.
			if inv != nil {
				longs = append(longs, inv)
			}
			if err := tx.IterateFrom(n.st.groupInv, id, []byte{0}, func(k, _ []byte) error {
				if len(k) == 64 {
					if e, _, err := n.loadInvitation(tx, k); err == nil {
						longs = append(longs, e)
					}
				}
				return nil
			}); err != nil {
				return err
			}
			longID = groupstate.GroupID(id)
			return nil
		}
		if already, err = n.takeInvitation(tx, id, inv, l); err != nil || already {
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
	if len(longs) > 0 {
		var errs []error
		for _, inv := range longs {
			g, err := n.acceptLongInvitation(ctx, longID, inv)
			if err == nil {
				_ = n.db.Update(func(tx *storage.Txn) error { return n.dropInvitations(tx, longID[:]) })
				return g, nil
			}
			errs = append(errs, fmt.Errorf("invited by %s: %w", inv.By, err))
		}
		return chat.Group{}, errors.Join(errs...)
	}
	n.groupChanged(n.runCtx, st)
	return n.groupView(st)
}

// invitationLog is the log an accepted invitation kept as its end joins:
// the relay's log as it holds it — with the end's entries past it, for a
// relay not that far yet (the replay then checks they chain on). The end
// is never spliced into a relay's log: an outside review had a removed
// member's fork, or an invitation taken back by a removal since, joined
// that way.
func invitationLog(relay [][]byte, inv *invitation) ([][]byte, error) {
	if uint64(len(relay)) < inv.From {
		return nil, fmt.Errorf("its log has %d entries, the invitation's start at %d", len(relay), inv.From)
	}
	if past := uint64(len(relay)) - inv.From; past < uint64(len(inv.Log)) {
		return append(relay[:len(relay):len(relay)], inv.Log[past:]...), nil
	}
	return relay, nil
}

// acceptLongInvitation joins a group whose invitation was kept as its
// end: the group's log is fetched from this node's own relays (not from
// any the inviter named: it is not a contact), must hold the end
// (invitationLog), is verified whole and must make this account a
// member at its head, and is applied as a log the user accepted (staged
// if large).
func (n *Node) acceptLongInvitation(ctx context.Context, id groupstate.GroupID, inv *invitation) (chat.Group, error) {
	c := history.NewClient(n.host)
	c.MaxLogBytes = maxFetchedLog
	var errs []error
	joined := false
	for _, r := range n.relays {
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		entries, _, err := c.Log(fctx, r.ID, id)
		cancel()
		var whole [][]byte
		if err == nil {
			whole, err = invitationLog(entries, inv)
		}
		if err == nil {
			err = n.checkFetched(id, whole)
		}
		if err == nil {
			err = n.applyFetched(id, inv.By, payload{Kind: "group-log", Group: hex.EncodeToString(id[:]), Log: whole, Info: inv.Info, accepted: true})
		}
		if err == nil {
			joined = true
			break
		}
		errs = append(errs, fmt.Errorf("relay %s: %w", r.ID, err))
	}
	if !joined {
		if len(errs) == 0 {
			errs = append(errs, errors.New("no relay to ask"))
		}
		return chat.Group{}, fmt.Errorf("%w: the group's log: %w", chat.ErrUnavailable, errors.Join(errs...))
	}
	var st *groupstate.State
	if err := n.db.View(func(tx *storage.Txn) error {
		l, err := n.loadGroupTx(tx, id)
		if err == nil {
			st = l.State()
		}
		return err
	}); err != nil || st.Role(n.keys.account.ID()) == groupstate.RoleNone {
		return chat.Group{}, fmt.Errorf("%w: the group's log was not taken (%v)", chat.ErrUnavailable, err)
	}
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

package node

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/relay/groupnet"
	"github.com/peergram/peergram/relay/history"
	"github.com/peergram/peergram/storage"
)

// Group history from the home relays (relay/history): each home relay
// is asked to keep the history of every group this account is a member
// of (registered again after each change of the group's log), and the
// node keeps, per group and relay, a cursor: the relay's sequence number
// up to which it holds everything. One Heads request waits at each relay
// for a head to pass a cursor; the node then gives gossip a moment
// (historySettle), asks for the IDs after the cursor, fetches the ones it
// does not hold (groups.seen) and takes them in the relay's order exactly
// as if they had come over gossip, minus the time window. A member that
// was offline catches up at its start the same way, and a message that
// gossip missed is repaired within historySettle of the relay storing it.

// historySettle is how long the node waits after a relay reports new
// messages before asking for those it lacks: gossip usually brings them
// first, and then nothing is fetched.
const historySettle = 500 * time.Millisecond

// historyWait is how long one Heads request waits at the relay.
const historyWait = 25 * time.Second

func groupSeenKey(gid groupstate.GroupID, id []byte) []byte {
	return append(append([]byte(nil), gid[:]...), id...)
}

func cursorKey(gid groupstate.GroupID, relay peer.ID) []byte {
	return append(append([]byte(nil), gid[:]...), []byte(relay)...)
}

// markSeen records that a message of gid is held (stored or waiting for
// its sender's chain). id is the envelope's raw SHA-256.
func (n *Node) markSeen(tx *storage.Txn, gid groupstate.GroupID, id []byte) error {
	return tx.SetTTL(n.st.groupSeen, groupSeenKey(gid, id), nil, seenTTL)
}

// wakeHistory makes the history loops register and catch up now.
func (n *Node) wakeHistory() {
	for _, ch := range n.histWake {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// syncHistory keeps this node's groups registered at one home relay and
// takes from it what gossip did not bring, until ctx ends.
func (n *Node) syncHistory(ctx context.Context, relay peer.ID, wake <-chan struct{}) {
	c := history.NewClient(n.host)
	registered := map[groupstate.GroupID]registration{} // at this relay
	unknownAt := map[groupstate.GroupID]time.Time{}     // when the relay last said it lost a group
	backoff := time.Second
	wait := time.Duration(0) // the first round catches up at once
	fail := func(what string, err error) {
		if ctx.Err() == nil {
			n.log.Debug("group history", "relay", relay, "step", what, "err", err)
		}
		wait = 0 // the relay may have restarted: ask at once next time
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		case <-wake:
		}
		backoff = min(2*backoff, 30*time.Second)
	}
	for ctx.Err() == nil {
		states := n.memberStates()
		watched := n.watchedStates() // heads and state entries only
		if len(states)+len(watched) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-wake:
			}
			continue
		}
		n.registerGroups(ctx, c, relay, states, registered)
		n.storeUnconfirmed(ctx, c, relay)
		heads := make([]history.Head, 0, len(states)+len(watched))
		for _, st := range append(states, watched...) {
			heads = append(heads, history.Head{Group: st.Group, Seq: n.cursor(st.Group, relay)})
		}
		hctx, cancel := context.WithTimeout(ctx, wait+15*time.Second)
		woken := make(chan bool, 1)
		go func() {
			select {
			case <-wake:
				woken <- true
				cancel() // a group changed: register and ask again
			case <-hctx.Done():
				woken <- false
			}
		}()
		moved, err := c.Heads(hctx, relay, heads, wait)
		cancel()
		if <-woken {
			continue
		}
		if err != nil {
			fail("heads", err)
			continue
		}
		if wait > 0 && len(moved) > 0 {
			select { // let gossip bring them first
			case <-ctx.Done():
				return
			case <-time.After(historySettle):
			}
		}
		// Only the groups asked about: a relay naming others would have
		// this node catch up on groups it does not hold.
		asked := make(map[groupstate.GroupID]bool, len(heads))
		for _, h := range heads {
			asked[h.Group] = true
		}
		moved = slices.DeleteFunc(moved, func(h history.Head) bool { return !asked[h.Group] })
		failed, again := false, false
		if len(moved) > 0 && moved[0].Store != 0 {
			if err := n.checkRelayStore(relay, moved[0].Store); err != nil {
				fail("store", err)
				continue
			}
		}
		for _, h := range moved {
			if h.Unknown {
				// The relay lost the group (its registration lapsed, or
				// its store): registered again at the next round, at once
				// — unless a registration failed lately (it waits for its
				// retry) or one it asked for went within the last minute
				// (a relay that keeps saying so must not have the whole
				// log sent again and again).
				if r, ok := registered[h.Group]; ok && r.retry.IsZero() && time.Since(unknownAt[h.Group]) > time.Minute {
					delete(registered, h.Group)
					unknownAt[h.Group] = time.Now()
					again = true
				}
				continue
			}
			if cur := n.cursor(h.Group, relay); h.Seq < cur {
				// The relay's numbering is behind what this node read
				// from it: its store was lost or replaced (a relay keeps
				// numbering across restarts and expiry). Read it again
				// from the start; what is held already is skipped by ID.
				n.log.Warn("group history: the relay's head is behind this node's cursor; reading its history again",
					"group", hex.EncodeToString(h.Group[:8]), "relay", relay, "head", h.Seq, "cursor", cur)
				if err := n.db.Update(func(tx *storage.Txn) error {
					return tx.Delete(n.st.groupCur, cursorKey(h.Group, relay))
				}); err != nil {
					failed = true
					continue
				}
			} else if h.Seq == cur {
				continue
			}
			if err := n.catchUp(ctx, c, relay, h.Group); err != nil {
				if errors.Is(err, history.ErrUnknownGroup) {
					delete(registered, h.Group)
				}
				failed = true
				n.log.Info("group history: catch up", "group", hex.EncodeToString(h.Group[:8]), "relay", relay, "err", err)
			}
		}
		if failed {
			fail("catch up", errors.New("some groups could not catch up"))
			continue
		}
		backoff, wait = time.Second, historyWait
		if again {
			wait = 0 // register now, and catch up with what it then holds
		}
	}
}

// memberStates returns the states of the groups this account is a
// member of.
func (n *Node) memberStates() []*groupstate.State {
	g := n.groups
	self := n.keys.account.ID()
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*groupstate.State
	for _, st := range g.states {
		if st.Role(self) != groupstate.RoleNone {
			out = append(out, st)
		}
	}
	return out
}

// registerNow registers group's whole log at every home relay, each
// within registerNowTimeout; failures are logged, and the history loops
// register it again in any case.
func (n *Node) registerNow(ctx context.Context, gid groupstate.GroupID) {
	st := n.groupState(gid)
	if st == nil {
		return
	}
	c := history.NewClient(n.host)
	for _, r := range n.relays {
		rctx, cancel := context.WithTimeout(ctx, registerNowTimeout)
		n.registerGroups(rctx, c, r.ID, []*groupstate.State{st}, map[groupstate.GroupID]registration{})
		cancel()
	}
}

// registerNowTimeout bounds registerNow at one relay.
const registerNowTimeout = 10 * time.Second

// registration is what this node last registered of a group at a relay
// and when; a failed one waits until retry.
type registration struct {
	entries int
	at      time.Time
	retry   time.Time
	// listsAt: when every member list this node holds went last (an
	// incremental registration sends the lists its entries name, and
	// this node's own; all of them at least every reregister, so that a
	// member's new device reaches relays its own node does not use).
	listsAt time.Time
}

// reregister is how often a registration is renewed although nothing
// changed (relays drop registrations after 30 days without one).
const reregister = 12 * time.Hour

// registerGroups registers at relay the groups whose log grew since they
// were last registered there, or whose registration is old. A group the
// relay refuses does not hold up the others; it is tried again later.
//
// A group registered there before in this run is registered from a
// little before the length registered then (a fork may have replaced
// the last ForkWindow entries), with the lists of the accounts those
// entries bring in and this device's own: a renewal of a large group
// costs a frame, not its whole log. If the relay no longer holds it, the
// whole log goes at once.
func (n *Node) registerGroups(ctx context.Context, c *history.Client, relay peer.ID, states []*groupstate.State, registered map[groupstate.GroupID]registration) {
	now := time.Now()
	for _, st := range states {
		r := registered[st.Group]
		if now.Before(r.retry) {
			continue
		}
		var entries, lists, allLists [][]byte
		var from uint64
		err := n.db.View(func(tx *storage.Txn) error {
			l, err := n.findGroup(tx, hex.EncodeToString(st.Group[:]))
			if err != nil {
				return err
			}
			all := l.Entries(0)
			if r.entries == len(all) && now.Sub(r.at) < reregister {
				return nil
			}
			if r.entries > 0 {
				from = uint64(max(0, min(r.entries, len(all))-groupstate.ForkWindow-1))
			}
			var named []identity.AccountID
			for _, e := range all {
				raw, err := e.MarshalBinary()
				if err != nil {
					return err
				}
				entries = append(entries, raw)
				if e.Seq >= from {
					named = append(named, e.Change.Account, e.Author())
				}
			}
			allLists = n.memberLists(tx, l.State(), nil)
			lists = allLists
			if from > 0 && now.Sub(r.listsAt) < reregister {
				lists = n.memberLists(tx, l.State(), named)
			}
			return nil
		})
		if err == nil && entries != nil {
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err = c.RegisterFrom(rctx, relay, st.Group, from, entries[from:], lists, n.keys.device)
			if err != nil && from > 0 && ctx.Err() == nil {
				// The relay lost it (expired, or a new store): all of it.
				n.log.Debug("group history: register from the start", "group", hex.EncodeToString(st.Group[:8]), "relay", relay, "err", err)
				err = c.RegisterFrom(rctx, relay, st.Group, 0, entries, allLists, n.keys.device)
			}
			cancel()
		}
		if err != nil {
			if ctx.Err() == nil {
				n.log.Info("group history: register", "group", hex.EncodeToString(st.Group[:8]), "relay", relay, "err", err)
			}
			r.retry = now.Add(time.Minute)
			r.entries = 0 // the whole log next time
			registered[st.Group] = r
			continue
		}
		if entries != nil {
			listsAt := r.listsAt
			if len(lists) == len(allLists) {
				listsAt = now
			}
			registered[st.Group] = registration{entries: len(entries), at: now, listsAt: listsAt}
		}
	}
}

// memberLists returns the signed device lists this node holds of a
// group's members, its own included; of only those named (besides its
// own), if named is not nil.
func (n *Node) memberLists(tx *storage.Txn, st *groupstate.State, named []identity.AccountID) [][]byte {
	var out [][]byte
	n.mu.Lock()
	own := n.keys.list
	n.mu.Unlock()
	if own != nil {
		if raw, err := own.MarshalBinary(); err == nil {
			out = append(out, raw)
		}
	}
	self := n.keys.account.ID()
	accounts := maps.Keys(st.Members)
	if named != nil {
		accounts = slices.Values(named)
	}
	seen := map[identity.AccountID]bool{self: true}
	for a := range accounts {
		if seen[a] || st.Role(a) == groupstate.RoleNone {
			continue
		}
		seen[a] = true
		c, err := n.st.getContact(tx, a)
		if err != nil || len(c.List) == 0 {
			continue
		}
		out = append(out, c.List)
	}
	return out
}

// checkRelayStore compares the store ID a relay's Heads answer names
// with the one it named before: another one means the relay's store was
// lost or replaced, and its numbering started again, so every cursor
// this node keeps for the relay is dropped (its history is read again
// from the start; what is held already is skipped by ID). Without it, a
// new store that numbered more envelopes than a cursor hid those below
// it.
func (n *Node) checkRelayStore(relay peer.ID, store uint64) error {
	key := append([]byte("S"), relay...)
	return n.db.Update(func(tx *storage.Txn) error {
		v, err := tx.Get(n.st.groupCur, key)
		switch {
		case err == nil && len(v) == 8 && binary.BigEndian.Uint64(v) == store:
			return nil
		case err == nil && len(v) == 8:
			var drop [][]byte
			if err := tx.Iterate(n.st.groupCur, nil, func(k, _ []byte) error {
				if len(k) == 32+len(relay) && string(k[32:]) == string(relay) {
					drop = append(drop, append([]byte(nil), k...))
				}
				return nil
			}); err != nil {
				return err
			}
			for _, k := range drop {
				if err := tx.Delete(n.st.groupCur, k); err != nil {
					return err
				}
			}
			n.log.Warn("group history: the relay's store changed; reading its history again", "relay", relay, "groups", len(drop))
		case err != nil && !errors.Is(err, storage.ErrNotFound):
			return err
		}
		return tx.Set(n.st.groupCur, key, binary.BigEndian.AppendUint64(nil, store))
	})
}

// cursor is the relay sequence number up to which this node holds a
// group's history from relay.
func (n *Node) cursor(gid groupstate.GroupID, relay peer.ID) uint64 {
	var cur uint64
	_ = n.db.View(func(tx *storage.Txn) error {
		v, err := tx.Get(n.st.groupCur, cursorKey(gid, relay))
		if err == nil && len(v) == 8 {
			cur = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return cur
}

// catchUp takes from relay every message of gid after the node's cursor
// that it does not hold, in the relay's order, moving the cursor page by
// page.
func (n *Node) catchUp(ctx context.Context, c *history.Client, relay peer.ID, gid groupstate.GroupID) error {
	// Items stored before this account joined are not for it. The join
	// time is its adder's clock, which may run up to maxEntryAhead fast
	// against the relay's: the margin covers that (outside review 22: a
	// fast adder's clock skipped the first posts after the add).
	since := n.joinedAt(gid).Add(-time.Minute - maxEntryAhead).UnixMilli()
	if st := n.groupState(gid); st != nil && st.Channel() {
		since = 0 // a channel's history is its subscribers' (grantEpochs)
	}
	// A message that cannot be placed yet (its device or its sender's
	// membership not known here yet) holds the stored cursor before it,
	// so that a later round takes it; the pages after it are taken now
	// all the same (one such message held back every later post for ten
	// minutes: outside review 22).
	var stuck uint64
	after := n.cursor(gid, relay)
	learnt := false
	for {
		cur := after
		qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		page, err := c.Query(qctx, relay, gid, cur, history.MaxPageItems, true)
		cancel()
		if err != nil {
			return err
		}
		if cur > 0 && page.First > cur+1 {
			n.log.Warn("group history: messages expired at the relay before this device fetched them",
				"group", hex.EncodeToString(gid[:8]), "from", cur+1, "to", page.First-1)
		}
		var want []uint64
		var confirmed [][]byte
		stored := map[uint64]int64{}
		err = n.db.View(func(tx *storage.Txn) error {
			for _, it := range page.Items {
				stored[it.Seq] = it.Stored
				if ok, err := tx.Has(n.st.groupUnconf, groupSeenKey(gid, it.ID[:])); err != nil {
					return err
				} else if ok {
					confirmed = append(confirmed, groupSeenKey(gid, it.ID[:]))
				}
				if it.Stored < since {
					continue // before this account joined: not for it
				}
				ok, err := tx.Has(n.st.groupSeen, groupSeenKey(gid, it.ID[:]))
				if err != nil {
					return err
				}
				if !ok {
					want = append(want, it.Seq)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for len(want) > 0 {
			gctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			got, err := c.Get(gctx, relay, gid, want)
			cancel()
			if err != nil {
				return err
			}
			slices.SortFunc(got.Items, func(a, b history.Item) int { return compareU64(a.Seq, b.Seq) })
			for _, it := range got.Items {
				err := n.takeHistory(gid, it.Envelope)
				if errors.Is(err, groupnet.ErrUnknownDevice) && !learnt {
					// A member this node knows nothing of yet (not a
					// contact; its list not fetched yet): fetch, then
					// try again.
					learnt = true
					if st := n.groupState(gid); st != nil {
						n.learnMembers(ctx, st)
					}
					err = n.takeHistory(gid, it.Envelope)
				}
				switch {
				case (errors.Is(err, groupnet.ErrUnknownDevice) || errors.Is(err, groupnet.ErrNotAllowed)) &&
					n.cfg.Now().UnixMilli()-stored[it.Seq] < unknownSenderWait.Milliseconds():
					// Still unknown, or its sender not a member in the
					// log as this node holds it yet (the entry that
					// added it may come later, from the mailbox): the
					// cursor stops before it (it used to pass it, and
					// the message was lost).
					if stuck == 0 {
						stuck = it.Seq
					}
				case err != nil:
					n.log.Info("group history: message not taken", "group", hex.EncodeToString(gid[:8]), "err", err)
				}
			}
			if !got.More || len(got.Items) == 0 {
				break
			}
			last := got.Items[len(got.Items)-1].Seq
			want = slices.DeleteFunc(want, func(s uint64) bool { return s <= last })
		}
		if len(confirmed) > 0 {
			if err := n.db.Update(func(tx *storage.Txn) error {
				for _, k := range confirmed {
					if err := n.heldAt(tx, k, relay); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				return err
			}
		}
		next := cur
		if len(page.Items) > 0 {
			next = page.Items[len(page.Items)-1].Seq
		}
		if !page.More {
			// Everything up to the relay's committed head is in this
			// page: numbers without an envelope (expired, or lost to a
			// failed write at the relay) are passed too.
			next = max(next, page.Head)
		}
		after = next
		if stuck != 0 {
			next = min(next, stuck-1)
		}
		if old := n.cursor(gid, relay); next > old {
			if err := n.db.Update(func(tx *storage.Txn) error {
				return tx.Set(n.st.groupCur, cursorKey(gid, relay), binary.BigEndian.AppendUint64(nil, next))
			}); err != nil {
				return err
			}
		}
		if !page.More || after <= cur {
			break
		}
	}
	if stuck != 0 {
		return fmt.Errorf("%w: a message not placed yet (seq %d)", groupnet.ErrUnknownDevice, stuck)
	}
	return nil
}

// unknownSenderWait is how long after a relay stored a message from a
// device this node cannot place the history loop keeps trying to learn
// it (the member's device list from the directory) before passing it.
const unknownSenderWait = 10 * time.Minute

func compareU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// joinedAt is when this account last became a member of gid (the log
// entry that created the group or added it), or the zero time.
func (n *Node) joinedAt(gid groupstate.GroupID) time.Time {
	self := n.keys.account.ID()
	var at int64
	_ = n.db.View(func(tx *storage.Txn) error {
		l, err := n.findGroup(tx, hex.EncodeToString(gid[:]))
		if err != nil {
			return err
		}
		for _, e := range l.Entries(0) {
			switch {
			case e.Change.Kind == groupstate.KindCreate && e.Author() == self,
				e.Change.Kind == groupstate.KindAdd && e.Change.Account == self,
				e.Change.Kind == groupstate.KindJoin && e.Author() == self:
				at = e.Time
			}
		}
		return nil
	})
	if at == 0 {
		return time.Time{}
	}
	return time.UnixMilli(at)
}

// takeHistory takes an envelope from a relay's history: the checks of
// the gossip validators except the time window, then the same path as a
// message from gossip.
func (n *Node) takeHistory(gid groupstate.GroupID, env []byte) error {
	e, err := groupmsg.Open(gid, env)
	if err != nil {
		return err
	}
	if e.Device == n.keys.device.ID() {
		return nil
	}
	if e.Kind == groupmsg.KindState {
		// An entry of the log: taken (or found held, or dropped) by
		// applying it, whatever the state it follows — one the node
		// holds already, or that lost a fork, must not hold the cursor
		// back as a message of an unknown device does.
		entry, err := groupstate.Parse(e.Payload)
		if err != nil || entry.Cert.Device != e.Device {
			n.log.Info("group history: a state envelope dropped", "group", hex.EncodeToString(gid[:8]), "err", err)
			return nil
		}
		return n.takeEnvelope(gid, &groupnet.Message{Envelope: e, Account: entry.Author(), ID: groupmsg.ID(env), Raw: env, Entry: entry})
	}
	if st := n.groupState(gid); st == nil || st.Role(n.keys.account.ID()) == groupstate.RoleNone {
		// Watched after leaving it (removalWatch): only the log counts;
		// the posts are not for this account (not held as pending).
		return nil
	}
	acct, err := (*groupMembers)(n).MayPublish(gid, e.Device, e.Kind)
	if err != nil {
		return err
	}
	return n.takeEnvelope(gid, &groupnet.Message{Envelope: e, Account: acct, ID: groupmsg.ID(env), Raw: env})
}

// storeUnconfirmed hands relay the posts of this device that no home
// relay's history has shown within GroupStoreAfter: posted while offline,
// or lost by gossip. The relay checks them as its validators would, but
// their age beyond its retention, and keeps each once; a post the relay
// refuses for good (not a member's any more, a group it does not keep)
// is dropped from the list, and one it refuses for now (busy) does not
// hold up the others.
// heldAt notes that relay holds (or refuses for good) the own post
// keyed k in groups.unconf; once every home relay does, the post is
// dropped from the list. Dropped at the first relay that listed it, a
// post never reached another home relay that had lost it (restarted,
// or lying about what it holds) and so never reached the members who
// read from that one alone (outside review 22).
func (n *Node) heldAt(tx *storage.Txn, k []byte, relay peer.ID) error {
	if err := tx.SetTTL(n.st.groupUnconfAt, append(append([]byte(nil), k...), relay...), nil, unconfTTL); err != nil {
		return err
	}
	for _, r := range n.relays {
		held, err := tx.Has(n.st.groupUnconfAt, append(append([]byte(nil), k...), r.ID...))
		if err != nil || !held {
			return err
		}
	}
	for _, r := range n.relays {
		if err := tx.Delete(n.st.groupUnconfAt, append(append([]byte(nil), k...), r.ID...)); err != nil {
			return err
		}
	}
	return tx.Delete(n.st.groupUnconf, k)
}

// unconfTTL is how long an own post waits to be handed to a home relay
// that does not hold it.
const unconfTTL = 7 * 24 * time.Hour

func (n *Node) storeUnconfirmed(ctx context.Context, c *history.Client, relay peer.ID) {
	after := n.cfg.GroupStoreAfter
	if after <= 0 {
		after = 10 * time.Second
	}
	type post struct {
		key []byte
		env []byte
	}
	var due []post
	cutoff := n.cfg.Now().Add(-after).UnixMilli()
	// At most 256 a round, and 32 of one group: a group the relay
	// refuses (full, or not registered there yet) must not hold up the
	// others' posts (outside review 23).
	perGroup := map[[32]byte]int{}
	_ = n.db.View(func(tx *storage.Txn) error {
		return tx.Iterate(n.st.groupUnconf, nil, func(k, v []byte) error {
			if len(due) >= 256 {
				return storage.ErrStop
			}
			if len(k) == 64 && len(v) > 8 && int64(binary.BigEndian.Uint64(v)) <= cutoff && perGroup[[32]byte(k[:32])] < 32 {
				if held, err := tx.Has(n.st.groupUnconfAt, append(append([]byte(nil), k...), relay...)); err != nil || held {
					return err // this relay holds it
				}
				perGroup[[32]byte(k[:32])]++
				due = append(due, post{append([]byte(nil), k...), append([]byte(nil), v[8:]...)})
			}
			return nil
		})
	})
	refused := map[[32]byte]bool{} // groups the relay answered unknown this round
	for _, p := range due {
		if refused[[32]byte(p.key[:32])] {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := c.Store(sctx, relay, [32]byte(p.key[:32]), p.env, n.keys.device)
		cancel()
		var se *history.StatusError
		gid := groupstate.GroupID(p.key[:32])
		switch {
		case errors.As(err, &se) && se.Code == history.CodeUnknown && n.groupState(gid) != nil && n.groupState(gid).Role(n.keys.account.ID()) != groupstate.RoleNone:
			// The relay does not hold the group (yet, or any more: its
			// store was lost): kept until the group is registered there
			// again (the history loop does it once Heads says so); the
			// group's other posts wait for the next round.
			refused[gid] = true
			n.log.Debug("group history: store a post", "relay", relay, "err", err)
		case err == nil, errors.As(err, &se) && (se.Code == history.CodeInvalid || se.Code == history.CodeMalformed || se.Code == history.CodeUnknown):
			if err != nil {
				n.log.Info("group history: a relay refuses a post", "relay", relay, "err", err)
			}
			_ = n.db.Update(func(tx *storage.Txn) error { return n.heldAt(tx, p.key, relay) })
		case errors.As(err, &se):
			n.log.Debug("group history: store a post", "relay", relay, "err", err) // busy, rate limited: later
		default:
			n.log.Debug("group history: store a post", "relay", relay, "err", err)
			return // the relay is not answering: later
		}
	}
}

package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/groupnet"
	"github.com/peergram/peergram/relay/history"
	"github.com/peergram/peergram/storage"
)

// A long group log reaches members as its end (sendGroupLog); a member
// that holds less than the entries before that end — a new member, or one
// that was away through more than maxLogSync changes — fetches them from
// a relay that keeps the group's history, puts them before the end it was
// sent, and applies the whole as it would a log sent whole. The relay is
// trusted for nothing: the log it answers verifies or is dropped, and one
// that withholds entries only makes the fetch fail.

// DefaultPairwiseLogLimit is the most members a group sends its log to
// over the pairwise sessions by default (Config.GroupPairwiseLogLimit).
const DefaultPairwiseLogLimit = 150

// gossipsLog reports whether st's changes reach its members as entries
// over gossip and the relays' history rather than over the pairwise
// sessions.
func (n *Node) gossipsLog(st *groupstate.State) bool {
	limit := n.cfg.GroupPairwiseLogLimit
	if limit <= 0 {
		limit = DefaultPairwiseLogLimit
	}
	return len(st.Members) > limit
}

// sealEntries seals entries as this device's KindState envelopes, kept
// until a home relay's history shows them (as posts are), to publish
// once the transaction commits.
func (n *Node) sealEntries(tx *storage.Txn, gid groupstate.GroupID, entries []*groupstate.Entry) ([][]byte, error) {
	var envs [][]byte
	for _, e := range entries {
		raw, err := e.MarshalBinary()
		if err != nil {
			return nil, err
		}
		env, _, err := n.sealEnvelope(tx, gid, groupmsg.KindState, raw)
		if err != nil {
			return nil, err
		}
		envs = append(envs, env)
	}
	return envs, nil
}

// takeStateEntry takes an entry of a large group's log from gossip or a
// relay's history, as the end of a log (applyGroupLog): one that follows
// the log held is applied, one further ahead makes the node fetch what
// lies between from its relays.
func (n *Node) takeStateEntry(gid groupstate.GroupID, msg *groupnet.Message) error {
	e := msg.Entry
	if e == nil {
		return errors.New("a state envelope without its entry")
	}
	if e.Time > n.cfg.Now().Add(maxEntryAhead).UnixMilli() {
		// Dated ahead: not kept until due (an outside review had strangers'
		// joins make every member hold the whole log in memory); the log
		// brings it when it is due.
		return nil
	}
	held := false
	if err := n.db.View(func(tx *storage.Txn) error {
		v, err := tx.Get(n.st.groupLog, groupEntryKey(gid, e.Seq))
		held = err == nil && bytes.Equal(v, msg.Payload)
		return nil
	}); err != nil {
		return err
	}
	if held {
		return nil // (gossip and a relay's history both bring it)
	}
	p := payload{Kind: "group-log", Group: hex.EncodeToString(gid[:]), Log: [][]byte{msg.Payload}, From: e.Seq, viaGroup: true}
	err := n.db.Update(func(tx *storage.Txn) error { return n.applyGroupLog(tx, e.Author(), p) })
	n.refreshTouched()
	return err
}

// logFetch is one group's fetch: the newest end each sender sent.
type logFetch struct {
	ends map[identity.AccountID]payload
}

// logFetchWaits are the pauses before each attempt: the sender's relays
// may not hold the change yet (members register after each change).
var logFetchWaits = []time.Duration{0, 2 * time.Second, 10 * time.Second, 30 * time.Second, 2 * time.Minute}

// Bounds of the fetches: groups at once, senders' ends kept per group,
// groups one sender's ends take part in, and the bytes of a log fetched.
const (
	maxLogFetches      = 8
	maxEndsPerFetch    = 8
	maxFetchesBySender = 2
	maxFetchedLog      = 128 << 20
)

// fetchGroupLog starts fetching what goes before p's entries, or adds p
// to the fetch of that group that runs (one end per sender: a newer end
// from the same sender replaces its older one, and no sender's end
// replaces another's).
func (n *Node) fetchGroupLog(id groupstate.GroupID, sender identity.AccountID, p payload) {
	if n.runCtx == nil {
		return
	}
	n.fetchMu.Lock()
	defer n.fetchMu.Unlock()
	if f := n.fetching[id]; f != nil {
		old, ok := f.ends[sender]
		switch {
		case ok && p.From+uint64(len(p.Log)) >= old.From+uint64(len(old.Log)):
			f.ends[sender] = p
		case !ok && len(f.ends) < maxEndsPerFetch && n.fetchesBy(sender) < maxFetchesBySender:
			f.ends[sender] = p
		}
		return
	}
	if len(n.fetching) >= maxLogFetches || n.fetchesBy(sender) >= maxFetchesBySender {
		n.log.Info("group log: a long log's end dropped: too many fetches", "group", hex.EncodeToString(id[:8]))
		return
	}
	if n.fetching == nil {
		n.fetching = map[groupstate.GroupID]*logFetch{}
	}
	n.fetching[id] = &logFetch{ends: map[identity.AccountID]payload{sender: p}}
	go n.runLogFetch(n.runCtx, id)
}

// newerEnds reports whether the fetch of id holds an end that was not
// in seen (a new sender's, or a newer one of a sender), and forgets the
// ends seen.
func (n *Node) newerEnds(id groupstate.GroupID, seen map[identity.AccountID]payload) bool {
	n.fetchMu.Lock()
	defer n.fetchMu.Unlock()
	f := n.fetching[id]
	newer := false
	for sender, p := range f.ends {
		old, ok := seen[sender]
		if ok && old.From == p.From && len(old.Log) == len(p.Log) {
			delete(f.ends, sender)
			continue
		}
		newer = true
	}
	return newer
}

// fetchesBy counts the fetches sender has an end in. Caller holds fetchMu.
func (n *Node) fetchesBy(sender identity.AccountID) int {
	c := 0
	for _, f := range n.fetching {
		if _, ok := f.ends[sender]; ok {
			c++
		}
	}
	return c
}

func (n *Node) runLogFetch(ctx context.Context, id groupstate.GroupID) {
	defer func() {
		n.fetchMu.Lock()
		delete(n.fetching, id)
		n.fetchMu.Unlock()
	}()
	var errs []error
	for i := 0; i < len(logFetchWaits); i++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(logFetchWaits[i]):
		}
		n.fetchMu.Lock()
		ends := maps.Clone(n.fetching[id].ends)
		n.fetchMu.Unlock()
		errs = errs[:0]
		for sender, p := range ends {
			err := n.fetchLogOnce(ctx, id, sender, p)
			if err == nil {
				// Ends that came meanwhile may lie beyond what was
				// applied (an outside review lost one so): again, with
				// those, at once.
				if n.newerEnds(id, ends) {
					i = -1
					errs = nil
					break
				}
				return
			}
			errs = append(errs, err)
		}
		if errs != nil {
			n.log.Debug("group log: fetching the rest", "group", hex.EncodeToString(id[:8]), "err", errors.Join(errs...))
		}
	}
	n.log.Info("group log: a long log's end dropped: the rest not found at a relay", "group", hex.EncodeToString(id[:8]), "err", errors.Join(errs...))
}

// fetchLogOnce asks the relays p names and this node's own for the
// group's log and applies the entries before p's end with it; the first
// relay whose log does so wins. What a relay answers is verified whole
// (and must make this account a member, if the node does not hold the
// group) before any of it is written.
func (n *Node) fetchLogOnce(ctx context.Context, id groupstate.GroupID, sender identity.AccountID, end payload) error {
	var relays []peer.AddrInfo
	for _, s := range end.Relays {
		if ai, err := peer.AddrInfoFromString(s); err == nil && ai.ID != n.host.ID() {
			relays = append(relays, *ai)
		}
	}
	relays = append(relays, n.relays...)
	c := history.NewClient(n.host)
	c.MaxLogBytes = maxFetchedLog
	var errs []error
	tried := map[peer.ID]bool{}
	for _, r := range relays {
		if tried[r.ID] {
			continue
		}
		tried[r.ID] = true
		n.host.Peerstore().AddAddrs(r.ID, r.Addrs, peerstore.TempAddrTTL)
		if held := n.heldLength(id); held > 0 {
			// A member behind: what it lacks, not the whole log.
			took, err := n.fetchTail(ctx, c, r.ID, id, sender, end, uint64(held))
			if took {
				n.fetched.tail.Add(1)
				return nil
			}
			if err != nil {
				n.log.Debug("group log: the relay's entries after ours did not continue it; the whole log next", "group", hex.EncodeToString(id[:8]), "relay", r.ID, "err", err)
			}
		}
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		entries, _, err := c.Log(fctx, r.ID, id)
		cancel()
		if err == nil && uint64(len(entries)) < end.From {
			err = fmt.Errorf("its log has %d entries, the end sent starts at %d", len(entries), end.From)
		}
		p := end
		if err == nil {
			p.Log, p.From, p.Relays = append(entries[:p.From:p.From], p.Log...), 0, nil
			err = n.checkFetched(id, p.Log)
		}
		if err == nil {
			err = n.applyFetched(id, sender, p)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("relay %s: %w", r.ID, err))
			continue
		}
		n.fetched.whole.Add(1)
		return nil
	}
	if len(errs) == 0 {
		return errors.New("no relay to ask")
	}
	return errors.Join(errs...)
}

// fetchTail fetches from relay the entries of a group this node holds
// from a little before its head on (the fork window, so that a fork
// there shows) up to the end sent, and applies them with the end as a
// continuation of the held log, applyChunk entries per transaction:
// only what the node lacks is fetched and verified, all of it before any
// is written (checkTail). took is false if the relay's entries do not
// continue the held log (a fork before them, a short log, entries that
// do not verify, or, in a later chunk, entries dated ahead or a log
// changed meanwhile): the caller fetches the whole log instead; chunks
// written before stay, each a verified part of the run checked whole.
func (n *Node) fetchTail(ctx context.Context, c *history.Client, relay peer.ID, id groupstate.GroupID, sender identity.AccountID, end payload, held uint64) (took bool, err error) {
	start := max(held, groupstate.ForkWindow+2) - (groupstate.ForkWindow + 1)
	if start >= end.From {
		return false, nil
	}
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	entries, err := c.LogFrom(fctx, relay, id, start)
	cancel()
	if err != nil {
		return false, err
	}
	if start+uint64(len(entries)) < end.From {
		return false, fmt.Errorf("its log has %d entries, the end sent starts at %d", start+uint64(len(entries)), end.From)
	}
	raws := append(entries[:end.From-start:end.From-start], end.Log...)
	// All of it checked first, in memory, as one run onto the held log:
	// it must lead to the end sent, and the sender be a member at its
	// end; only then is it written, chunk by chunk (an outside review had
	// a relay's other branch written before the chunk that did not lead
	// to the end).
	if err := n.db.View(func(tx *storage.Txn) error { return n.checkTail(tx, sender, id, start, raws) }); err != nil {
		return false, err
	}
	for off := 0; off < len(raws); off += applyChunk {
		last := min(off+applyChunk, len(raws))
		p := end
		p.Log, p.From, p.Relays, p.partial = raws[off:last], start+uint64(off), nil, last < len(raws)
		if p.partial {
			p.Info = nil // (with the last chunk, whose sender check counts)
		}
		err := n.db.Update(func(tx *storage.Txn) (err error) {
			took, err = n.applyContinuing(tx, sender, p)
			return err
		})
		n.refreshTouched()
		if err != nil || !took {
			return false, err
		}
	}
	return true, nil
}

// checkTail checks raws, the group's entries from start on, as one run
// onto the log held: it follows an entry held, verifies (groupstate.Log.With)
// and leaves sender a member (or the author of its last entry, a leave).
func (n *Node) checkTail(tx *storage.Txn, sender identity.AccountID, id groupstate.GroupID, start uint64, raws [][]byte) error {
	mine, err := n.loadGroupTx(tx, id)
	if err != nil {
		return err
	}
	p := payload{From: start, Log: raws}
	if start == 0 || start > mine.Head().Seq+1 || !followsHeld(mine, p, n.parseEntry) {
		return errors.New("the relay's entries do not follow the log held")
	}
	all, err := endEntries(p, n.parseEntry)
	if err != nil {
		return err
	}
	theirs, err := mine.With(all)
	if err != nil {
		return err
	}
	if !sentByMember(theirs, all[len(all)-1], sender) {
		return errors.New("the end's sender is not a member of the log it leads to")
	}
	return nil
}

// applyContinuing applies p, a run of the group's entries, if it
// continues the log this node holds (took false, and nothing written, if
// not).
func (n *Node) applyContinuing(tx *storage.Txn, sender identity.AccountID, p payload) (took bool, err error) {
	gid, err := hex.DecodeString(p.Group)
	if err != nil || len(gid) != 32 || len(p.Log) == 0 {
		return false, nil
	}
	mine, err := n.loadGroupTx(tx, groupstate.GroupID(gid))
	if err != nil || p.From == 0 || p.From > mine.Head().Seq+1 || !followsHeld(mine, p, n.parseEntry) {
		return false, ignoreUnknownGroup(err)
	}
	end, err := endEntries(p, n.parseEntry)
	if err != nil {
		return false, nil
	}
	ahead := n.cfg.Now().Add(maxEntryAhead).UnixMilli()
	for _, e := range end {
		if e.Time > ahead && !holds(mine, e) {
			return false, nil // (the whole path defers it)
		}
	}
	// (A fork further back than the fork window is refused here: the
	// caller then fetches the whole log.)
	if err := n.applyEnd(tx, sender, mine, end, p); err != nil {
		return false, err
	}
	return true, nil
}

func ignoreUnknownGroup(err error) error {
	if errors.Is(err, chat.ErrUnknownGroup) {
		return nil
	}
	return err
}

// checkFetched verifies a fetched log whole, in memory: every entry, the
// chain, its group, and, for a group this node does not hold, that this
// account is a member at its end.
func (n *Node) checkFetched(id groupstate.GroupID, raws [][]byte) error {
	entries, errs := n.parseEntries(raws)
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
	}
	l, err := groupstate.Replay(entries)
	switch {
	case err != nil:
		return err
	case l.Group() != id:
		return errors.New("the log of another group")
	case !n.heldGroup(id) && l.State().Role(n.keys.account.ID()) == groupstate.RoleNone:
		return errors.New("a log that does not make this account a member")
	}
	return nil
}

// applyFetched applies a verified whole log, staged first if it is too
// large for one transaction and the group is new here; staged entries
// the apply did not keep are deleted (all of them, or, if the group was
// written meanwhile by another path, those past its log).
func (n *Node) applyFetched(id groupstate.GroupID, sender identity.AccountID, p payload) error {
	isNew := !n.heldGroup(id)
	if isNew {
		// A new group's log with an entry dated ahead: what precedes it
		// is applied now (if it makes this account a member), the whole
		// is kept in memory until the entry is due and then taken as a
		// held group's log is (mergeLog). Before, the whole was staged,
		// found ahead, deferred and unstaged, again at every retry of a
		// chain of such entries, and the group joined only once the
		// last was due (outside review 19).
		if at, i, ok := n.firstAhead(p.Log); ok {
			n.deferLog(id, sender, p, at)
			if i == 0 {
				return fmt.Errorf("%w: an entry dated ahead of this node's clock", errLogRejected)
			}
			p.Log = p.Log[:i]
		}
	}
	if isNew && n.largeLog(p.Log) {
		_ = n.unstage(id, 0) // (a staging left behind)
		if err := n.stageLog(id, p.Log); err != nil {
			_ = n.unstage(id, len(p.Log))
			return err
		}
		p.staged = true
	}
	if held := n.heldLength(id); held > 0 && n.largeLog(p.Log[min(held, len(p.Log)):]) {
		// A member far behind: what it lacks goes in prefixes of
		// applyChunk entries, a transaction each, then the whole.
		for end := held + applyChunk; end < len(p.Log); end += applyChunk {
			q := p
			q.Log, q.Info, q.partial = p.Log[:end], nil, true
			if err := n.db.Update(func(tx *storage.Txn) error { return n.applyWholeLog(tx, sender, q) }); err != nil {
				n.refreshTouched()
				return err
			}
		}
	}
	err := n.db.Update(func(tx *storage.Txn) error { return n.applyWholeLog(tx, sender, p) })
	n.refreshTouched()
	if p.staged {
		_ = n.unstage(id, len(p.Log))
	}
	return err
}

// applyChunk is how many new entries one transaction of a far-behind
// member's catch-up takes (each entry ~300–400 bytes written).
const applyChunk = 500

// heldLength is the length of the group's log the node holds (0: none).
func (n *Node) heldLength(id groupstate.GroupID) int {
	var held int
	_ = n.db.View(func(tx *storage.Txn) error {
		if l, err := n.loadGroupTx(tx, id); err == nil {
			held = int(l.Head().Seq) + 1
		}
		return nil
	})
	return held
}

// firstAhead returns the time and index of the first of raws' entries
// dated more than maxEntryAhead ahead of this node's clock, if any
// (entries that do not parse are the apply's to refuse).
func (n *Node) firstAhead(raws [][]byte) (int64, int, bool) {
	ahead := n.cfg.Now().Add(maxEntryAhead).UnixMilli()
	entries, _ := n.parseEntries(raws)
	for i, e := range entries {
		if e != nil && e.Time > ahead {
			return e.Time, i, true
		}
	}
	return 0, 0, false
}

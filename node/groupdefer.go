package node

import (
	"encoding/hex"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/storage"
)

// Logs that stopped at an entry dated ahead of this clock (see
// maxEntryAhead) are kept in memory and handed to applyGroupLog again
// once that entry is within the bound, so that members whose clocks
// differ, or a joiner that followed a relay whose clock is fast, come
// together without waiting for someone's next change. An entry more than
// maxDeferAhead ahead is dropped (that is the attack the bound stops);
// at most maxDeferred logs wait, one per group and sender; a restart
// forgets them (the next sync brings the entry again).

const (
	maxDeferAhead = time.Hour
	maxDeferred   = 256
	// deferPoll is how often a waiting log looks at the clock again
	// (the node's clock can be moved: Config.Now).
	deferPoll = 5 * time.Second
)

type deferKey struct {
	group  groupstate.GroupID
	sender identity.AccountID
}

// deferLog keeps p (a group-log from sender that stopped at an entry
// dated at) to apply again once at is within the bound.
func (n *Node) deferLog(group groupstate.GroupID, sender identity.AccountID, p payload, at int64) {
	if at > n.cfg.Now().Add(maxDeferAhead).UnixMilli() {
		return
	}
	k := deferKey{group, sender}
	p.staged = false // (applied later, it is written whole)
	n.deferMu.Lock()
	defer n.deferMu.Unlock()
	if n.deferred == nil {
		n.deferred = map[deferKey]payload{}
	}
	_, waiting := n.deferred[k]
	if !waiting && len(n.deferred) >= maxDeferred {
		return
	}
	n.deferred[k] = p // the newest log of this sender replaces an older one
	if !waiting {
		n.log.Info("group log: kept until an entry dated ahead is due", "group", hex.EncodeToString(group[:8]), "due", time.UnixMilli(at-maxEntryAhead.Milliseconds()))
		time.AfterFunc(deferPoll, func() { n.retryDeferred(k, at) })
	}
}

// retryDeferred applies k's waiting log once its entry is due.
func (n *Node) retryDeferred(k deferKey, at int64) {
	if n.runCtx == nil || n.runCtx.Err() != nil {
		return
	}
	if at > n.cfg.Now().Add(maxEntryAhead).UnixMilli() {
		time.AfterFunc(deferPoll, func() { n.retryDeferred(k, at) })
		return
	}
	n.deferMu.Lock()
	p, ok := n.deferred[k]
	delete(n.deferred, k)
	n.deferMu.Unlock()
	if !ok {
		return
	}
	apply := n.applyGroupLog
	if p.From == 0 {
		// (A whole log: possibly one this node put together from its
		// own entries and a long log's end, over maxLogSync.)
		apply = func(tx *storage.Txn, sender identity.AccountID, p payload) error {
			return ignoreRejected(n.applyWholeLog(tx, sender, p))
		}
	}
	if p.From == 0 && n.largeLog(p.Log) {
		// Too large for one transaction: staged or in chunks, as the
		// first apply would have (outside review 18: the whole log in
		// one transaction failed, and the log was lost).
		if err := ignoreRejected(n.applyFetched(k.group, k.sender, p)); err != nil {
			n.log.Warn("group log: a kept log not applied", "group", hex.EncodeToString(k.group[:8]), "err", err)
		}
		return
	}
	if err := n.db.Update(func(tx *storage.Txn) error { return apply(tx, k.sender, p) }); err != nil {
		n.log.Warn("group log: a kept log not applied", "group", hex.EncodeToString(k.group[:8]), "err", err)
		return
	}
	n.refreshTouched()
}

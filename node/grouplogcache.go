package node

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/storage"
)

// Every operation on a group reads its verified log: the API's reads, a
// post, a change, each entry that comes over gossip. Replaying a stored
// log is linear in its length, and past the parsed-entry cache's size
// (maxCachedEntries) each replay verifies every signature again: a log
// of 80,000 entries took ~15 s per operation. So a node keeps each
// group's verified log in memory (logCache) and checks it against the
// store each time it serves it: the stored creation entry and the stored
// head must be the bytes the cached log was built from (a log is a hash
// chain, so its head fixes every entry before it). A store whose log
// grew since is read from the cached head on, and only those entries are
// verified; anything else (a fork rewrote the head, the log was cleared
// or staged, a transaction that wrote the cached log did not commit) is
// replayed whole, as before. Only what a transaction that has not
// written reads is cached: the cache holds committed logs.
//
// Readers get a Clone: callers add to the logs they load, in
// transactions that may not commit, and the cached log must stay what
// the store held.

// logCache holds verified group logs, bounded by their entries in all.
type logCache struct {
	mu   sync.Mutex
	logs map[groupstate.GroupID]*cachedLog
	held int    // entries in all logs held
	max  int    // entries held at most (0: maxCachedLogEntries)
	tick uint64 // use counter, for eviction
}

type cachedLog struct {
	log   *groupstate.Log // never changed once cached
	first [32]byte        // SHA-256 of the stored creation entry
	head  [32]byte        // SHA-256 of the stored head entry
	used  uint64
}

// maxCachedLogEntries bounds the entries held by the log cache (about
// 1 KiB each in memory: a 200,000-member group's log is ~200 MiB).
const maxCachedLogEntries = 1 << 20

func (c *logCache) get(id groupstate.GroupID) *cachedLog {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl := c.logs[id]
	if cl != nil {
		c.tick++
		cl.used = c.tick
	}
	return cl
}

// put caches l (which the caller no longer changes), evicting the logs
// used least recently while the cache holds too many entries.
func (c *logCache) put(l *groupstate.Log, first, head [32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.logs == nil {
		c.logs = map[groupstate.GroupID]*cachedLog{}
	}
	id := l.Group()
	if old := c.logs[id]; old != nil {
		c.held -= int(old.log.Head().Seq) + 1
	}
	c.tick++
	c.logs[id] = &cachedLog{log: l, first: first, head: head, used: c.tick}
	c.held += int(l.Head().Seq) + 1
	bound := c.max
	if bound == 0 {
		bound = maxCachedLogEntries
	}
	for c.held > bound && len(c.logs) > 1 {
		var lru groupstate.GroupID
		oldest := uint64(0)
		for gid, cl := range c.logs {
			if gid != id && (oldest == 0 || cl.used < oldest) {
				lru, oldest = gid, cl.used
			}
		}
		c.held -= int(c.logs[lru].log.Head().Seq) + 1
		delete(c.logs, lru)
	}
}

// errStaleCache ends reading a group's log from its cached head: replay
// it whole instead.
var errStaleCache = errors.New("node: the cached group log does not fit the store")

// cachedGroupTx is the group's log from the cache, checked against (and
// brought up to) what tx reads; nil if the cache cannot serve it.
func (n *Node) cachedGroupTx(tx *storage.Txn, id groupstate.GroupID) (*groupstate.Log, error) {
	c := n.logCache.get(id)
	if c == nil {
		return nil, nil
	}
	switch first, err := tx.Get(n.st.groupLog, groupEntryKey(id, 0)); {
	case errors.Is(err, storage.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	case sha256.Sum256(first) != c.first:
		return nil, nil
	}
	key, last, err := tx.Last(n.st.groupLog, id[:])
	if err != nil || len(key) != 40 {
		return nil, ignoreNotFound(err)
	}
	seq, head := binary.BigEndian.Uint64(key[32:]), c.log.Head().Seq
	switch {
	case seq == head && sha256.Sum256(last) == c.head:
		return c.log.Clone(), nil
	case seq <= head:
		return nil, nil
	}
	at, err := tx.Get(n.st.groupLog, groupEntryKey(id, head))
	if err != nil || sha256.Sum256(at) != c.head {
		return nil, ignoreNotFound(err)
	}
	// The store holds more: verified from the cached head on.
	l := c.log.Clone()
	var headRaw []byte
	start := binary.BigEndian.AppendUint64(nil, head+1)
	err = tx.IterateFrom(n.st.groupLog, id[:], start, func(k, v []byte) error {
		if len(k) != 40 {
			return errStaleCache // (a damaged store: the replay says so; an outside review had it panic)
		}
		e, err := n.parseEntry(v)
		if err != nil || e.Seq != l.Head().Seq+1 || binary.BigEndian.Uint64(k[32:]) != e.Seq {
			return errStaleCache
		}
		if _, err := l.Add(e); err != nil {
			return errStaleCache
		}
		headRaw = append(headRaw[:0], v...)
		return nil
	})
	switch {
	case errors.Is(err, errStaleCache):
		return nil, nil
	case err != nil:
		return nil, err
	case !bytes.Equal(headRaw, last):
		return nil, nil // (written meanwhile: tx reads one snapshot, so not expected)
	}
	if tx.Changed() {
		return l, nil // (not committed yet: not cached)
	}
	n.logCache.put(l, c.first, sha256.Sum256(last))
	return l.Clone(), nil
}

func ignoreNotFound(err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return err
}

// readGroupTx is one group's verified log as tx reads it: from the
// cache if it fits the store, else replayed (and cached). bad is why the
// stored log does not verify; a nil log and nil errors mean no group
// (none stored, or one staged).
func (n *Node) readGroupTx(tx *storage.Txn, id groupstate.GroupID) (l *groupstate.Log, bad, err error) {
	if l, err := n.cachedGroupTx(tx, id); l != nil || err != nil {
		return l, nil, err
	}
	if err := n.replayLogs(tx, id[:], func(_ []byte, rl *groupstate.Log, rerr error) { l, bad = rl, rerr }); err != nil {
		return nil, nil, err
	}
	if l == nil {
		return nil, bad, nil
	}
	first, err := l.Entries(0)[0].MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	head, err := l.Head().MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	if tx.Changed() {
		return l, nil, nil // (not committed yet: not cached)
	}
	n.logCache.put(l, sha256.Sum256(first), sha256.Sum256(head))
	return l.Clone(), nil, nil
}

// groupIDsTx lists the groups with a stored log (staged ones too), one
// seek per group rather than a read of every entry.
func (n *Node) groupIDsTx(tx *storage.Txn) ([]groupstate.GroupID, error) {
	var ids []groupstate.GroupID
	var start []byte
	for {
		var id []byte
		err := tx.IterateFrom(n.st.groupLog, nil, start, func(k, _ []byte) error {
			if len(k) != 40 {
				return fmt.Errorf("node: group log key of %d bytes", len(k))
			}
			id = append([]byte(nil), k[:32]...)
			return storage.ErrStop
		})
		if err != nil {
			return nil, err
		}
		if id == nil {
			return ids, nil
		}
		ids = append(ids, groupstate.GroupID(id))
		start = append(id, bytes.Repeat([]byte{0xff}, 9)...) // past every seq of id
	}
}

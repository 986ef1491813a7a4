package node

import (
	"slices"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/storage"
)

// A group's log is stored entry by entry (groups.log: group ‖ seq), and a
// group exists for this node once its creation entry (seq 0) is stored:
// a log too large for one transaction (a node's store takes ~600 KiB in
// one, ~1,700 entries) is staged first — its entries after the creation
// written in batches, where nothing reads them as a group
// (replayLogs passes over a log without its creation) — and then the
// transaction that decides to keep it writes the creation entry with
// whatever else it changes. If it decides not to, the staged entries are
// deleted again.

// largeLog reports whether the entries raws take more than a quarter of
// what one transaction holds.
func (n *Node) largeLog(raws [][]byte) bool {
	size := 0
	for _, r := range raws {
		size += len(r) + 64
	}
	return int64(size) > n.db.MaxTxnBytes()/4
}

// stageLog writes raws' entries after the creation one.
func (n *Node) stageLog(id groupstate.GroupID, raws [][]byte) error {
	b := n.db.NewBatch()
	for seq := 1; seq < len(raws); seq++ {
		if err := b.Set(n.st.groupLog, groupEntryKey(id, uint64(seq)), raws[seq]); err != nil {
			b.Cancel()
			return err
		}
	}
	return b.Flush()
}

// clearLogOutside deletes a group's stored entries in batches (a whole
// log is about to replace it, or a staged one was not kept).
func (n *Node) clearLogOutside(id groupstate.GroupID) error {
	var keys [][]byte
	if err := n.db.View(func(tx *storage.Txn) error {
		return tx.Iterate(n.st.groupLog, id[:], func(k, _ []byte) error {
			keys = append(keys, slices.Clone(k))
			return nil
		})
	}); err != nil {
		return err
	}
	b := n.db.NewBatch()
	for _, k := range keys {
		if err := b.Delete(n.st.groupLog, k); err != nil {
			b.Cancel()
			return err
		}
	}
	return b.Flush()
}

// heldGroup reports whether the group exists in the store (its creation
// entry is stored).
func (n *Node) heldGroup(id groupstate.GroupID) bool {
	var ok bool
	_ = n.db.View(func(tx *storage.Txn) (err error) {
		ok, err = tx.Has(n.st.groupLog, groupEntryKey(id, 0))
		return err
	})
	return ok
}

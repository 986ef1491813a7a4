package node

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// A group's log is stored entry by entry (groups.log: group ‖ seq), and a
// group exists for this node once its creation entry (seq 0) is stored:
// a log too large for one transaction (a node's store takes ~600 KiB in
// one, ~1,700 entries) is staged first — its entries after the creation
// written in several transactions, where nothing reads them as a group
// (replayLogs passes over a log without its creation) — and then the
// transaction that decides to keep it checks that what it staged is
// still there, unchanged, and writes the creation entry with whatever
// else it changes. If it decides not to, the staged entries are deleted
// again.
//
// Every one of these transactions claims the group's log (claimLog), as
// every other change of it does, and checks the group's state inside
// itself: a path that stores the group meanwhile (a fetch, an
// invitation, a join by link) is never overwritten or deleted by a
// staging that began before it — the staging fails instead
// (errStageRaced) and the caller's next fetch or the user's next try
// starts over. (Before: staged entries were written and deleted in
// blind batches after a check made outside them, so an entry appended
// between the check and the batch could be deleted; outside review 17.)

// errStageRaced: the group's stored log was changed by another path
// while a log was being staged.
var errStageRaced = errors.New("node: group log changed while a long log was staged")

// largeLog reports whether the entries raws take more than a quarter of
// what one transaction holds.
func (n *Node) largeLog(raws [][]byte) bool {
	size := 0
	for _, r := range raws {
		size += len(r) + 64
	}
	return int64(size) > n.db.MaxTxnBytes()/4
}

// stageLog writes raws' entries after the creation one, a quarter of a
// transaction's capacity at a time, each transaction finding the group
// not held (no creation entry stored).
func (n *Node) stageLog(id groupstate.GroupID, raws [][]byte) error {
	limit := int(n.db.MaxTxnBytes() / 4)
	for from := 1; from < len(raws); {
		to, size := from, 0
		for to < len(raws) && (to == from || size+len(raws[to])+64 <= limit) {
			size += len(raws[to]) + 64
			to++
		}
		if err := n.db.Update(func(tx *storage.Txn) error {
			if err := n.claimLog(tx, id); err != nil {
				return err
			}
			if held, err := tx.Has(n.st.groupLog, groupEntryKey(id, 0)); err != nil || held {
				return orErr(err, errStageRaced)
			}
			for seq := from; seq < to; seq++ {
				if err := tx.Set(n.st.groupLog, groupEntryKey(id, uint64(seq)), raws[seq]); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
		from = to
	}
	return nil
}

// orErr returns err if it is not nil, else alt.
func orErr(err, alt error) error {
	if err != nil {
		return err
	}
	return alt
}

// checkStaged reports whether group id's stored entries are exactly
// raws' after the creation one (what stageLog wrote), inside tx, which
// claims the log: another path that changed them meanwhile makes the
// keeping transaction fail (errStageRaced) rather than give the group a
// creation entry over someone else's entries.
func (n *Node) checkStaged(tx *storage.Txn, id groupstate.GroupID, raws [][]byte) error {
	if err := n.claimLog(tx, id); err != nil {
		return err
	}
	next := uint64(1)
	err := tx.Iterate(n.st.groupLog, id[:], func(k, v []byte) error {
		seq := binary.BigEndian.Uint64(k[32:])
		if seq != next || seq >= uint64(len(raws)) || !bytes.Equal(v, raws[seq]) {
			return fmt.Errorf("%w: entry %d", errStageRaced, seq)
		}
		next++
		return nil
	})
	if err == nil && next != uint64(len(raws)) {
		err = fmt.Errorf("%w: %d of %d entries", errStageRaced, next-1, len(raws)-1)
	}
	return err
}

// unstage deletes the entries of group id below count that are not
// part of its stored log — or, if the group is not held, every stored
// entry of it (another staging's left behind too: a process stopped
// mid-staging, a longer log's; kept, they made every staging of a
// shorter log fail, outside review 18) — a bounded number per
// transaction, each transaction finding the log's end anew.
func (n *Node) unstage(id groupstate.GroupID, count int) error {
	for {
		done := true
		if err := n.db.Update(func(tx *storage.Txn) error {
			if err := n.claimLog(tx, id); err != nil {
				return err
			}
			held, to := uint64(0), uint64(count)
			switch l, err := n.loadGroupTx(tx, id); {
			case err == nil:
				held = l.Head().Seq + 1
			case errors.Is(err, chat.ErrUnknownGroup):
				to = ^uint64(0) // no group: whatever is stored is a staging's
			default:
				return err
			}
			var err error
			done, err = n.dropEntries(tx, id, held, to)
			return err
		}); err != nil || done {
			return err
		}
	}
}

// unstageChunk is how many entries one transaction of unstage or
// clearLogOutside deletes.
const unstageChunk = 2000

// dropEntries deletes up to unstageChunk of group id's stored entries
// with from <= seq < to, and reports whether that was all of them.
func (n *Node) dropEntries(tx *storage.Txn, id groupstate.GroupID, from, to uint64) (done bool, err error) {
	var keys [][]byte
	if err := tx.Iterate(n.st.groupLog, id[:], func(k, _ []byte) error {
		if seq := binary.BigEndian.Uint64(k[32:]); seq >= from && seq < to && len(keys) < unstageChunk {
			keys = append(keys, slices.Clone(k))
		}
		return nil
	}); err != nil {
		return false, err
	}
	for _, k := range keys {
		if err := tx.Delete(n.st.groupLog, k); err != nil {
			return false, err
		}
	}
	return len(keys) < unstageChunk, nil
}

// clearLogOutside deletes every stored entry of group id, the creation
// entry first (a whole log is about to replace a log held from before),
// a bounded number per transaction (clearSome). With unlessMember, a
// held log that makes this account a member is left alone
// (errStillMember): a join by link replaces a log this account left,
// and one that a contact's add stored while the join fetched the
// group's log must stay (outside review 18).
func (n *Node) clearLogOutside(id groupstate.GroupID, unlessMember bool) error {
	for first := true; ; first = false {
		if done, err := n.clearSome(id, first, unlessMember); err != nil || done {
			return err
		}
	}
}

// errStillMember: a log about to be replaced makes this account a member.
var errStillMember = errors.New("node: this account is a member of the group already")

// notMemberTx fails (errStillMember) if group id's held log makes this
// account a member. A held log that does not verify (a damaged store)
// makes no one a member: what replaces it repairs it (outside review 19:
// refusing on it wedged every join by link).
func (n *Node) notMemberTx(tx *storage.Txn, id groupstate.GroupID) error {
	l, bad, err := n.readGroupTx(tx, id)
	switch {
	case err != nil:
		return err
	case bad != nil:
		n.log.Warn("group: a stored log that does not verify is replaced", "group", hex.EncodeToString(id[:8]), "err", bad)
		return nil
	case l != nil && l.State().Role(n.keys.account.ID()) != groupstate.RoleNone:
		return errStillMember
	}
	return nil
}

// clearSome deletes up to unstageChunk of group id's stored entries in
// one transaction and reports whether none are left. Unless first, the
// creation entry must be absent (an earlier clearSome deleted it):
// present, another path has stored the group meanwhile, and its log is
// left alone (errStageRaced).
func (n *Node) clearSome(id groupstate.GroupID, first, unlessMember bool) (done bool, err error) {
	err = n.db.Update(func(tx *storage.Txn) error {
		if err := n.claimLog(tx, id); err != nil {
			return err
		}
		if first && unlessMember {
			if err := n.notMemberTx(tx, id); err != nil {
				return err
			}
		}
		if held, err := tx.Has(n.st.groupLog, groupEntryKey(id, 0)); err != nil || (held && !first) {
			return orErr(err, errStageRaced)
		}
		var err error
		done, err = n.dropEntries(tx, id, 0, ^uint64(0))
		return err
	})
	return done, err
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

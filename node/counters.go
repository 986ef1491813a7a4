package node

import (
	"encoding/binary"
	"errors"

	"github.com/peergram/peergram/storage"
)

// Counters used to be read, incremented and written inside the
// transaction that used them, which made every two concurrent sends
// conflict (and retry, one at a time). They are now storage.Sequences,
// leased in blocks outside any transaction: numbers stay increasing across
// restarts, with gaps after a crash, which nothing minds.

// openCounters opens the outbox and chat sequences. Chat numbers continue
// above the per-chat counters of a home made before the sequence existed
// ("seq/<account>" in meta), so they keep increasing in every chat.
func (n *Node) openCounters() error {
	var base uint64
	err := n.db.Update(func(tx *storage.Txn) error {
		raw, err := tx.Get(n.st.meta, []byte("chat-seq-base"))
		switch {
		case err == nil && len(raw) == 8:
			base = binary.BigEndian.Uint64(raw)
			return nil
		case err != nil && !errors.Is(err, storage.ErrNotFound):
			return err
		}
		base = 0
		if err := tx.Iterate(n.st.meta, []byte("seq/"), func(_, v []byte) error {
			if len(v) == 8 {
				base = max(base, binary.BigEndian.Uint64(v))
			}
			return nil
		}); err != nil {
			return err
		}
		return tx.Set(n.st.meta, []byte("chat-seq-base"), binary.BigEndian.AppendUint64(nil, base))
	})
	if err != nil {
		return err
	}
	n.chatSeqBase = base
	if n.chatSeq, err = n.db.Sequence(n.st.meta, "chat"); err != nil {
		return err
	}
	n.outSeq, err = n.db.Sequence(n.st.meta, "outbox")
	return err
}

// nextChatSeq numbers an outgoing chat message.
func (n *Node) nextChatSeq() (uint64, error) {
	s, err := n.chatSeq.Next()
	return n.chatSeqBase + s, err
}

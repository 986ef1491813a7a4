package node

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/peergram/peergram/relay/directory"
	"github.com/peergram/peergram/storage"
)

// One-time prekeys leave the node's hands in two ways: a directory hands
// one out (the node does not see it), and later, maybe, an initial message
// uses it (the node deletes it then). Keys handed out to someone who never
// writes — a drainer, say — would be kept forever, and a directory's pool
// drained by fetches alone would never be refilled, since the node's own
// count does not move. So the node asks each home relay's directory for
// its stock (Stock) every maintenance round: a pool under refillBelow
// makes it publish fresh keys, and the relay's hand-out cursor, once it is
// older than retireHandedOut on every relay, tells which keys no initial
// message can still use.

// retireHandedOut is how long after a directory handed a one-time prekey
// out the node keeps its private key: an initial message using it waits
// at most in its sender's outbox (30 days) and then in a relay mailbox
// (30 days).
const retireHandedOut = 61 * 24 * time.Hour

// otkMark is what one relay's directory had handed out at a time.
type otkMark struct {
	Relay string `json:"relay"`
	At    int64  `json:"at"` // unix seconds
	NextX uint32 `json:"next_x25519"`
	NextQ uint32 `json:"next_mlkem"`
}

var otkMarksKey = []byte("otk-marks")

// checkStock asks every home relay for this device's one-time prekey
// stock, records the hand-out cursors, retires the keys every relay handed
// out at least retireHandedOut ago, and reports whether a relay's pool is
// low (the caller refills and publishes).
func (n *Node) checkStock(ctx context.Context) bool {
	now := n.cfg.Now()
	low := false
	var fresh []otkMark
	for _, r := range n.relays {
		sctx, cancel := context.WithTimeout(ctx, fetchTimeout)
		info, err := n.dir.StockInfo(sctx, r.ID, n.keys.device.ID())
		cancel()
		if err != nil {
			if !errors.Is(err, directory.ErrNotFound) {
				n.log.Info("prekey stock", "relay", r.ID, "err", err)
			}
			continue
		}
		if info.X25519 < refillBelow || info.MLKEM < refillBelow {
			low = true
		}
		if info.NextX25519 != 0 || info.NextMLKEM != 0 {
			fresh = append(fresh, otkMark{Relay: r.ID.String(), At: now.Unix(), NextX: info.NextX25519, NextQ: info.NextMLKEM})
		}
	}
	if err := n.retireHandedOut(now, fresh); err != nil {
		n.log.Error("retire handed-out prekeys", "err", err)
	}
	return low
}

// retireHandedOut adds fresh marks, keeps per relay the newest mark older
// than retireHandedOut and all newer ones, and retires the one-time
// prekeys below the old marks of every home relay.
func (n *Node) retireHandedOut(now time.Time, fresh []otkMark) error {
	n.pkMu.Lock()
	defer n.pkMu.Unlock()
	var marks []otkMark
	if err := n.db.View(func(tx *storage.Txn) error {
		raw, err := tx.Get(n.st.meta, otkMarksKey)
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return json.Unmarshal(raw, &marks)
	}); err != nil {
		return err
	}
	marks = append(marks, fresh...)
	cutoff := now.Add(-retireHandedOut).Unix()
	old := map[string]otkMark{} // per relay, the newest mark older than the cutoff
	var kept []otkMark
	for _, m := range marks {
		if m.At > cutoff {
			kept = append(kept, m)
		} else if o, ok := old[m.Relay]; !ok || m.At > o.At || (m.At == o.At && m.NextX >= o.NextX && m.NextQ >= o.NextQ) {
			// A relay's cursor only moves up: of marks older than the
			// cutoff the newest (the highest) counts.
			old[m.Relay] = m
		}
	}
	var belowX, belowQ uint32
	everyRelay := len(n.relays) > 0
	for i, r := range n.relays {
		m, ok := old[r.ID.String()]
		if !ok {
			everyRelay = false
			break
		}
		if i == 0 || m.NextX < belowX {
			belowX = m.NextX
		}
		if i == 0 || m.NextQ < belowQ {
			belowQ = m.NextQ
		}
	}
	for _, m := range old {
		kept = append(kept, m)
	}
	raw, err := json.Marshal(kept)
	if err != nil {
		return err
	}
	retired := 0
	pk := n.currentPrekeys()
	if everyRelay {
		pk = pk.Clone()
		retired = pk.RetireOneTime(belowX, belowQ)
	}
	if err := n.db.Update(func(tx *storage.Txn) error {
		if retired > 0 {
			if err := n.st.putPrekeys(tx, pk); err != nil {
				return err
			}
		}
		return tx.Set(n.st.meta, otkMarksKey, raw)
	}); err != nil {
		return err
	}
	if retired > 0 {
		n.setPrekeys(pk)
		n.log.Info("retired one-time prekeys handed out long ago and never used", "count", retired)
	}
	return nil
}

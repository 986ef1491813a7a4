package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
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

// logFetch is one group's fetch: the newest end sent, and its sender.
type logFetch struct {
	sender identity.AccountID
	p      payload
}

// logFetchWaits are the pauses before each attempt: the sender's relays
// may not hold the change yet (members register after each change).
var logFetchWaits = []time.Duration{0, 2 * time.Second, 10 * time.Second, 30 * time.Second, 2 * time.Minute}

// maxLogFetches bounds the groups fetched at once.
const maxLogFetches = 8

// fetchGroupLog starts fetching what goes before p's entries (unless a
// fetch of that group runs: it then takes p, the newer end, instead).
func (n *Node) fetchGroupLog(id groupstate.GroupID, sender identity.AccountID, p payload) {
	if n.runCtx == nil {
		return
	}
	n.fetchMu.Lock()
	defer n.fetchMu.Unlock()
	if f := n.fetching[id]; f != nil {
		if p.From+uint64(len(p.Log)) >= f.p.From+uint64(len(f.p.Log)) {
			f.sender, f.p = sender, p
		}
		return
	}
	if len(n.fetching) >= maxLogFetches {
		n.log.Info("group log: a long log's end dropped: too many fetches", "group", hex.EncodeToString(id[:8]))
		return
	}
	if n.fetching == nil {
		n.fetching = map[groupstate.GroupID]*logFetch{}
	}
	n.fetching[id] = &logFetch{sender: sender, p: p}
	go n.runLogFetch(n.runCtx, id)
}

func (n *Node) runLogFetch(ctx context.Context, id groupstate.GroupID) {
	defer func() {
		n.fetchMu.Lock()
		delete(n.fetching, id)
		n.fetchMu.Unlock()
	}()
	var err error
	for _, wait := range logFetchWaits {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		n.fetchMu.Lock()
		f := *n.fetching[id]
		n.fetchMu.Unlock()
		if err = n.fetchLogOnce(ctx, id, f); err == nil {
			return
		}
		n.log.Debug("group log: fetching the rest", "group", hex.EncodeToString(id[:8]), "err", err)
	}
	n.log.Info("group log: a long log's end dropped: the rest not found at a relay", "group", hex.EncodeToString(id[:8]), "err", err)
}

// fetchLogOnce asks the relays f names and this node's own for the
// group's log and applies the entries before f's end with it; the first
// relay whose log does so wins.
func (n *Node) fetchLogOnce(ctx context.Context, id groupstate.GroupID, f logFetch) error {
	var relays []peer.AddrInfo
	for _, s := range f.p.Relays {
		if ai, err := peer.AddrInfoFromString(s); err == nil && ai.ID != n.host.ID() {
			relays = append(relays, *ai)
		}
	}
	relays = append(relays, n.relays...)
	c := history.NewClient(n.host)
	var errs []error
	tried := map[peer.ID]bool{}
	for _, r := range relays {
		if tried[r.ID] {
			continue
		}
		tried[r.ID] = true
		n.host.Peerstore().AddAddrs(r.ID, r.Addrs, peerstore.TempAddrTTL)
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		entries, _, err := c.Log(fctx, r.ID, id)
		cancel()
		if err == nil && uint64(len(entries)) < f.p.From {
			err = fmt.Errorf("its log has %d entries, the end sent starts at %d", len(entries), f.p.From)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("relay %s: %w", r.ID, err))
			continue
		}
		p := f.p
		p.Log, p.From, p.Relays = append(entries[:p.From:p.From], p.Log...), 0, nil
		if !n.heldGroup(id) && n.largeLog(p.Log) {
			// A new member's log, too large for one transaction.
			if err := n.stageLog(id, p.Log); err != nil {
				return err
			}
			p.staged = true
		}
		err = n.db.Update(func(tx *storage.Txn) error { return n.applyWholeLog(tx, f.sender, p) })
		if p.staged && !n.heldGroup(id) {
			_ = n.clearLogOutside(id) // not kept (not a member, an invitation, an error)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("relay %s: %w", r.ID, err))
			continue
		}
		n.refreshTouched()
		return nil
	}
	if len(errs) == 0 {
		return errors.New("no relay to ask")
	}
	return errors.Join(errs...)
}

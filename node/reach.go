package node

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Reachability is remembered per device (its libp2p peer): once a direct
// attempt failed, the device's envelopes go straight to its mailbox — not
// after a direct attempt each, which made every message to an offline
// contact wait out the direct timeout — until the device is seen online
// again (the node has a connection to it: it dialled us, or a relay
// circuit or hole punch connected us), or until reprobeAfter has passed.
const reprobeAfter = 2 * time.Minute

type reachability struct {
	mu   sync.Mutex // guards down
	down map[peer.ID]time.Time
}

// tryDirect reports whether a direct attempt to p is worth making now.
func (r *reachability) tryDirect(net network.Network, p peer.ID, now time.Time) bool {
	if c := net.Connectedness(p); c == network.Connected || c == network.Limited {
		return true // connected, directly or through a relay circuit: online
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.down[p]
	return !ok || now.Sub(at) >= reprobeAfter
}

// failed records a failed direct attempt to p.
func (r *reachability) failed(p peer.ID, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down == nil {
		r.down = map[peer.ID]time.Time{}
	}
	r.down[p] = now
}

// reached records a direct delivery to p.
func (r *reachability) reached(p peer.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.down, p)
}

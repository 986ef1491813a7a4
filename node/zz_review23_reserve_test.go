package node

// Outside review 23: a home relay that grants short reservations.

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
)

type rv23CountReserve struct{ n atomic.Int64 }

func (c *rv23CountReserve) AllowReserve(peer.ID, ma.Multiaddr) bool          { c.n.Add(1); return true }
func (c *rv23CountReserve) AllowConnect(peer.ID, ma.Multiaddr, peer.ID) bool { return true }

// TestReview23ShortReservationSpins: a home relay grants circuit
// reservations of 30 s (its operator's setting, or a relay that wants
// to make its users spin). keepRelay subscribes to the mailbox until a
// minute before the reservation expires — already past — so SubscribeWith
// returns at once, subCtx.Err() is set, and the loop `continue`s with no
// backoff: Connect (now ForceDirectDial), Reserve, Subscribe, again, as
// fast as the relay answers. Expected: a few reservations a minute at
// most (the loop's backoff, or a refresh at half the reservation's
// life).
func TestReview23ShortReservationSpins(t *testing.T) {
	r := startRelay(t, t.TempDir())
	r.relay.Close()
	res := relayv2.DefaultResources()
	res.ReservationTTL = 30 * time.Second
	acl := &rv23CountReserve{}
	var err error
	if r.relay, err = relayv2.New(r.h, relayv2.WithResources(res), relayv2.WithACL(acl)); err != nil {
		t.Fatal(err)
	}
	home, _ := initHome(t, "alice")
	alice := startNode(t, home, r.addr)
	_ = alice
	_ = context.Background()
	time.Sleep(time.Second)
	n0 := acl.n.Load()
	time.Sleep(3 * time.Second)
	n := acl.n.Load() - n0
	t.Logf("reservations asked by one node in 3 s: %d", n)
	if n > 10 {
		t.Errorf("a home relay granting 30 s reservations makes the node reserve in a tight loop: %d reservations in 3 s", n)
	}
}

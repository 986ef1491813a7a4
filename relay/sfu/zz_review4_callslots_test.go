package sfu_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/calls"
	"github.com/peergram/peergram/calls/sfuproto"
	"github.com/peergram/peergram/relay/sfu"
)

// TestReview4OneDeviceTakesEveryCallSlot: the SFU bounds the calls it
// runs at once (MaxCalls, 500 by default) but not how many of them one
// device may open. A single member device, with nothing but its own
// valid joins for made-up call IDs that it never answers, takes every
// slot on the relay: afterwards a member of an unrelated group cannot
// start a call ("sfu: full"). Expected: a per-device (and/or per-group)
// bound, so one member cannot deny every other group on the relay.
func TestReview4OneDeviceTakesEveryCallSlot(t *testing.T) {
	relay := newHost(t)
	const slots = 500 // the default MaxCalls
	srv, ms, _ := r4Server(t, sfu.Config{Host: relay})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	attacker := newMember(t, relay, ms)
	groupA := r4Group()
	var conns []*sfuproto.Conn
	// libp2p's resource manager bounds streams per peer, not per device:
	// the device simply uses a few peer IDs (the join binds the peer ID
	// it is made for, any peer ID will do).
	h := attacker.h
	for i := 0; i < slots; i++ {
		if i > 0 && i%50 == 0 {
			h = newHost(t)
			if err := h.Connect(ctx, peer.AddrInfo{ID: relay.ID(), Addrs: relay.Addrs()}); err != nil {
				t.Fatal(err)
			}
		}
		c, err := sfu.Dial(ctx, h, relay.ID(), groupA, newCallID(), attacker.dev, attacker.cert)
		if err != nil {
			t.Fatalf("join %d: %v", i, err)
		}
		m, err := c.Recv()
		if err != nil {
			t.Fatalf("join %d: %v", i, err)
		}
		if m.Type == sfuproto.TypeError {
			t.Logf("join %d refused: %s", i, m.Error)
			break
		}
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	t.Logf("one device holds %d calls on the relay (srv.Calls()=%d)", len(conns), srv.Calls())

	victim := newMember(t, relay, ms)
	_, err := victim.join(ctx, relay, r4Group(), newCallID(), calls.Media{})
	if errors.Is(err, calls.ErrRefused) {
		t.Fatalf("a member of another group cannot start a call: %v (one device holds all %d call slots)", err, len(conns))
	}
	if err != nil {
		t.Fatal(err)
	}
}

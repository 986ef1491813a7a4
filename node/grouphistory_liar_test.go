package node

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/peergram/peergram/relay/history"
)

// TestHistoryRelaySaysUnknownForever: a home relay takes every
// registration and answers every Heads that it keeps no history of the
// group (a relay that lost its store says so once; this one lies). The
// node registers again once, then at most once a minute: it does not
// send the group's whole log again and again; and a head it names for a
// group the node did not ask about is ignored.
func TestHistoryRelaySaysUnknownForever(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	var registers, heads, queries atomic.Int64
	stranger := [32]byte{0x5a, 1, 2, 3}
	ok := rv22Frame(0x06, protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 0))
	h.SetStreamHandler(history.ProtocolID, func(s network.Stream) {
		defer s.Close()
		var hdr [5]byte
		if _, err := io.ReadFull(s, hdr[:]); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[:4])-1)
		if _, err := io.ReadFull(s, body); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, s)
		switch hdr[4] {
		case 0x01: // Register
			registers.Add(1)
			_, _ = s.Write(ok)
		case 0x04: // Heads: every group unknown
			heads.Add(1)
			var out []byte
			for _, g := range rv22AskedGroups(body) {
				out = rv22AppendHead(out, g, 3, 1) // unknown
			}
			// And a group no one asked about, with a head past any cursor.
			out = rv22AppendHead(out, stranger[:], 2, 5)
			_, _ = s.Write(rv22Frame(0x04, out))
		case 0x02: // Query
			queries.Add(1)
			_, _ = s.Write(ok)
		default:
			_, _ = s.Write(ok)
		}
	})
	liar := fmt.Sprintf("%s/p2p/%s", h.Addrs()[0], h.ID())
	aliceHome, _ := initHome(t, "alice")
	alice := startNode(t, aliceHome, relay.addr, liar)
	if _, err := alice.CreateGroup(context.Background(), "Liar"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a second registration at the lying relay (the one its first Heads asks for)", func() (bool, error) {
		return registers.Load() >= 2, nil
	})
	r0, h0 := registers.Load(), heads.Load()
	time.Sleep(5 * time.Second)
	r, hs := registers.Load()-r0, heads.Load()-h0
	t.Logf("in 5 s: %d registrations, %d Heads", r, hs)
	if r > 1 {
		t.Errorf("a relay that always says it lost the group had the node register it %d times in 5 s", r)
	}
	if hs > 50 {
		t.Errorf("%d Heads in 5 s: the history loop spins", hs)
	}
	// The group it was not asked about is not caught up on.
	if q := queries.Load(); q > 0 {
		t.Errorf("the node queried the relay %d times, for a group it did not ask about", q)
	}
}

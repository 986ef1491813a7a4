package node

// Outside review 22: a home relay that lies in its history pages.

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

// rv22Frame is a history protocol frame: length (type and body) u32,
// type u8, body.
func rv22Frame(t byte, body []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(1+len(body)))
	return append(append(out, t), body...)
}

// rv22AskedGroups is the group IDs a Heads request names.
func rv22AskedGroups(body []byte) [][]byte {
	var out [][]byte
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			return out
		}
		body = body[n:]
		n = protowire.ConsumeFieldValue(num, typ, body)
		if n < 0 {
			return out
		}
		if num == 1 && typ == protowire.BytesType {
			in, _ := protowire.ConsumeBytes(body)
			if gnum, gtyp, m := protowire.ConsumeTag(in); m > 0 && gnum == 1 && gtyp == protowire.BytesType {
				g, _ := protowire.ConsumeBytes(in[m:])
				out = append(out, g)
			}
		}
		body = body[n:]
	}
	return out
}

// rv22AppendHead appends a Heads answer's head: the group and one
// varint field (2 seq, 3 unknown).
func rv22AppendHead(out, group []byte, field protowire.Number, v uint64) []byte {
	var head []byte
	head = protowire.AppendBytes(protowire.AppendTag(head, 1, protowire.BytesType), group)
	head = protowire.AppendVarint(protowire.AppendTag(head, field, protowire.VarintType), v)
	return protowire.AppendBytes(protowire.AppendTag(out, 1, protowire.BytesType), head)
}

// TestReview22LyingRelaySpinsCatchUp: a home relay answers every Query
// with an empty page that says More (a page that stopped before its
// head, with nothing in it). catchUp moves its cursor only past items,
// so it asks again at once, forever, with no backoff: the node's history
// loop for that relay never leaves catchUp (no registration renewal, no
// Store of unconfirmed posts, no other group's repair at that relay) and
// it keeps a stream a few milliseconds busy in a tight loop. A page with
// More and no items is malformed (an honest relay sets More only after
// items) and should be refused like items out of order.
func TestReview22LyingRelaySpinsCatchUp(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	var queries, heads atomic.Int64
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
		_, _ = io.Copy(io.Discard, s) // (further Register pages)
		switch hdr[4] {
		case 0x01: // Register: OK
			_, _ = s.Write(rv22Frame(0x06, protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 0)))
		case 0x04: // Heads: every group's head is 1
			heads.Add(1)
			var out []byte
			for _, g := range rv22AskedGroups(body) {
				out = rv22AppendHead(out, g, 2, 1)
			}
			_, _ = s.Write(rv22Frame(0x04, out))
		case 0x02: // Query: nothing, and more to come
			queries.Add(1)
			var pg []byte
			pg = protowire.AppendVarint(protowire.AppendTag(pg, 2, protowire.VarintType), 1) // first
			pg = protowire.AppendVarint(protowire.AppendTag(pg, 3, protowire.VarintType), 1) // head
			pg = protowire.AppendVarint(protowire.AppendTag(pg, 4, protowire.VarintType), 1) // more
			_, _ = s.Write(rv22Frame(0x05, pg))
		default:
			_, _ = s.Write(rv22Frame(0x06, protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 6)))
		}
	})
	liar := fmt.Sprintf("%s/p2p/%s", h.Addrs()[0], h.ID())
	aliceHome, _ := initHome(t, "alice")
	alice := startNode(t, aliceHome, relay.addr, liar)
	if _, err := alice.CreateGroup(context.Background(), "Liar"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the first Heads at the lying relay", func() (bool, error) { return heads.Load() > 0, nil })
	time.Sleep(time.Second)
	q0 := queries.Load()
	time.Sleep(5 * time.Second)
	q := queries.Load() - q0
	t.Logf("Queries from the node to the lying relay in 5 s: %d (Heads: %d in all)", q, heads.Load())
	if q > 50 {
		t.Errorf("a relay's empty pages that say More keep the node's history loop querying it in a tight loop: %d Queries in 5 s", q)
	}
}

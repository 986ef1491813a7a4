package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/relay/history"
)

// TestReview11EndAddedDuringFetchLost: a member behind takes entries
// ahead of its log from gossip or a relay's history, one by one, each
// handed to the group's running fetch as its newest end (fetchGroupLog).
// runLogFetch works on a copy of the ends taken before each attempt; when
// an attempt succeeds it returns and deletes the fetch, and an end added
// during that attempt goes with it. The entries of that end were taken
// (the history cursor is past them, gossip does not bring them again), so
// the member stays behind until someone's next change — in a quiet group
// it may not learn of a removal or a ban at all. (Seen first over
// gossip, without any attacker: Bob stuck two entries behind for 35 s,
// TestLargeGroupChangesOverGossip-like setup with changes right after
// his add.) Here Bob's fetch of Alice's end at entry h+2 is held at a
// relay until her end at h+4 has been added.
func TestReview11EndAddedDuringFetchLost(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNodeWith(t, aliceHome, largeGroups, relay.addr)
	bob := startNodeWith(t, bobHome, largeGroups, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob in the group", holdsEntry(bob, group, alice.reloadGroup(t, group).Head()))
	// Four changes by Alice that reach no one (signed here, not sent).
	l := alice.reloadGroup(t, group)
	h := l.Head().Seq
	var raws [][]byte
	for _, e := range l.Entries(0) {
		b, _ := e.MarshalBinary()
		raws = append(raws, b)
	}
	for range 4 {
		var ref [32]byte
		_, _ = rand.Read(ref[:])
		e, err := groupstate.Sign(alice.keys.device, alice.keys.cert, l.Head(), time.Now().UnixMilli(), groupstate.Change{Kind: groupstate.KindPin, Ref: ref})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Add(e); err != nil {
			t.Fatal(err)
		}
		b, _ := e.MarshalBinary()
		raws = append(raws, b)
	}
	// A relay that holds the whole log and answers GetLog once released.
	rh := rv10Host(t)
	asked := make(chan struct{}, 8)
	release := make(chan struct{})
	var gets atomic.Int64
	rh.SetStreamHandler(history.ProtocolID, func(str network.Stream) {
		defer str.Close()
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(str, hdr); err != nil {
			return
		}
		if _, err := io.ReadFull(str, make([]byte, binary.BigEndian.Uint32(hdr)-1)); err != nil {
			return
		}
		if hdr[4] != 0x07 {
			return
		}
		gets.Add(1)
		asked <- struct{}{}
		<-release
		b := protowire.AppendTag(nil, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, group[:])
		for _, r := range raws {
			b = protowire.AppendTag(b, 2, protowire.BytesType)
			b = protowire.AppendBytes(b, r)
		}
		b = protowire.AppendTag(b, 8, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(len(raws)))
		f := binary.BigEndian.AppendUint32(nil, uint32(1+len(b)))
		f = append(f, 0x08)
		_, _ = str.Write(append(f, b...))
	})
	end := func(seq uint64) payload {
		return payload{Kind: "group-log", Group: g.ID, Log: [][]byte{raws[seq]}, From: seq, Relays: []string{rv10Addr(rh)}}
	}
	bob.fetchGroupLog(group, alice.keys.account.ID(), end(h+2))
	select {
	case <-asked:
	case <-time.After(10 * time.Second):
		t.Fatal("Bob did not ask the relay")
	}
	bob.fetchGroupLog(group, alice.keys.account.ID(), end(h+4))
	close(release)
	want, _ := groupstate.Parse(raws[h+4])
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if ok, _ := holdsEntry(bob, group, want)(); ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("Bob's log ends at %d after his fetch; the end he took last (entry %d) is lost (GetLogs asked: %d, fetch running: %v)", bob.reloadGroup(t, group).Head().Seq, h+4, gets.Load(), rv11Fetching(bob, group))
}

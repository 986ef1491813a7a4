package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/relay/history"
	"github.com/peergram/peergram/storage"
)

// r13Relay is a fake history relay that answers every GetLog with the
// log raws (from the entry asked for on, in one page, no device lists).
func r13Relay(t *testing.T, raws [][]byte) string {
	h := rv10Host(t)
	h.SetStreamHandler(history.ProtocolID, func(str network.Stream) {
		defer str.Close()
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(str, hdr); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr)-1)
		if _, err := io.ReadFull(str, body); err != nil {
			return
		}
		var group []byte
		vals := map[protowire.Number]uint64{}
		for len(body) > 0 {
			num, typ, n := protowire.ConsumeTag(body)
			if n < 0 {
				return
			}
			body = body[n:]
			switch typ {
			case protowire.BytesType:
				v, m := protowire.ConsumeBytes(body)
				if num == 1 {
					group = v
				}
				body = body[m:]
			case protowire.VarintType:
				v, m := protowire.ConsumeVarint(body)
				vals[num] = v
				body = body[m:]
			default:
				return
			}
		}
		after, listsAt := vals[2], vals[5]
		b := protowire.AppendTag(nil, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, group)
		for i := after; i < uint64(len(raws)); i++ {
			b = protowire.AppendTag(b, 2, protowire.BytesType)
			b = protowire.AppendBytes(b, raws[i])
		}
		for num, v := range map[protowire.Number]uint64{7: after, 8: uint64(len(raws)), 9: listsAt, 10: 0} {
			b = protowire.AppendTag(b, num, protowire.VarintType)
			b = protowire.AppendVarint(b, v)
		}
		f := binary.BigEndian.AppendUint32(nil, uint32(1+len(b)))
		f = append(f, 0x08) // Log
		_, _ = str.Write(append(f, b...))
	})
	return rv10Addr(h)
}

// r13Extend signs count pins and unpins by n onto a clone of l.
func r13Extend(t *testing.T, n *testNode, l *groupstate.Log, count int) *groupstate.Log {
	t.Helper()
	l = l.Clone()
	var ref [32]byte
	for i := range count {
		kind := groupstate.KindUnpin
		if i%2 == 0 {
			kind = groupstate.KindPin
			_, _ = rand.Read(ref[:])
		}
		e, err := groupstate.Sign(n.keys.device, n.keys.cert, l.Head(), l.Head().Time, groupstate.Change{Kind: kind, Ref: ref})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// TestReview13TailCommitsBranchOffTheEnd: fetchTail commits every
// 500-entry chunk of what the relay answered to LogFrom in a transaction
// of its own, with the sender check off (partial), BEFORE anything
// checks that those entries lead to the end the member sent: only the
// last chunk holds the end. A relay (one a member's end names, or one of
// Bob's own) that holds another branch of the group — entries members
// signed that are not on the end's chain: a branch that lost a fork
// elsewhere, or one a member registered and no one else took — answers
// with it. Bob (500+ entries behind) appends chunk 1 (it extends his
// head: no fork he can see), chunk 2 fails to chain to the end, and the
// fetch falls back — but chunk 1 stays, and with more than ForkWindow of
// its entries past the fork, Bob's log is final on a branch the group
// does not hold: the real log (fetched whole from an honest relay later)
// is refused with ErrFinal, and Bob is cut off from the group for good.
// The whole-log path never wrote a fetched entry before checkFetched
// chained it to the end. Right: verify the relay's entries and the end
// as one chain onto the held log in memory (Log.With on a clone costs
// only the new entries) before committing any chunk; commit chunks only
// from that verified chain.
func TestReview13TailCommitsBranchOffTheEnd(t *testing.T) {
	aliceHome, _ := initHome(t, "alice")
	bobHome, _ := initHome(t, "bob")
	alice := startNode(t, aliceHome)
	bob := startNode(t, bobHome) // no relays of his own: only the one the end names
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "tail branch")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	base := alice.reloadGroup(t, group)
	add, err := groupstate.Sign(alice.keys.device, alice.keys.cert, base.Head(), base.Head().Time, groupstate.Change{Kind: groupstate.KindAdd, Account: bob.keys.account.ID()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := base.Add(add); err != nil {
		t.Fatal(err)
	}
	// Bob joins (an invitation he accepts: no network needed).
	if err := bob.db.Update(func(tx *storage.Txn) error {
		return bob.applyGroupLog(tx, alice.keys.account.ID(), payload{Kind: "group-log", Group: g.ID, Log: r13Raws(t, base.Entries(0))})
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinGroup(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if bob.reloadGroup(t, group).Head().Hash() != add.Hash() {
		t.Fatal("Bob does not hold the group")
	}
	real := r13Extend(t, alice, base, 600)  // the group's log
	other := r13Extend(t, alice, base, 600) // another branch from Bob's head
	evil := r13Relay(t, r13Raws(t, other.Entries(0)))

	end := payload{Kind: "group-log", Group: g.ID, From: real.Head().Seq - 16, Relays: []string{evil}, Log: r13Raws(t, real.Entries(real.Head().Seq-16))}
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_ = bob.fetchLogOnce(fctx, group, alice.keys.account.ID(), end)

	got := bob.reloadGroup(t, group)
	if e := got.At(add.Seq + 1); e != nil && e.Hash() != real.At(add.Seq+1).Hash() {
		// The consequence: the real log, whole and verified, no longer applies.
		whole := payload{Kind: "group-log", Group: g.ID, Log: r13Raws(t, real.Entries(0))}
		_ = bob.applyFetched(group, alice.keys.account.ID(), whole)
		after := bob.reloadGroup(t, group)
		t.Fatalf("Bob took %d entries of a branch the end sent is not on (his head %d; the end's %d); given the real log whole afterwards, his head is the real one: %v",
			got.Head().Seq-add.Seq, got.Head().Seq, real.Head().Seq, after.Head().Hash() == real.Head().Hash())
	}
}

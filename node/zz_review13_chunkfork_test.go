package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/storage"
)

// TestReview13TailForkAcrossChunks (held): Bob holds a member's short
// branch R; the group's log took another branch B from the same point,
// whose first 495 entries are by another member (on their own B loses to
// R: equal roles, a larger first hash) and whose rest is the owner's (so
// the whole of B wins). fetchTail's first 500-entry chunk holds only B's
// losing prefix — not taken — and the next chunk no longer follows Bob's
// log, so the fetch falls back to the whole log, where B competes whole:
// Bob ends on B, as groupstate's AddBranch of all of B says and as every
// member holds it.
func TestReview13TailForkAcrossChunks(t *testing.T) {
	aliceHome, _ := initHome(t, "alice")
	bobHome, _ := initHome(t, "bob")
	carolHome, _ := initHome(t, "carol")
	erinHome, _ := initHome(t, "erin")
	alice := startNode(t, aliceHome)
	bob := startNode(t, bobHome)
	carol := startNode(t, carolHome)
	erin := startNode(t, erinHome)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "chunk fork")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	base := alice.reloadGroup(t, group)
	for _, a := range []*testNode{bob, carol, erin} {
		e, err := groupstate.Sign(alice.keys.device, alice.keys.cert, base.Head(), base.Head().Time, groupstate.Change{Kind: groupstate.KindAdd, Account: a.keys.account.ID()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := base.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	base = r13Extend(t, alice, base, 20)
	if err := bob.db.Update(func(tx *storage.Txn) error {
		return bob.applyGroupLog(tx, alice.keys.account.ID(), payload{Kind: "group-log", Group: g.ID, Log: r13Raws(t, base.Entries(0))})
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinGroup(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	fork := base.Head().Seq + 1
	erinPart := r13Extend(t, erin, base, 495)
	var mine *groupstate.Log
	for {
		mine = r13Extend(t, carol, base, 4)
		if hb, hr := erinPart.At(fork).Hash(), mine.At(fork).Hash(); bytes.Compare(hb[:], hr[:]) > 0 {
			break // B's prefix loses to R on its own
		}
	}
	real := r13Extend(t, alice, erinPart, 105)
	if err := bob.db.Update(func(tx *storage.Txn) error {
		return bob.applyGroupLog(tx, carol.keys.account.ID(), payload{Kind: "group-log", Group: g.ID, From: fork - 10, Log: r13Raws(t, mine.Entries(fork-10))})
	}); err != nil {
		t.Fatal(err)
	}
	held := bob.reloadGroup(t, group)
	if held.Head().Hash() != mine.Head().Hash() {
		t.Fatal("Bob does not hold R")
	}
	ref := held.Clone()
	if _, err := ref.Clone().AddBranch(erinPart.Entries(fork)); err == nil {
		t.Fatal("B's prefix wins alone: tests nothing")
	}
	if _, err := ref.AddBranch(real.Entries(fork)); err != nil {
		t.Fatalf("all of B loses: %v", err)
	}
	honest := r13Relay(t, r13Raws(t, real.Entries(0)))
	end := payload{Kind: "group-log", Group: g.ID, From: real.Head().Seq - 16, Relays: []string{honest}, Log: r13Raws(t, real.Entries(real.Head().Seq-16))}
	fctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := bob.fetchLogOnce(fctx, group, alice.keys.account.ID(), end); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if got := bob.reloadGroup(t, group); got.Head().Hash() != real.Head().Hash() {
		t.Fatalf("Bob's head %d is not the group's %d", got.Head().Seq, real.Head().Seq)
	}
	t.Logf("fetches: tail %d, whole %d", bob.fetched.tail.Load(), bob.fetched.whole.Load())
}

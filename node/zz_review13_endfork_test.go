package node

import (
	"context"
	"encoding/hex"
	"testing"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/storage"
)

// TestReview13EndForkAsBranch (held): an end that forks the held log —
// starting before the fork with entries Bob holds — is resolved as
// groupstate's AddBranch resolves the same branch on the same log: the
// owner's branch beats a member's (Bob's head becomes the end's), and a
// member's branch loses to the owner's (Bob's log unchanged); what Bob
// stores replays to the same head.
func TestReview13EndForkAsBranch(t *testing.T) {
	aliceHome, _ := initHome(t, "alice")
	bobHome, _ := initHome(t, "bob")
	carolHome, _ := initHome(t, "carol")
	alice := startNode(t, aliceHome)
	bob := startNode(t, bobHome)
	carol := startNode(t, carolHome)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "forks")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	base := alice.reloadGroup(t, group)
	for _, a := range []*testNode{bob, carol} {
		e, err := groupstate.Sign(alice.keys.device, alice.keys.cert, base.Head(), base.Head().Time, groupstate.Change{Kind: groupstate.KindAdd, Account: a.keys.account.ID()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := base.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	base = r13Extend(t, alice, base, 10)
	if err := bob.db.Update(func(tx *storage.Txn) error {
		return bob.applyGroupLog(tx, alice.keys.account.ID(), payload{Kind: "group-log", Group: g.ID, Log: r13Raws(t, base.Entries(0))})
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinGroup(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	// Bob holds Carol's (a member's) 4 entries after base.
	mine := r13Extend(t, carol, base, 4)
	if err := bob.db.Update(func(tx *storage.Txn) error {
		return bob.applyGroupLog(tx, carol.keys.account.ID(), payload{Kind: "group-log", Group: g.ID, From: base.Head().Seq - 3, Log: r13Raws(t, mine.Entries(base.Head().Seq-3))})
	}); err != nil {
		t.Fatal(err)
	}
	if bob.reloadGroup(t, group).Head().Hash() != mine.Head().Hash() {
		t.Fatal("Bob does not hold Carol's entries")
	}
	for _, c := range []struct {
		name string
		by   *testNode
		want func(theirs *groupstate.Log) *groupstate.Entry
	}{
		// (Carol against herself: equal roles, so the smaller first hash
		// decides, which differs run to run: whatever AddBranch decides.)
		{"a member's competing branch", carol, func(*groupstate.Log) *groupstate.Entry { return nil }},
		{"the owner's branch (wins)", alice, func(theirs *groupstate.Log) *groupstate.Entry { return theirs.Head() }},
	} {
		theirs := r13Extend(t, c.by, base, 6)
		from := base.Head().Seq - 5 // 6 entries Bob holds, then the fork
		held := bob.reloadGroup(t, group)
		ref := held.Clone()
		_, refErr := ref.AddBranch(theirs.Entries(base.Head().Seq + 1))
		if err := bob.db.Update(func(tx *storage.Txn) error {
			return bob.applyGroupLog(tx, c.by.keys.account.ID(), payload{Kind: "group-log", Group: g.ID, From: from, Log: r13Raws(t, theirs.Entries(from))})
		}); err != nil {
			t.Fatal(err)
		}
		got := bob.reloadGroup(t, group)
		want := c.want(theirs)
		if want == nil {
			want = ref.Head()
		}
		if got.Head().Hash() != want.Hash() || ref.Head().Hash() != got.Head().Hash() || (c.by == alice && refErr != nil) {
			t.Fatalf("%s: Bob's head %d, want %d (AddBranch on his log: %v)", c.name, got.Head().Seq, want.Seq, refErr)
		}
		var stored *groupstate.Log
		var bad error
		if err := bob.db.View(func(tx *storage.Txn) error {
			return bob.replayLogs(tx, group[:], func(_ []byte, l *groupstate.Log, err error) { stored, bad = l, err })
		}); err != nil || bad != nil || stored == nil || stored.Head().Hash() != got.Head().Hash() {
			t.Fatalf("%s: Bob's stored log does not replay to his head: %v %v", c.name, err, bad)
		}
	}
}

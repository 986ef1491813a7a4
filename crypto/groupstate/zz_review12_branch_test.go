package groupstate

import (
	"errors"
	"fmt"
	"testing"
)

// TestReview12LongWinningBranchFailingLatePanics: AddBranch with a branch
// that wins its fork, is longer than ForkWindow, and holds an entry that
// does not apply only after ForkWindow of its entries were taken, must
// fail with an error and leave the log as it was ("Any error leaves the
// log as it was"). Instead the branch's own entries move l.final past the
// fork point while they are appended, and restore() then calls
// l.cut(fork+1) with fork < final: cut indexes l.undos with a negative
// index (i-final-1) and panics. (The code before this commit panicked
// here too, on a nil undo: the rewrite of the undos kept the bug.)
//
// Reach: a relay's history server (relay/history/server.go mergeLocked)
// hands a member's registration page straight to AddBranch after only
// parsing it (pageEntries), so one member's page — a winning fork of 20
// entries whose 18th is a change its author may not make (or one that
// breaks the chain's times) — crashes the relay's goroutine, and with no
// recover there, the relay. Nodes verify a sender's whole log first, so
// they do not reach it.
//
// Right behaviour: restore must not depend on undos the branch made
// final (e.g. keep l.final as it was at the fork, or append the branch
// onto a Clone and keep the clone only if every entry applied).
func TestReview12LongWinningBranchFailingLatePanics(t *testing.T) {
	g := newGroup(t)
	// Enough entries that the fork point may still be forked (within
	// ForkWindow of the head) with a few entries after it.
	for i := range ForkWindow + 4 {
		g.add(t, g.m, Change{Kind: KindPin, Ref: ref(fmt.Sprint("p", i))})
	}
	head := g.log.Head()
	fork := g.log.Entries(head.Seq - 2)[0] // fork point: 2 entries before the head
	beforeHash, beforeTitle := head.Hash(), g.log.State().Title

	// The owner's branch (it wins against the member's entries: a higher
	// role), ForkWindow+3 entries long, its last one not applicable: the
	// owner removes N, then N "changes the title" after its removal.
	var branch []*Entry
	prev := fork
	for i := range ForkWindow + 2 {
		e := g.owner.sign(t, prev, Change{Kind: KindTitle, Text: fmt.Sprint("owner ", i)})
		branch = append(branch, e)
		prev = e
	}
	rm := g.owner.sign(t, prev, Change{Kind: KindRemove, Account: g.n.id()})
	bad := g.n.sign(t, rm, Change{Kind: KindTitle, Text: "after my removal"})
	branch = append(branch, rm, bad)

	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("AddBranch panicked on a winning branch whose entry %d does not apply: %v", bad.Seq, r)
			}
		}()
		_, err = g.log.AddBranch(branch)
	}()
	if err == nil {
		t.Fatal("a branch with an entry that does not apply was taken")
	}
	if errors.Is(err, ErrLostFork) {
		t.Fatalf("the owner's branch lost: %v (the test needs it to win)", err)
	}
	if g.log.Head().Hash() != beforeHash || g.log.State().Title != beforeTitle {
		t.Fatalf("the log changed on a failed branch: head %d, title %q", g.log.Head().Seq, g.log.State().Title)
	}
	checkReplays(t, g.log, "after a failed long branch")
}

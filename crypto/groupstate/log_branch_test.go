package groupstate

import (
	"bytes"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"testing"
)

// TestBranchOrderIndependent: M and N (members) pin at once (X and Y),
// X with the smaller hash; the owner saw Y first and pins after it
// (Z). A member that holds Y and Z refuses X (it would drop the owner's
// Z); one that took X first then gets the branch Y, Z whole (a log, a
// registration): the branch with the owner's entry wins there too (an
// outside review found the relay stuck on X, taking Y alone and losing,
// then Z not following). Given Y alone, X still wins (equal roles, the
// smaller hash).
func TestBranchOrderIndependent(t *testing.T) {
	g := newGroup(t)
	fork := g.log.Head()
	y := g.n.sign(t, fork, Change{Kind: KindPin, Ref: ref("y")})
	x := g.m.sign(t, fork, Change{Kind: KindPin, Ref: ref("x")})
	if h1, h2 := x.Hash(), y.Hash(); bytes.Compare(h1[:], h2[:]) > 0 {
		x, y = y, x // (both by members: which is whose does not matter; a search for a smaller hash once ran ten minutes)
	}
	z := g.owner.sign(t, y, Change{Kind: KindPin, Ref: ref("z")})
	entries := g.log.Entries(0)

	yz, err := Replay(entries)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := yz.AddBranch([]*Entry{y, z}); err != nil {
		t.Fatal(err)
	}
	if _, err := yz.Add(x); !errors.Is(err, ErrLostFork) {
		t.Fatalf("X against Y, Z: %v, want lost", err)
	}

	xFirst, err := Replay(entries)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := xFirst.Add(x); err != nil {
		t.Fatal(err)
	}
	if _, err := xFirst.Add(y); !errors.Is(err, ErrLostFork) {
		t.Fatalf("Y alone against X: %v, want lost (equal roles, X's hash smaller)", err)
	}
	dropped, err := xFirst.AddBranch([]*Entry{y, z})
	if err != nil {
		t.Fatalf("the branch Y, Z against X: %v", err)
	}
	if len(dropped) != 1 || dropped[0] != x {
		t.Fatalf("dropped %v, want X", dropped)
	}
	if xFirst.Head().Hash() != yz.Head().Hash() {
		t.Fatal("the two orders end on different logs")
	}
	// A branch whose entries do not follow one another is refused.
	if _, err := xFirst.AddBranch([]*Entry{x, z}); !errors.Is(err, ErrChain) {
		t.Fatalf("a broken branch: %v, want ErrChain", err)
	}
}

// TestWithIsTheSendersLog: With gives, for any branch off a non-final
// entry (or past the head), the log a replay of the entries before it and
// the branch gives — or an error where that replay fails — and leaves
// the log it is called on as it was.
func TestWithIsTheSendersLog(t *testing.T) {
	g := newGroup(t)
	rng := mrand.New(mrand.NewPCG(5, 8))
	for i := range 60 {
		g.randomStep(t, g.log, rng, i)
	}
	users := []*user{g.owner, g.admin, g.m, g.n, g.outsider}
	took, refused := 0, 0
	for i := range 300 {
		head := g.log.Head()
		from := head.Seq + 1 - uint64(min(rng.IntN(ForkWindow+1), int(head.Seq))) // a fork, or past the head
		prev := g.log.At(from - 1)
		var branch []*Entry
		for j := range 1 + rng.IntN(4) {
			u := g.owner // mostly: most branches then apply
			if rng.IntN(3) == 0 {
				u = users[rng.IntN(len(users))]
			}
			cs := []Change{
				{Kind: KindTitle, Text: fmt.Sprint("w", i, j)},
				{Kind: KindPin, Ref: ref(fmt.Sprint("w", i, j))},
				{Kind: KindAdd, Account: g.outsider.id()},
				{Kind: KindRemove, Account: g.n.id()},
				{Kind: KindPromote, Account: g.m.id()},
				{Kind: KindLeave},
			}
			e, err := Sign(u.dev, u.cert, prev, prev.Time+1, cs[rng.IntN(len(cs))])
			if err != nil {
				t.Fatal(err)
			}
			branch = append(branch, e)
			prev = e
		}
		before := fmt.Sprint(*g.log.State(), g.log.Entries(0))
		want, wantErr := Replay(append(g.log.Entries(0)[:from], branch...))
		if held := g.log.At(branch[len(branch)-1].Seq); held != nil && held.Hash() == branch[len(branch)-1].Hash() {
			want, wantErr = g.log, nil // all of it held: the log as it is
		}
		got, err := g.log.With(branch)
		if at := g.log.At(from); from-1 < g.log.final && (at == nil || branch[0].Hash() != at.Hash()) {
			// Off an entry made final (the log once went ForkWindow past
			// it, on a branch since dropped): refused, as AddBranch does.
			if !errors.Is(err, ErrFinal) {
				t.Fatalf("step %d: a branch off final entry %d: %v", i, from-1, err)
			}
			g.randomStep(t, g.log, rng, 1000+i)
			continue
		}
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("step %d: With: %v; a replay: %v", i, err, wantErr)
		}
		if err == nil {
			took++
			if fmt.Sprint(*got.State()) != fmt.Sprint(*want.State()) || got.Head().Hash() != want.Head().Hash() {
				t.Fatalf("step %d: With's log differs from the replay's", i)
			}
			checkReplays(t, got, fmt.Sprint("step ", i))
		} else {
			refused++
		}
		if fmt.Sprint(*g.log.State(), g.log.Entries(0)) != before {
			t.Fatalf("step %d: With changed the log", i)
		}
		g.randomStep(t, g.log, rng, 1000+i) // the log moves on
	}
	if took < 30 || refused < 30 {
		t.Fatalf("%d branches taken, %d refused: the test exercised too little", took, refused)
	}
	// A branch off a final entry, and past a gap.
	if _, err := g.log.With([]*Entry{g.owner.sign(t, g.log.At(1), Change{Kind: KindTitle, Text: "old"})}); !errors.Is(err, ErrFinal) {
		t.Fatalf("a branch off a final entry: %v", err)
	}
	far := g.owner.sign(t, g.log.Head(), Change{Kind: KindTitle, Text: "a"})
	if _, err := g.log.With([]*Entry{g.owner.sign(t, far, Change{Kind: KindTitle, Text: "b"})}); !errors.Is(err, ErrGap) {
		t.Fatalf("a branch past a gap: %v", err)
	}
}

package groupstate

import (
	"bytes"
	"errors"
	"testing"
)

// TestBranchOrderIndependent: M and N (members) pin at once (X by M, Y
// by N), X with the smaller hash; the owner saw Y first and pins after it
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
	var x *Entry
	for i := 0; x == nil; i++ {
		e := g.m.sign(t, fork, Change{Kind: KindPin, Ref: ref(string(rune('a' + i%26)))})
		if h1, h2 := e.Hash(), y.Hash(); bytes.Compare(h1[:], h2[:]) < 0 {
			x = e
		}
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

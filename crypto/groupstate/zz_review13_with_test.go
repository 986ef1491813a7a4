package groupstate

import (
	"fmt"
	"testing"
)

// TestReview13WithAcrossChunkBoundary (held): Log.With cuts the log back
// to a fork point and appends the sender's branch on a Clone; with the
// entries kept in 1024-entry chunks shared between clones, a cut that
// crosses a chunk boundary (a fork at 1020 of a log 1030 long, branches
// that end in the next chunk) must neither change the original log nor
// disagree with a replay of the same entries. It holds: cut clips the
// shared chunk it makes the tail again, so appends reallocate.
func TestReview13WithAcrossChunkBoundary(t *testing.T) {
	g := newGroup(t)
	for i := 0; g.log.Head().Seq < entryChunk+6; i++ {
		kind := KindPin
		if i%2 == 1 {
			kind = KindUnpin
		}
		g.add(t, g.m, Change{Kind: kind, Ref: ref(fmt.Sprint("p", i/2))})
	}
	orig := g.log.Entries(0)
	origState := fmt.Sprint(*g.log.State())
	head := g.log.Head().Seq
	for from := head - ForkWindow + 1; from <= head+1; from++ {
		for _, n := range []int{1, 3, 8, ForkWindow + 3} {
			prev := g.log.At(from - 1)
			var branch []*Entry
			for j := range n {
				e := g.owner.sign(t, prev, Change{Kind: KindTitle, Text: fmt.Sprint("b", from, "-", j)})
				branch = append(branch, e)
				prev = e
			}
			got, err := g.log.With(branch)
			if err != nil {
				t.Fatalf("fork at %d, %d entries: %v", from, n, err)
			}
			want, err := Replay(append(g.log.Entries(0)[:from], branch...))
			if err != nil {
				t.Fatal(err)
			}
			if got.Head().Hash() != want.Head().Hash() || fmt.Sprint(*got.State()) != fmt.Sprint(*want.State()) {
				t.Fatalf("fork at %d, %d entries: With differs from the replay", from, n)
			}
			checkReplays(t, got, fmt.Sprint("With at ", from))
			// The clone taking the owner's branch as a branch too.
			c := g.log.Clone()
			if _, err := c.AddBranch(branch); err != nil {
				t.Fatalf("AddBranch at %d: %v", from, err)
			}
			if c.Head().Hash() != want.Head().Hash() {
				t.Fatalf("AddBranch at %d: another head", from)
			}
			now := g.log.Entries(0)
			if len(now) != len(orig) || fmt.Sprint(*g.log.State()) != origState {
				t.Fatalf("fork at %d: the original log changed", from)
			}
			for i := range orig {
				if now[i] != orig[i] {
					t.Fatalf("fork at %d: the original's entry %d changed", from, i)
				}
			}
		}
	}
}

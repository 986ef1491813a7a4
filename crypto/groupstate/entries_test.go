package groupstate

import (
	mrand "math/rand/v2"
	"slices"
	"testing"
)

// TestEntryListModel: lists cloned from each other, each pushed to and
// cut (across chunk boundaries, into full chunks) at random, always hold
// what a plain slice per list holds: no list's change shows in another.
func TestEntryListModel(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	type pair struct {
		el    entryList
		model []*Entry
	}
	lists := []*pair{{}}
	next := 0
	fresh := func() *Entry { next++; return &Entry{Seq: uint64(next)} }
	boundaries := 0
	for step := range 5000 {
		p := lists[rng.IntN(len(lists))]
		op := rng.IntN(100)
		if len(p.model) > 16*entryChunk {
			op = 85 // long enough: cut
		}
		switch {
		case op < 80:
			n := rng.IntN(300)
			if op < 20 {
				n = entryChunk + rng.IntN(entryChunk) // a chunk or more
			}
			for range n {
				e := fresh()
				p.el.push(e)
				p.model = append(p.model, e)
			}
		case op < 92:
			n := 0
			if len(p.model) > 0 {
				n = len(p.model) - rng.IntN(min(len(p.model), 2*entryChunk)+1)
			}
			if n%entryChunk == 0 || n/entryChunk < len(p.el.full) {
				boundaries++
			}
			p.el.cut(n)
			p.model = slices.Clip(p.model[:n])
		case len(lists) < 12:
			lists = append(lists, &pair{el: p.el.clone(), model: slices.Clip(p.model)})
		}
		for i, q := range lists {
			if step%20 != 0 && q != p {
				continue // (a change to a list that shows in another stays)
			}
			if q.el.len() != len(q.model) {
				t.Fatalf("step %d: list %d holds %d entries, want %d", step, i, q.el.len(), len(q.model))
			}
			for j := range q.model {
				if q.el.at(j) != q.model[j] {
					t.Fatalf("step %d: list %d entry %d changed", step, i, j)
				}
			}
			if from := len(q.model) / 2; !slices.Equal(q.el.from(from), q.model[from:]) {
				t.Fatalf("step %d: list %d from %d differs", step, i, from)
			}
		}
	}
	if longest := slices.MaxFunc(lists, func(a, b *pair) int { return len(a.model) - len(b.model) }); len(longest.model) < 4*entryChunk || boundaries < 100 || len(lists) < 12 {
		t.Fatalf("longest list %d, %d cuts into full chunks, %d lists: the test exercised too little", len(longest.model), boundaries, len(lists))
	}
}

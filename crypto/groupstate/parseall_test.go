package groupstate

import (
	"errors"
	"testing"
	"time"
)

// TestParseAllIsParse: ParseAll gives, for every input, the entry (same
// hash) or the error class Parse gives: good entries of several authors,
// each fault TestForgeries uses, and an entry whose device signature is
// good but whose certificate's account signature is forged — next to
// good entries carrying the honest certificate of the same device, so a
// certificate checked once per distinct encoding is checked for each.
func TestParseAllIsParse(t *testing.T) {
	g := newGroup(t)
	head := g.log.Head()
	var raws [][]byte
	for i, u := range []*user{g.admin, g.m, g.admin, g.outsider, g.m} {
		e := u.sign(t, head, Change{Kind: KindTitle, Text: string(rune('a' + i))})
		raw, _ := e.MarshalBinary()
		raws = append(raws, raw)
	}
	good := raws[0]
	fake := *g.outsider.cert
	fake.Account = g.admin.id()
	byFake, err := Sign(g.outsider.dev, &fake, head, now(head), Change{Kind: KindTitle, Text: "x"})
	if err != nil {
		t.Fatal(err)
	}
	fakeRaw, _ := byFake.MarshalBinary()
	raws = append(raws,
		fakeRaw,
		flip(good, len(good)-1), // signature
		flip(good, 1+32+8+8+4+len(mustCert(t, g.admin))+1+4), // text
		good[:len(good)-10],
		nil,
		append([]byte{2}, good[1:]...),
		make([]byte, MaxEntrySize+1),
	)
	raws = append(raws, raws[3]) // the outsider's honest entry after the forged certificate
	for _, n := range []int{len(raws), 1, 0} {
		es, errs := ParseAll(raws[:n])
		if len(es) != n || len(errs) != n {
			t.Fatalf("%d in, %d entries and %d errors out", n, len(es), len(errs))
		}
		for i, raw := range raws[:n] {
			want, werr := Parse(raw)
			switch {
			case (werr == nil) != (errs[i] == nil):
				t.Errorf("input %d: ParseAll %v, Parse %v", i, errs[i], werr)
			case werr != nil && (es[i] != nil || !errors.Is(errs[i], ErrSignature) != !errors.Is(werr, ErrSignature) || !errors.Is(errs[i], ErrMalformed) != !errors.Is(werr, ErrMalformed)):
				t.Errorf("input %d: ParseAll %v (entry %v), Parse %v", i, errs[i], es[i] != nil, werr)
			case werr == nil && es[i].Hash() != want.Hash():
				t.Errorf("input %d: another entry", i)
			}
		}
	}
}

// BenchmarkParseAll: verifying the entries of a long log as a node reads
// it from its store after a start, ParseAll against Parse one entry after
// another (the anchor, same entries, same run). Three authors sign
// 20,000 entries. ratio = ParseAll's time / Parse's; the target is ≤ 0.6
// on two cores (one certificate check per author instead of per entry,
// and the signatures on both cores).
func BenchmarkParseAll(b *testing.B) {
	g := newGroup(b)
	head := g.log.Head()
	authors := []*user{g.admin, g.m, g.outsider}
	raws := make([][]byte, 20000)
	for i := range raws {
		e := authors[i%len(authors)].sign(b, head, Change{Kind: KindTitle, Text: "t"})
		raws[i], _ = e.MarshalBinary()
	}
	var seq, all time.Duration
	for b.Loop() {
		start := time.Now()
		for _, raw := range raws {
			if _, err := Parse(raw); err != nil {
				b.Fatal(err)
			}
		}
		seq += time.Since(start)
		start = time.Now()
		_, errs := ParseAll(raws)
		all += time.Since(start)
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(all)/float64(seq), "ratio")
	b.ReportMetric(float64(seq.Microseconds())/float64(b.N*len(raws)), "anchor-µs/entry")
	b.ReportMetric(float64(all.Microseconds())/float64(b.N*len(raws)), "µs/entry")
}

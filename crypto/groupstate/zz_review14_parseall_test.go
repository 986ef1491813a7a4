package groupstate

import (
	"errors"
	mrand "math/rand/v2"
	"runtime"
	"sync"
	"testing"
)

// r14Same reports whether ParseAll's answer for one input is Parse's.
func r14Same(t *testing.T, i int, raw []byte, got *Entry, gerr error) {
	t.Helper()
	want, werr := Parse(raw)
	switch {
	case (werr == nil) != (gerr == nil):
		t.Fatalf("input %d (%d bytes): ParseAll %v, Parse %v", i, len(raw), gerr, werr)
	case werr != nil && got != nil:
		t.Fatalf("input %d: ParseAll gave an entry with its error %v", i, gerr)
	case werr != nil && (errors.Is(gerr, ErrSignature) != errors.Is(werr, ErrSignature) || errors.Is(gerr, ErrMalformed) != errors.Is(werr, ErrMalformed)):
		t.Fatalf("input %d: ParseAll %v, Parse %v", i, gerr, werr)
	case werr == nil && (got == nil || got.Hash() != want.Hash() || got.Author() != want.Author() || got.Seq != want.Seq || got.Change != want.Change):
		t.Fatalf("input %d: ParseAll gave another entry", i)
	}
}

// TestReview14ParseAllDifferential: random batches of good entries of
// several authors, entries with one byte flipped anywhere (the
// certificate included), truncated or extended ones, entries whose
// certificate was swapped for another author's (same or other length),
// and duplicates, in random order: ParseAll answers for each what Parse
// answers, at every GOMAXPROCS, and from goroutines sharing the inputs.
func TestReview14ParseAllDifferential(t *testing.T) {
	g := newGroup(t)
	head := g.log.Head()
	authors := []*user{g.owner, g.admin, g.m, g.n, g.outsider}
	var good [][]byte
	for i := range 40 {
		e := authors[i%len(authors)].sign(t, head, Change{Kind: KindTitle, Text: string(rune('a' + i%26))})
		raw, _ := e.MarshalBinary()
		good = append(good, raw)
	}
	certs := make([][]byte, len(authors))
	for i, u := range authors {
		certs[i], _ = u.cert.MarshalBinary()
	}
	certAt := 1 + 32 + 8 + 8 // version, prev, seq, time; then the Var length prefix
	// swapCert puts another author's certificate encoding into raw.
	swapCert := func(raw []byte, rng *mrand.Rand) []byte {
		for _, c := range certs {
			if i := indexOf(raw, c); i >= 0 {
				o := certs[rng.IntN(len(certs))]
				if len(o) != len(c) {
					return raw
				}
				out := append([]byte(nil), raw...)
				copy(out[i:], o)
				return out
			}
		}
		return raw
	}
	rng := mrand.New(mrand.NewPCG(14, 14))
	mutate := func(raw []byte) []byte {
		switch rng.IntN(7) {
		case 0:
			return raw
		case 1:
			return flip(raw, rng.IntN(len(raw)))
		case 2:
			return flip(raw, certAt+rng.IntN(len(certs[0])))
		case 3:
			return raw[:rng.IntN(len(raw))]
		case 4:
			return append(append([]byte(nil), raw...), byte(rng.IntN(256)))
		case 5:
			return swapCert(raw, rng)
		default:
			return nil
		}
	}
	for _, procs := range []int{1, 2, 4} {
		old := runtime.GOMAXPROCS(procs)
		for range 150 {
			n := rng.IntN(60)
			raws := make([][]byte, n)
			for i := range raws {
				if i > 0 && rng.IntN(5) == 0 {
					raws[i] = raws[rng.IntN(i)] // the same bytes again
					continue
				}
				raws[i] = mutate(good[rng.IntN(len(good))])
			}
			es, errs := ParseAll(raws)
			if len(es) != n || len(errs) != n {
				t.Fatalf("%d in, %d/%d out", n, len(es), len(errs))
			}
			for i := range raws {
				r14Same(t, i, raws[i], es[i], errs[i])
			}
		}
		runtime.GOMAXPROCS(old)
	}
	// Goroutines parsing the same slices at once (run with -race).
	var wg sync.WaitGroup
	shared := append(append([][]byte(nil), good...), flip(good[0], certAt+5), flip(good[1], len(good[1])-1))
	for range 4 {
		wg.Go(func() {
			for range 20 {
				es, errs := ParseAll(shared)
				for i := range shared {
					if (errs[i] == nil) != (i < len(good)) || (errs[i] == nil) != (es[i] != nil) {
						t.Errorf("shared input %d: %v", i, errs[i])
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

func indexOf(b, sub []byte) int {
	for i := 0; i+len(sub) <= len(b); i++ {
		if string(b[i:i+len(sub)]) == string(sub) {
			return i
		}
	}
	return -1
}

// TestReview14ParseAllForgedCertFirst: the first entry a certificate
// encoding appears in is a forged one (its device signature bad) and
// the second is a good entry with the same certificate: the certificate
// is checked once, but each entry's own signature is still checked (the
// good one taken, the forged one not), and a certificate forged in one
// byte is never taken for the honest encoding.
func TestReview14ParseAllForgedCertFirst(t *testing.T) {
	g := newGroup(t)
	head := g.log.Head()
	e := g.m.sign(t, head, Change{Kind: KindTitle, Text: "x"})
	good, _ := e.MarshalBinary()
	bad := flip(good, len(good)-3)
	cert, _ := g.m.cert.MarshalBinary()
	i := indexOf(good, cert)
	forgedCert := flip(good, i+len(cert)-1) // the certificate's own signature
	raws := [][]byte{bad, good, forgedCert, good, bad}
	es, errs := ParseAll(raws)
	for i := range raws {
		r14Same(t, i, raws[i], es[i], errs[i])
	}
	if errs[1] != nil || errs[3] != nil || errs[0] == nil || errs[2] == nil || errs[4] == nil {
		t.Fatalf("errors %v", errs)
	}
}

package main

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// msgSize is the plaintext (and anchor frame) size of every scenario.
const msgSize = 1024

// config holds the sizes of a run.
type config struct {
	rounds int // interleaved rounds per scenario
	n      int // messages per round
	s2n    int // envelopes drained per round in S2
	n4     int // messages sent in D4
	// inflight is how many deposits M1 and M3 keep in flight at once, as
	// a relay serving many senders sees them (each message is its own
	// deposit); default defaultInflight.
	inflight int
	fsize    int64 // F1/F2 file size; 0: 1 GiB
	w1       int   // W1's long chat, messages; 0: 10,000
}

// defaultInflight is the default of -inflight.
const defaultInflight = 256

// scenario is one benchmark: run returns its result line.
type scenario struct {
	id  string
	run func(ctx context.Context, cfg config) (string, error)
}

var scenarios = []scenario{
	{"M1", runM1},
	{"M2", runM2},
	{"M3", runM3},
	{"S1", runS1},
	{"S2", runS2},
	{"D0", runD0},
	{"D1", runD1},
	{"D2", runD2},
	{"D3", runD3},
	{"D4", runD4},
	{"G1", runG1},
	{"G1V", runG1V},
	{"G1S", runG1S},
	{"G2", runG2},
	{"G4", runG4},
	{"F1", runF1},
	{"F2", runF2},
	{"C2", runC2},
	{"C3", runC3},
	{"W1", runW1},
}

func findScenario(id string) *scenario {
	for i := range scenarios {
		if scenarios[i].id == id {
			return &scenarios[i]
		}
	}
	return nil
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func rate(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }

// throughputs runs ours and anchor alternately for cfg.rounds rounds (the
// order flips each round) and formats the throughput line; each function
// returns how many messages it moved and how long that took.
func throughputs(ctx context.Context, id, target string, rounds int, ours, anchor func(ctx context.Context) (int, time.Duration, error)) (string, error) {
	var o, a, r []float64
	for i := 0; i < rounds; i++ {
		first, second := ours, anchor
		if i%2 == 1 {
			first, second = anchor, ours
		}
		var res [2]float64
		for j, f := range []func(context.Context) (int, time.Duration, error){first, second} {
			n, d, err := f(ctx)
			if err != nil {
				return "", fmt.Errorf("round %d: %w", i+1, err)
			}
			res[j] = rate(n, d)
		}
		if i%2 == 1 {
			res[0], res[1] = res[1], res[0]
		}
		o, a, r = append(o, res[0]), append(a, res[1]), append(r, res[0]/res[1])
	}
	return fmt.Sprintf("%s ratio=%.3f target=%s ours=%.0f msg/s anchor=%.0f msg/s", id, median(r), target, median(o), median(a)), nil
}

// percentile returns the p-th percentile (0..1) of ds, which it sorts.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := int(p*float64(len(ds))+0.5) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

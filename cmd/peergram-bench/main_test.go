package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"testing"
)

var lineRE = regexp.MustCompile(`^(M1|M2|M3|S1|S2|D0|D1|D2|D3|D4|G1|G1V|G1S|G2|G4|F1|F2|C2|C3|W1) ratio=([0-9.]+) target=(>=|<=)[0-9.]+ (ours=\S+( msg/s)? anchor=\S+( msg/s)?|rss_alice=.* rate=\S+ msg/s|ours=\S+ anchor=\S+ members=\d+ \S+( cpu_ours=[0-9.]+ cpu_anchor=[0-9.]+)?|ours=\d+ MB/s anchor=\d+ MB/s size=\d+ MiB peak_rss=\d+ MiB|ours=[0-9.]+ms anchor=[0-9.]+ms calls=\d+|ours=\d+ pkt/s anchor=\d+ pkt/s streams=\d+ cpu_per_stream=[0-9.]+% anchor_cpu_per_stream=[0-9.]+%|ours=\d+ms anchor=\d+ms msgs=\d+/\d+ load=\d+ms/\d+ms bytes=\d+/\d+ rendered=\d+)$`)

// TestMain lets D4 start this test binary as a daemon.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == childArg {
		if err := runChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

func TestScenarios(t *testing.T) {
	cfg := config{rounds: 1, n: 50, s2n: 1000, n4: 200, inflight: 8, fsize: 8 << 20, w1: 120}
	for _, sc := range scenarios {
		t.Run(sc.id, func(t *testing.T) {
			line, err := sc.run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			m := lineRE.FindStringSubmatch(line)
			if m == nil || m[1] != sc.id {
				t.Fatalf("line %q does not match the format", line)
			}
			r, err := strconv.ParseFloat(m[2], 64)
			if err != nil || r <= 0 {
				t.Fatalf("ratio %q not positive (%v)", m[2], err)
			}
		})
	}
}

func TestMedianAndFind(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if findScenario("M9") != nil || findScenario("S2") == nil {
		t.Error("findScenario wrong")
	}
}

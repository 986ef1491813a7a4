// Command peergram-bench compares Peergram's relay mailbox path against raw
// libp2p and Badger anchors run in the same process, interleaved over
// several rounds, and prints one line per scenario:
//
//	<ID> ratio=<median ratio> target=<target> ours=<value> anchor=<value>
//
// A missed target is not an error; the command exits non-zero only when a
// scenario fails to run.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == childArg {
		if err := runChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "peergram-bench:", err)
			os.Exit(1)
		}
		return
	}
	var cfg config
	var only string
	var quick bool
	flag.IntVar(&cfg.rounds, "rounds", 3, "interleaved rounds per scenario")
	// 20,000 messages per round: at 2,000 a round lasted ~30 ms, mostly warm-up
	// and scheduler noise, on both sides; sustained load is what users see.
	flag.IntVar(&cfg.n, "n", 20000, "messages per round")
	flag.IntVar(&cfg.s2n, "s2n", 100000, "envelopes drained per round in S2")
	flag.IntVar(&cfg.n4, "n4", 100000, "messages sent in D4")
	flag.IntVar(&cfg.inflight, "inflight", defaultInflight, "deposits kept in flight in M1 and M3 (each message is its own deposit)")
	flag.Int64Var(&cfg.fsize, "fsize", 0, "file size in bytes for F1 and F2 (0 = 1 GiB; -quick 128 MiB)")
	flag.BoolVar(&quick, "quick", false, "smaller S2 (10,000 envelopes unless -s2n is set) and F1/F2 (128 MiB unless -fsize is set)")
	flag.StringVar(&only, "only", "", "comma-separated scenario IDs to run (default all)")
	flag.IntVar(&cfg.w1, "w1", w1Large, "W1: messages in the long chat the web client opens")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile (pprof) of the whole run to this file")
	memProfile := flag.String("memprofile", "", "write an allocation profile (pprof, alloc_space/alloc_objects) at the end of the run to this file")
	flag.Parse()
	if *memProfile != "" {
		defer writeAllocs(*memProfile)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "peergram-bench:", err)
			os.Exit(2)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "peergram-bench:", err)
			os.Exit(2)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	if quick && !flagSet("s2n") {
		cfg.s2n = 10000
	}
	if quick && !flagSet("fsize") {
		cfg.fsize = 128 << 20
	}
	if cfg.rounds < 1 || cfg.n < 1 || cfg.s2n < 1 || cfg.inflight < 1 || cfg.n4 < 2 {
		fmt.Fprintln(os.Stderr, "peergram-bench: -rounds, -n, -s2n, -n4 and -inflight must be positive")
		os.Exit(2)
	}
	want := map[string]bool{}
	for _, id := range strings.Split(only, ",") {
		if id = strings.TrimSpace(strings.ToUpper(id)); id != "" {
			want[id] = true
		}
	}
	for id := range want {
		if findScenario(id) == nil {
			fmt.Fprintf(os.Stderr, "peergram-bench: unknown scenario %q\n", id)
			os.Exit(2)
		}
	}
	ctx := context.Background()
	failed := false
	for _, sc := range scenarios {
		if len(want) > 0 && !want[sc.id] {
			continue
		}
		line, err := sc.run(ctx, cfg)
		if err != nil {
			fmt.Fprintf(os.Stderr, "peergram-bench: %s: %v\n", sc.id, err)
			failed = true
			continue
		}
		fmt.Println(line)
	}
	if failed {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// writeAllocs writes the allocation profile of the run so far to path.
func writeAllocs(path string) {
	f, err := os.Create(path)
	if err == nil {
		err = pprof.Lookup("allocs").WriteTo(f, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "peergram-bench: memprofile:", err)
	}
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

package main

import (
	"context"
	"time"

	"github.com/peergram/peergram/relay/mailbox"
)

// benchFunc is the shape of the relay/mailbox scenario functions: run in a
// fresh directory, return the timed part.
type benchFunc func(ctx context.Context, dir string, n, size int) (time.Duration, error)

// inDir runs f in a new temporary directory (removed afterwards).
func inDir(f benchFunc, n int) func(ctx context.Context) (int, time.Duration, error) {
	return func(ctx context.Context) (int, time.Duration, error) {
		var c cleanup
		defer c.run()
		dir, err := tempDir(&c)
		if err != nil {
			return 0, 0, err
		}
		d, err := f(ctx, dir, n, msgSize)
		return n, d, err
	}
}

// runS1 is relay mailbox ingest through the real protocol (256 concurrent
// depositors, synced group commits) against one synced Badger WriteBatch
// of the same values (mailbox.BenchIngest and BenchIngestAnchor).
func runS1(ctx context.Context, cfg config) (string, error) {
	return throughputs(ctx, "S1", ">=0.50", cfg.rounds,
		inDir(mailbox.BenchIngest, cfg.n), inDir(mailbox.BenchIngestAnchor, cfg.n))
}

// runS2 is one device draining cfg.s2n queued envelopes (delivered, acked
// and deleted by the relay) against a raw Badger prefix iteration over the
// same values (mailbox.BenchDrain and BenchDrainAnchor).
func runS2(ctx context.Context, cfg config) (string, error) {
	return throughputs(ctx, "S2", ">=0.40", cfg.rounds,
		inDir(mailbox.BenchDrain, cfg.s2n), inDir(mailbox.BenchDrainAnchor, cfg.s2n))
}

package mailbox

import (
	"context"
	"testing"
	"time"
)

// scenario is one of the exported Bench* functions.
type scenario func(ctx context.Context, dir string, n, size int) (time.Duration, error)

// runScenario reports the timed part only: ns/op is replaced by the time
// per envelope, and envelopes/s is added.
func runScenario(b *testing.B, f scenario, n, size int) {
	b.ReportAllocs()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		d, err := f(context.Background(), b.TempDir(), n, size)
		if err != nil {
			b.Fatal(err)
		}
		total += d
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(n*b.N), "ns/op")
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "envelopes/s")
}

// BenchmarkS1Ingest: 20,000 deposits of 1 KiB through the protocol (64
// concurrent depositors, one client stream, group commit, synced) against
// its anchor, a raw synced Badger WriteBatch of the same values.
func BenchmarkS1Ingest(b *testing.B) {
	const n, size = 20_000, 1024
	b.Run("anchor=badger-writebatch", func(b *testing.B) { runScenario(b, BenchIngestAnchor, n, size) })
	b.Run("mailbox=protocol", func(b *testing.B) { runScenario(b, BenchIngest, n, size) })
}

// BenchmarkS2Drain: one device draining 100,000 queued 1 KiB envelopes
// (deliver, ack, delete) against its anchor, a raw Badger prefix
// iteration reading the same values.
func BenchmarkS2Drain(b *testing.B) {
	const n, size = 100_000, 1024
	b.Run("anchor=badger-iterate", func(b *testing.B) { runScenario(b, BenchDrainAnchor, n, size) })
	b.Run("mailbox=protocol", func(b *testing.B) { runScenario(b, BenchDrain, n, size) })
}

// TestBenchScenarios runs each scenario small, so they stay correct.
func TestBenchScenarios(t *testing.T) {
	for name, f := range map[string]scenario{
		"ingest": BenchIngest, "ingest-anchor": BenchIngestAnchor,
		"drain": BenchDrain, "drain-anchor": BenchDrainAnchor,
	} {
		t.Run(name, func(t *testing.T) {
			if d, err := f(testCtx(t), t.TempDir(), 300, 100); err != nil || d <= 0 {
				t.Fatalf("%s = %v, %v", name, d, err)
			}
		})
	}
}

package mailbox

import (
	"context"
	"encoding/binary"
	"fmt"
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

// BenchmarkS1Ingest: 20,000 deposits of 1 KiB through the protocol (256
// concurrent depositors, one Client (up to 4 streams), group commit, synced) against
// its anchor, a raw synced Badger WriteBatch of the same values; and the
// same deposits through the committer alone (no network).
func BenchmarkS1Ingest(b *testing.B) {
	const n, size = 20_000, 1024
	b.Run("anchor=badger-writebatch", func(b *testing.B) { runScenario(b, BenchIngestAnchor, n, size) })
	b.Run("mailbox=protocol", func(b *testing.B) { runScenario(b, BenchIngest, n, size) })
	b.Run("mailbox=committer", func(b *testing.B) { runScenario(b, benchIngestCommitter, n, size) })
}

// benchIngestCommitter is S1 without the network: the same deposits handed
// straight to a started Server's committer (the storage path), all in
// flight at once, to show what the protocol costs on top.
func benchIngestCommitter(ctx context.Context, dir string, n, size int) (time.Duration, error) {
	rig, err := newBenchRig(dir, Config{})
	if err != nil {
		return 0, err
	}
	defer rig.close()
	env := make([]byte, size)
	res := make([]chan outcome, n)
	start := time.Now()
	for i := range n {
		var to Address
		binary.BigEndian.PutUint64(to[:], uint64(i%benchMailboxes+1))
		res[i] = make(chan outcome, 1)
		if !rig.srv.submit(request{dep: &depositReq{msg: &depositMsg{To: to, ID: benchID(i), Envelope: env}, class: classContact, ans: chanAnswer(res[i])}}) {
			return 0, ErrClosed
		}
	}
	for _, r := range res {
		if o := <-r; o.code != CodeOK {
			return 0, fmt.Errorf("deposit: %v %s", o.code, o.text)
		}
	}
	return time.Since(start), ctx.Err()
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
		"ingest-committer": benchIngestCommitter,
	} {
		t.Run(name, func(t *testing.T) {
			if d, err := f(testCtx(t), t.TempDir(), 300, 100); err != nil || d <= 0 {
				t.Fatalf("%s = %v, %v", name, d, err)
			}
		})
	}
}

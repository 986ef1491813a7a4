package mailbox

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"runtime/pprof"
	"testing"
	"time"
)

func TestTmpDrainProfile(t *testing.T) {
	n, size := 100000, 1024
	b, err := newBenchRig(t.TempDir(), Config{MaxMailboxEnvelopes: n})
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	key := ed25519.NewKeyFromSeed(make([]byte, 32))
	addr := AddressOf(key.Public().(ed25519.PublicKey))
	t0 := time.Now()
	if err := b.fill(addr, n, size); err != nil {
		t.Fatal(err)
	}
	fmt.Println("fill", time.Since(t0))
	f, _ := os.Create("/tmp/drain.cpu")
	pprof.StartCPUProfile(f)
	ctx, cancel := context.WithCancel(context.Background())
	got := 0
	start := time.Now()
	var first time.Duration
	err = b.client.Subscribe(ctx, b.relay.ID(), key, func(context.Context, Delivery) error {
		if got == 0 {
			first = time.Since(start)
		}
		if got++; got == n {
			fmt.Println("all delivered", time.Since(start))
			cancel()
		}
		return nil
	})
	fmt.Println("drain", time.Since(start), "first", first, err)
	pprof.StopCPUProfile()
}

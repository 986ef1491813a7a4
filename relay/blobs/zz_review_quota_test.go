package blobs

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/peergram/peergram/relay/internal/protoframe"
)

// TestReviewStalledPutHeaders: protoframe.Read allocates the length a
// frame header declares before any of the body arrives; a Put may
// declare ~1 MiB. A peer that opens streams and sends only the 5-byte
// header makes the server hold ~1 MiB per stream for the stream's
// 2-minute deadline, with no memory reserved in the resource manager (the
// blob service has no limits of its own in relay/resources.go). The same
// happens on a node's read-only file server, which reads the whole Put
// frame before refusing it.
func TestReviewStalledPutHeaders(t *testing.T) {
	for _, ro := range []bool{false, true} {
		name := "relay"
		if ro {
			name = "node read-only store"
		}
		t.Run(name, func(t *testing.T) {
			proto := ProtocolID
			r := startRelay(t, func(c *Config) {
				if ro {
					c.ReadOnly = true
					c.Protocol = "/peergram/file/1.0.0"
				}
			})
			if ro {
				proto = "/peergram/file/1.0.0"
			}
			u := newUser(t, r)
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			const streams = 48
			var open []network.Stream
			hdr := protoframe.Frame(typePut, nil)[:protoframe.HeaderSize]
			n := uint32(maxPut + 1)
			hdr[0], hdr[1], hdr[2], hdr[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
			for i := 0; i < streams; i++ {
				str, err := u.c.h.NewStream(context.Background(), r.h.ID(), protocol.ID(proto))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := str.Write(hdr); err != nil {
					t.Fatal(err)
				}
				open = append(open, str)
			}
			time.Sleep(1500 * time.Millisecond)
			runtime.GC()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			for _, s := range open {
				s.Reset()
			}
			t.Logf("%d stalled streams (%d header bytes sent): heap grew by %.1f MiB", streams, streams*protoframe.HeaderSize, float64(grew)/(1<<20))
			if grew > 16<<20 {
				t.Fatalf("ATTACK WORKS: %d bytes sent pin %.1f MiB of the server's memory for the stream deadline", streams*protoframe.HeaderSize, float64(grew)/(1<<20))
			}
		})
	}
}

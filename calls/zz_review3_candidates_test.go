package calls

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestReview3CandidateFlood: in a running call the peer sends candidate
// after candidate (no limit once the remote description is set): each
// is added to the ICE agent, which sends STUN checks to whatever address
// the peer named (here a third party's UDP port) and keeps a pair for
// each.
func TestReview3CandidateFlood(t *testing.T) {
	victimTarget, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer victimTarget.Close()
	var got atomic.Int64
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := victimTarget.ReadFrom(buf); err != nil {
				return
			}
			got.Add(1)
		}
	}()
	port := victimTarget.LocalAddr().(*net.UDPAddr).Port

	h, e, _ := newHostile(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.addTracks("a", 1)
	h.offer(ctx, true)
	if _, err := e.Answer(ctx, h.callID, Media{}); err != nil {
		t.Fatal(err)
	}
	h.pump(ctx)
	time.Sleep(2 * time.Second)
	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()
	const N = 5000
	mid := "0"
	for i := range N {
		cand := fmt.Sprintf("candidate:%d 1 udp %d 127.0.0.1 %d typ host", i+100, 2130706431-i, port)
		if i%2 == 1 { // distinct addresses too
			cand = fmt.Sprintf("candidate:%d 1 udp %d 127.0.%d.%d %d typ host", i+100, 2130706431-i, 1+i/250, 1+i%250, 1000+i)
		}
		s := &Signal{Call: h.callID, Type: SignalCandidate, Candidate: &webrtc.ICECandidateInit{Candidate: cand, SDPMid: &mid}, At: time.Now().UnixMilli()}
		if err := e.Handle(ctx, "mallory", "M1", s); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(5 * time.Second)
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	c, _ := e.Get(h.callID)
	t.Logf("call %s; heap %d KiB → %d KiB; goroutines %d → %d; STUN packets the victim sent to a third party's port: %d",
		c.State, m0.HeapAlloc>>10, m1.HeapAlloc>>10, g0, runtime.NumGoroutine(), got.Load())
	if got.Load() > 100 || m1.HeapAlloc > m0.HeapAlloc+50<<20 {
		t.Fatalf("ATTACK WORKS: %d candidates from the peer accepted without limit: the victim sent %d STUN packets to a third party's port, heap +%d KiB",
			N, got.Load(), (int64(m1.HeapAlloc)-int64(m0.HeapAlloc))>>10)
	}
}

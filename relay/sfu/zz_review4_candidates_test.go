package sfu_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"golang.org/x/net/ipv4"

	"github.com/peergram/peergram/calls/sfuproto"
	"github.com/peergram/peergram/relay/sfu"
)

// TestReview4UnboundedRemoteCandidates: the SFU keeps at most 64 ICE
// candidates that arrive before the answer, but once the answer is in it
// hands every Candidate message to Pion (participant.candidate), with no
// bound at all. Each names an address the SFU's ICE agent will then send
// STUN binding requests to, repeatedly, for as long as the session checks
// (30 s here, as the participant never completes ICE). A member thus
// makes the relay spray STUN at as many third-party addresses as it
// likes (reflection; port scanning from the relay's IP) and grow the
// agent's pair list without limit.
// Expected: the number of remote candidates taken per participant is
// bounded (e.g. the same 64 as before the answer).
func TestReview4UnboundedRemoteCandidates(t *testing.T) {
	relay := newHost(t)
	_, ms, _ := r4Server(t, sfu.Config{Host: relay})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	group := r4Group()
	call := newCallID()
	attacker := newMember(t, relay, ms)

	// The "victim" addresses: 127.0.x.y, all on one port of ours.
	uc, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	port := uc.LocalAddr().(*net.UDPAddr).Port
	pc4 := ipv4.NewPacketConn(uc)
	if err := pc4.SetControlMessage(ipv4.FlagDst, true); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	dsts := map[string]int{}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, cm, _, err := pc4.ReadFrom(buf)
			if err != nil {
				return
			}
			// A STUN message: first two bits zero, magic cookie.
			if n >= 20 && buf[4] == 0x21 && buf[5] == 0x12 && buf[6] == 0xa4 && buf[7] == 0x42 && cm != nil {
				mu.Lock()
				dsts[cm.Dst.String()]++
				mu.Unlock()
			}
		}
	}()

	c, err := sfu.Dial(ctx, attacker.h, relay.ID(), group, call, attacker.dev, attacker.cert)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The SFU's own candidates may come before its offer (it gathers
	// from SetLocalDescription on): read up to the offer.
	var first *sfuproto.Message
	for {
		first, err = c.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if first.Type == sfuproto.TypeOffer {
			break
		}
		if first.Type != sfuproto.TypeCandidate && first.Type != sfuproto.TypeRoster {
			t.Fatalf("before the offer: %+v", first)
		}
	}
	// A valid answer from a real Pion peer (whose own candidates are
	// never sent).
	se := webrtc.SettingEngine{}
	loopback(&se)
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: first.SDP}); err != nil {
		t.Fatal(err)
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(ans); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(&sfuproto.Message{Type: sfuproto.TypeAnswer, SDP: ans.SDP}); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			if _, err := c.Recv(); err != nil {
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	const n = 1000
	for i := 0; i < n; i++ {
		cand := fmt.Sprintf("candidate:%d 1 udp 2130706431 127.0.%d.%d %d typ host", 1000+i, 10+i/250, 1+i%250, port)
		if err := c.Send(&sfuproto.Message{Type: sfuproto.TypeCandidate, Candidate: &webrtc.ICECandidateInit{Candidate: cand}}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	got := 0
	for time.Now().Before(deadline) {
		mu.Lock()
		got = len(dsts)
		mu.Unlock()
		if got > 64 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got > 64 {
		// Let it run a moment to show the scale.
		time.Sleep(2 * time.Second)
		mu.Lock()
		got = len(dsts)
		total := 0
		for _, v := range dsts {
			total += v
		}
		mu.Unlock()
		t.Fatalf("one participant made the SFU send %d STUN requests to %d distinct addresses it named (of %d candidates sent after its answer); expected at most 64", total, got, n)
	}
	t.Logf("the SFU contacted %d of the named addresses", got)
}

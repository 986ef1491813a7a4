package node

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/crypto/sealed"
	"github.com/peergram/peergram/node/chat"
)

// TestDirectBadInput sends malformed, oversized, forged and misaddressed
// frames on /peergram/msg/1.0.0: each is refused, and the node keeps
// receiving genuine messages.
func TestDirectBadInput(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)

	mallory, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mallory.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := mallory.Connect(ctx, peer.AddrInfo{ID: bob.host.ID(), Addrs: bob.host.Addrs()}); err != nil {
		t.Fatal(err)
	}
	// A well-formed envelope for another device (Alice's).
	other, err := (&sealed.Envelope{Kind: sealed.KindMessage, Recipient: alice.keys.device.ID(), Body: make([]byte, 80)}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	forged, err := (&sealed.Envelope{Kind: sealed.KindMessage, Recipient: bob.keys.device.ID(), Body: make([]byte, 80)}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	frame := func(b []byte) []byte { return append(binary.AppendUvarint(nil, uint64(len(b))), b...) }
	tests := []struct {
		name    string
		raw     []byte
		wantAck int // -1: stream reset, no answer
	}{
		{"oversized length", binary.AppendUvarint(nil, sealed.MaxEnvelopeSize+1), -1},
		{"truncated frame", append(binary.AppendUvarint(nil, 100), 1, 2, 3), -1},
		{"garbage envelope", frame([]byte("not an envelope at all")), int(directRejected)},
		{"for another device", frame(other), int(directRejected)},
		{"forged session", frame(forged), int(directRejected)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := mallory.NewStream(ctx, bob.host.ID(), ProtocolID)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Write(tt.raw); err != nil {
				t.Fatal(err)
			}
			_ = s.CloseWrite()
			var ack [1]byte
			_, err = io.ReadFull(bufio.NewReader(s), ack[:])
			switch {
			case tt.wantAck < 0 && err == nil:
				t.Fatalf("got answer %d, want the stream reset", ack[0])
			case tt.wantAck >= 0 && err != nil:
				t.Fatalf("no answer: %v", err)
			case tt.wantAck >= 0 && int(ack[0]) != tt.wantAck:
				t.Fatalf("answer %d, want %d", ack[0], tt.wantAck)
			}
		})
	}
	if _, err := alice.Send(context.Background(), "bob", "still works"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "genuine message after bad input", func() (bool, error) {
		return statusOf(t, bob, "alice")["still works"] == chat.StatusReceived, nil
	})
}

package node

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/peergram/peergram/crypto/sealed"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/directory"
)

// TestDirectBadInput sends malformed, oversized, forged and misaddressed
// frames on /peergram/msg/1.0.0 and 2.0.0: each is refused, and the node
// keeps receiving genuine messages.
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
	rej := int(directRejected)
	tests := []struct {
		name     string
		protocol protocol.ID
		raw      []byte
		wantAcks []int // nil: stream reset, no answer
	}{
		{"oversized length", ProtocolID, binary.AppendUvarint(nil, sealed.MaxEnvelopeSize+1), nil},
		{"truncated frame", ProtocolID, append(binary.AppendUvarint(nil, 100), 1, 2, 3), nil},
		{"garbage envelope", ProtocolID, frame([]byte("not an envelope at all")), []int{rej}},
		{"for another device", ProtocolID, frame(other), []int{rej}},
		{"forged session", ProtocolID, frame(forged), []int{rej}},
		{"stream: oversized length", StreamProtocolID, binary.AppendUvarint(nil, sealed.MaxEnvelopeSize+1), nil},
		{"stream: truncated frame", StreamProtocolID, append(binary.AppendUvarint(nil, 100), 1, 2, 3), nil},
		{"stream: bad envelopes", StreamProtocolID, slices.Concat(frame([]byte("garbage")), frame(other), frame(forged), frame(forged)), []int{rej, rej, rej, rej}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := mallory.NewStream(ctx, bob.host.ID(), tt.protocol)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Write(tt.raw); err != nil {
				t.Fatal(err)
			}
			_ = s.CloseWrite()
			got, err := io.ReadAll(bufio.NewReader(s))
			switch {
			case tt.wantAcks == nil && err == nil:
				t.Fatalf("got answers %v, want the stream reset", got)
			case tt.wantAcks != nil && err != nil:
				t.Fatalf("no answer: %v", err)
			case tt.wantAcks != nil && fmt.Sprint(bytesToInts(got)) != fmt.Sprint(tt.wantAcks):
				t.Fatalf("answers %v, want %v", got, tt.wantAcks)
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

func bytesToInts(b []byte) []int {
	out := make([]int, len(b))
	for i, x := range b {
		out[i] = int(x)
	}
	return out
}

// TestDirectStream: many envelopes on one /peergram/msg/2.0.0 stream are
// stored, once each, in order, and answered one status byte each; a bad
// one among them is refused alone.
func TestDirectStream(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	bobHome, _ := initHome(t, "bob")
	bob := startNode(t, bobHome, relay.addr)
	carol := newFakeDevice(t, relay, nil, "carol")
	carol.publish(t, nil, carol.cert)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := bob.AddContact(ctx, carol.acct.ID().String(), "carol"); err != nil {
		t.Fatal(err)
	}
	text := func(i int) payload {
		return payload{Kind: "text", Text: fmt.Sprintf("stream %03d", i), Seq: uint64(i + 1)}
	}
	if got := carol.send(t, bob, text(0), newMessageID(t)); got != int(directOK) {
		t.Fatalf("first message: answer %d", got)
	}
	carol.receive(t) // Bob's receipt: Carol's session is confirmed
	const n = 200
	var raw []byte
	want := []string{"stream 000"}
	for i := 1; i < n; i++ {
		if i == 100 {
			raw = append(raw, binary.AppendUvarint(nil, 7)...)
			raw = append(raw, "garbage"...)
		}
		env := carol.seal(t, bob, text(i), newMessageID(t))
		raw = append(append(raw, binary.AppendUvarint(nil, uint64(len(env)))...), env...)
		want = append(want, fmt.Sprintf("stream %03d", i))
	}
	s, err := carol.h.NewStream(ctx, bob.host.ID(), StreamProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Write(raw); err != nil {
		t.Fatal(err)
	}
	_ = s.CloseWrite()
	acks, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(acks) != n {
		t.Fatalf("%d answers for %d envelopes", len(acks), n)
	}
	for i, a := range acks {
		if want := byte(directOK); i == 99 {
			if a != directRejected {
				t.Fatalf("garbage answered %d", a)
			}
		} else if a != want {
			t.Fatalf("envelope %d answered %d", i, a)
		}
	}
	if got := texts(t, bob, "carol"); !slices.Equal(got, want) {
		t.Fatalf("Bob has %d messages, want %d in order", len(got), len(want))
	}
}

// TestSendBatchUsesOneStream: a batch for a device that is online goes on
// one /peergram/msg/2.0.0 stream, not one stream per envelope.
func TestSendBatchUsesOneStream(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := alice.host.Connect(ctx, peer.AddrInfo{ID: bob.host.ID(), Addrs: bob.host.Addrs()}); err != nil {
		t.Fatal(err)
	}
	tg := target{account: bob.keys.account.ID(), cert: *bob.keys.cert, record: &directory.Record{PeerID: bob.host.ID()}}
	envs := [][]byte{[]byte("one"), []byte("two"), []byte("three")} // not envelopes: rejected, then tried at the relay
	before := bob.streamsIn.Load()
	errs := alice.sendBatch(ctx, tg, envs)
	if got := bob.streamsIn.Load() - before; got != 1 {
		t.Fatalf("%d streams for a batch of %d", got, len(envs))
	}
	if len(errs) != len(envs) {
		t.Fatalf("%d outcomes for %d envelopes", len(errs), len(envs))
	}
}

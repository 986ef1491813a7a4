package calls

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/peergram/peergram/calls/sfuproto"
)

// r4Conn is an SFU's signalling stream as the engine sees it.
type r4Conn struct {
	in   chan *sfuproto.Message
	done chan struct{}
	once sync.Once
	mu   sync.Mutex
	sent []*sfuproto.Message
}

func (c *r4Conn) Send(m *sfuproto.Message) error {
	c.mu.Lock()
	c.sent = append(c.sent, m)
	c.mu.Unlock()
	return nil
}

func (c *r4Conn) Recv() (*sfuproto.Message, error) {
	select {
	case m := <-c.in:
		return m, nil
	case <-c.done:
		return nil, errors.New("closed")
	}
}

func (c *r4Conn) Close() error { c.once.Do(func() { close(c.done) }); return nil }

func (c *r4Conn) answers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, m := range c.sent {
		if m.Type == sfuproto.TypeAnswer {
			n++
		}
	}
	return n
}

// TestReview4RosterBeforeOffer: JoinGroup "returns once the SFU's first
// offer is answered" and takes the first message as the offer or a
// refusal — but the SFU adds a participant to the room (r.join) before
// its writer sends the first offer (p.run → negotiate), so any roster
// broadcast in between (another participant muting, someone joining or
// leaving, a speaker change: every 250 ms in a busy call) reaches the
// joiner first. It is seen in TestReview4MuteFloodLosesOffers with the
// real SFU. JoinGroup then returns a call whose offer is not answered
// yet and the offer is handled on groupLoop concurrently with the
// caller: groupOffer writes sentTrack.sender/ssrc without Engine.mu
// while snapshot (JoinGroup's own return value, GetGroup, events) reads
// them — a data race (-race reports it) and a call that is "joined"
// before its connection is even negotiated.
// Expected: JoinGroup waits for the offer (skipping rosters/candidates)
// and no race.
func TestReview4RosterBeforeOffer(t *testing.T) {
	e, err := NewEngine(Config{Signaller: nopSig{}, Device: "D1", Settings: loopback, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()

	// The SFU's side: an offer with a receiving audio m-line.
	sfuPC, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer sfuPC.Close()
	if _, err := sfuPC.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := sfuPC.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sfuPC.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}

	conn := &r4Conn{in: make(chan *sfuproto.Message, 4), done: make(chan struct{})}
	conn.in <- &sfuproto.Message{Type: sfuproto.TypeRoster, Roster: []sfuproto.Participant{{Device: "aa", Account: "bb"}}}
	go func() {
		time.Sleep(200 * time.Millisecond)
		conn.in <- &sfuproto.Message{Type: sfuproto.TypeOffer, SDP: offer.SDP}
	}()
	call := "00112233445566778899aabbccddeeff"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g, err := e.JoinGroup(ctx, call, "group", conn, Media{Audio: "testdata/audio.ogg"})
	if err != nil {
		t.Fatal(err)
	}
	answered := conn.answers()
	// What the node does right after: read the call (GetGroup, events).
	for i := 0; i < 40; i++ {
		_, _ = e.GetGroup(call)
		time.Sleep(10 * time.Millisecond)
	}
	if answered == 0 {
		t.Fatalf("JoinGroup returned %q with the SFU's offer not answered (the first message was a roster)", g.State)
	}
}

type nopSig struct{}

func (nopSig) Signal(context.Context, string, Signal) error { return nil }

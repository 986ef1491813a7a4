package node

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peergram/peergram/calls"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/turnserver"
)

func callMedia(name string) string { return filepath.Join("..", "calls", "testdata", name) }

func callNode(c *Config) {
	c.CallLoopback = true
}

// waitCall waits for n's call id (or, id empty, any incoming call) to be
// in state.
func waitCall(t *testing.T, n *testNode, id string, state calls.State) calls.Call {
	t.Helper()
	var last []calls.Call
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		cs, err := n.Calls(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if (c.ID == id || id == "" && c.Direction == calls.Incoming) && c.State == state {
				return c
			}
		}
		last = cs
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no call %q in state %s: %+v", id, state, last)
	return calls.Call{}
}

// TestCallThroughNodes: a call between two nodes, signalled inside their
// end-to-end sessions: it rings at Bob (an event), Bob answers, both see
// the same verification code, audio and video from the test files are
// recorded at Bob, Alice hangs up; the history survives a restart of
// Bob's node. A call from an account that is not a contact never rings.
func TestCallThroughNodes(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNodeWith(t, aliceHome, callNode, relay.addr)
	bob := startNodeWith(t, bobHome, callNode, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	bobEvents := bob.Subscribe(sctx)

	c, err := alice.StartCall(ctx, "bob", calls.Media{Audio: callMedia("audio.ogg"), Video: callMedia("video.ivf")})
	if err != nil {
		t.Fatal(err)
	}
	in := waitCall(t, bob, c.ID, calls.StateRinging)
	if in.Direction != calls.Incoming || in.Peer != aliceInfo.AccountID {
		t.Fatalf("at Bob: %+v", in)
	}
	waitCall(t, alice, c.ID, calls.StateRinging)
	for rang := false; !rang; {
		select {
		case ev := <-bobEvents:
			rang = ev.Type == chat.EventCall && ev.Call.ID == c.ID && ev.Call.State == calls.StateRinging
		case <-time.After(10 * time.Second):
			t.Fatal("no call event at Bob")
		}
	}
	rec := t.TempDir()
	if _, err := bob.AnswerCall(ctx, c.ID, calls.Media{Audio: callMedia("audio.ogg"), Record: rec}); err != nil {
		t.Fatal(err)
	}
	a, b := waitCall(t, alice, c.ID, calls.StateAccepted), waitCall(t, bob, c.ID, calls.StateAccepted)
	if a.Verification == "" || a.Verification != b.Verification {
		t.Fatalf("codes %q and %q", a.Verification, b.Verification)
	}
	// Until Bob has received most of the 3 s of video.
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, _ := bob.Call(ctx, c.ID)
		var video uint64
		for _, tr := range got.Tracks {
			if tr.Direction == "received" && tr.Kind == "video" {
				video = tr.Packets
			}
		}
		sent, _ := alice.Call(ctx, c.ID)
		done := false
		for _, tr := range sent.Tracks {
			if tr.Name == "video" && tr.Frames == 45 {
				done = true
			}
		}
		if done && video > 40 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("media: %+v / %+v", got.Tracks, sent.Tracks)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if err := alice.HangupCall(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	waitCall(t, bob, c.ID, calls.StateEnded)
	// The call is an entry in the chat's history on both sides.
	for _, side := range []struct {
		n       *testNode
		contact string
		want    string
	}{{alice, "bob", "Outgoing video call · "}, {bob, "alice", "Incoming video call · "}} {
		ms, err := side.n.Messages(ctx, side.contact, false)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, m := range ms {
			if m.Call != nil && m.ID == c.ID {
				found = strings.HasPrefix(m.Text, side.want)
				if !found {
					t.Fatalf("call entry %q", m.Text)
				}
			}
		}
		if !found {
			t.Fatalf("no call entry in the chat with %s: %+v", side.contact, ms)
		}
	}
	for _, f := range []string{"video.ivf", "audio.ogg"} {
		if fi, err := os.Stat(filepath.Join(rec, f)); err != nil || fi.Size() < 1000 {
			t.Fatalf("recording %s: %v", f, err)
		}
	}

	// The history outlives the daemon.
	bob.stop()
	bob2 := startNodeWith(t, bobHome, callNode, relay.addr)
	got, err := bob2.Call(ctx, c.ID)
	if err != nil || got.State != calls.StateEnded || got.Verification != a.Verification {
		t.Fatalf("after a restart: %+v (%v)", got, err)
	}
	if list, err := bob2.Calls(ctx); err != nil || len(list) != 1 {
		t.Fatalf("calls after a restart: %d (%v)", len(list), err)
	}
	if b, err := json.Marshal(got); err != nil || len(b) == 0 {
		t.Fatal(err)
	}

	// Mallory, not Bob's contact, calls him: his node never rings. Her
	// node refuses to call a non-contact; her modified node sends the
	// offer anyway.
	malHome, malInfo := initHome(t, "mallory")
	mal := startNodeWith(t, malHome, callNode, relay.addr)
	if _, err := mal.StartCall(ctx, bobInfo.AccountID, calls.Media{}); !errors.Is(err, chat.ErrUnknownContact) && !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("calling a stranger: %v", err)
	}
	if _, err := mal.AddContact(ctx, bobInfo.Link, "bob"); err != nil {
		t.Fatal(err)
	}
	_ = malInfo
	mc, err := mal.StartCall(ctx, "bob", calls.Media{})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // the offer is delivered (as a message request would be)
	if _, err := bob2.Call(ctx, mc.ID); !errors.Is(err, chat.ErrUnknownCall) {
		t.Fatalf("ATTACK WORKS: a stranger's call reached Bob: %v", err)
	}
}

// TestCallThroughTURN: the relay runs TURN; both nodes take relay
// candidates only (the call is forced through the relay) and the call
// still carries media both ways. The TURN server saw only what DTLS-SRTP
// sealed: the relay's store holds no call media (it keeps none).
func TestCallThroughTURN(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	ts, err := turnserver.New(turnserver.Config{Host: relay.h, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.Close() })
	relayOnly := func(c *Config) { c.CallLoopback, c.CallRelayOnly = true, true }
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNodeWith(t, aliceHome, relayOnly, relay.addr)
	bob := startNodeWith(t, bobHome, relayOnly, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	c, err := alice.StartCall(ctx, "bob", calls.Media{Audio: callMedia("audio.ogg")})
	if err != nil {
		t.Fatal(err)
	}
	waitCall(t, bob, c.ID, calls.StateRinging)
	if _, err := bob.AnswerCall(ctx, c.ID, calls.Media{Audio: callMedia("audio.ogg")}); err != nil {
		t.Fatal(err)
	}
	received := func(n *testNode) uint64 {
		got, _ := n.Call(ctx, c.ID)
		var p uint64
		for _, tr := range got.Tracks {
			if tr.Direction == "received" {
				p += tr.Packets
			}
		}
		return p
	}
	deadline := time.Now().Add(30 * time.Second)
	for received(alice) < 100 || received(bob) < 100 {
		if time.Now().After(deadline) {
			a, _ := alice.Call(ctx, c.ID)
			t.Fatalf("through TURN: %d and %d packets received (%+v)", received(alice), received(bob), a)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(alice.turnCache) == 0 || alice.turnCache[0].Username == "" {
		t.Fatalf("Alice's node holds no TURN credentials: %+v", alice.turnCache)
	}
}

package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"

	"github.com/peergram/peergram/calls"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/sfu"
)

// callPattern is in every audio frame a group call's members send.
var callPattern = []byte("PEERGRAM-CALL-PATTERN")

// patternAudio writes an Ogg/Opus file of n 20 ms packets holding
// callPattern (nothing on the path decodes Opus).
func patternAudio(t *testing.T, n int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pattern.ogg")
	w, err := oggwriter.New(p, 48000, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		pl := append(append([]byte{0xfc}, callPattern...), fmt.Sprintf("-%05d", i)...)
		if err := w.WriteRTP(&rtp.Packet{Header: rtp.Header{Timestamp: uint32(i * 960), SequenceNumber: uint16(i)}, Payload: pl}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// startSFU runs an SFU on the test relay's host, its members from the
// relay's history server.
func startSFU(t *testing.T, r *testRelay, tap func(call, device, kind string, payload []byte)) *sfu.Server {
	t.Helper()
	s, err := sfu.New(sfu.Config{Host: r.h, Members: r.hist, Tap: tap, Recheck: 500 * time.Millisecond,
		Settings: func(se *webrtc.SettingEngine) {
			se.SetIncludeLoopbackCandidate(true)
			se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
			se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
			se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func heard(g calls.GroupCall, device string) (frames, bad uint64) {
	for _, tr := range g.Tracks {
		if tr.Direction == "received" && tr.Device == device && tr.Kind == "audio" {
			frames += tr.Frames
			bad += tr.Undecryptable
		}
	}
	return
}

// TestGroupCallThroughNodes: four members of a group in a call through
// the relay's SFU, the keys handed out over the group's encryption: each
// hears the other three; the SFU never sees the test pattern; a member
// who leaves is gone from the others' rosters; a member removed from the
// group is dropped from the call and cannot join again, and the others
// go on hearing each other under new keys.
func TestGroupCallThroughNodes(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	var tapMu sync.Mutex
	var tapped, leaks int
	startSFU(t, relay, func(_, _, _ string, payload []byte) {
		tapMu.Lock()
		tapped++
		if bytes.Contains(payload, callPattern) {
			leaks++
		}
		tapMu.Unlock()
	})
	names := []string{"alice", "bob", "carol", "dave"}
	nodes := map[string]*testNode{}
	infos := map[string]Info{}
	for _, name := range names {
		var home string
		home, infos[name] = initHome(t, name)
		nodes[name] = startNodeWith(t, home, callNode, relay.addr)
	}
	for i, a := range names {
		for _, b := range names[i+1:] {
			addEachOther(t, nodes[a], nodes[b], infos[a], infos[b])
		}
	}
	alice, bob, carol, dave := nodes["alice"], nodes["bob"], nodes["carol"], nodes["dave"]
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "choir")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob", "carol", "dave"}); err != nil {
		t.Fatal(err)
	}
	gidb, _ := hex.DecodeString(g.ID)
	gid := [32]byte(gidb)
	for _, n := range nodes {
		eventually(t, "the group with four members", func() (bool, error) {
			got, err := n.Group(ctx, g.ID)
			return err == nil && len(got.Members) == 4, nil
		})
		eventually(t, "topic peers", func() (bool, error) { return len(n.groups.net.Peers(gid)) >= 2, nil })
		eventually(t, "the relay to know the member", func() (bool, error) {
			_, err := relay.hist.Member(gid, n.keys.device.ID())
			return err == nil, nil
		})
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	bobEvents := bob.Subscribe(sctx)
	audio := patternAudio(t, 1000) // 20 s
	started, err := alice.StartGroupCall(ctx, g.ID, calls.Media{Audio: audio, Record: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for rang := false; !rang; {
		select {
		case ev := <-bobEvents:
			rang = ev.Type == chat.EventGroupCall && ev.GroupCall.ID == started.ID && ev.GroupCall.State == calls.GroupActive
		case <-time.After(10 * time.Second):
			t.Fatal("no group call event at Bob")
		}
	}
	for _, n := range []*testNode{bob, carol, dave} {
		eventually(t, "the call to be known", func() (bool, error) {
			c, err := n.GroupCall(ctx, g.ID)
			return err == nil && c.ID == started.ID, nil
		})
		if _, err := n.JoinGroupCall(ctx, "choir", calls.Media{Audio: audio, Record: t.TempDir()}); err != nil {
			t.Fatal(err)
		}
	}
	for name, n := range nodes {
		eventually(t, name+" to hear the other three", func() (bool, error) {
			c, err := n.GroupCall(ctx, g.ID)
			if err != nil {
				return false, err
			}
			for _, o := range nodes {
				if o == n {
					continue
				}
				if f, _ := heard(c, o.keys.device.ID().String()); f < 50 {
					return false, nil
				}
			}
			return len(c.Participants) == 4, nil
		})
	}
	// The start is in the group's history; keys are not.
	msgs, err := bob.GroupMessages(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].CallID != started.ID {
		t.Errorf("Bob's group messages: %+v", msgs)
	}

	if _, err := dave.LeaveGroupCall(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Dave gone from Alice's roster", func() (bool, error) {
		c, err := alice.GroupCall(ctx, g.ID)
		return err == nil && len(c.Participants) == 3, nil
	})

	if _, err := alice.RemoveGroupMember(ctx, g.ID, "carol"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Carol dropped from the call", func() (bool, error) {
		cs, err := carol.GroupCalls(ctx)
		return err == nil && len(cs) == 1 && cs[0].State != calls.GroupJoined, nil
	})
	if _, err := carol.JoinGroupCall(ctx, g.ID, calls.Media{}); err == nil {
		t.Error("Carol joined again after her removal")
	}
	// Her node refuses that itself; the SFU refuses her too.
	conn, err := sfu.Dial(ctx, carol.host, relay.h.ID(), gid, started.ID, carol.keys.device, carol.keys.cert)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := carol.calls.JoinGroup(ctx, started.ID, g.ID, conn, calls.Media{}); !errors.Is(err, calls.ErrRefused) {
		t.Errorf("the SFU let a removed member in: %v", err)
	}
	// Alice and Bob go on hearing each other under their new keys.
	c, _ := bob.GroupCall(ctx, g.ID)
	before, _ := heard(c, alice.keys.device.ID().String())
	eventually(t, "Bob to hear Alice under her new key", func() (bool, error) {
		c, err := bob.GroupCall(ctx, g.ID)
		if err != nil {
			return false, err
		}
		f, _ := heard(c, alice.keys.device.ID().String())
		return f > before+50 && c.KeyID != started.KeyID, nil
	})
	tapMu.Lock()
	defer tapMu.Unlock()
	if tapped < 300 || leaks > 0 {
		t.Errorf("the SFU forwarded %d packets, %d of them with the pattern", tapped, leaks)
	}
}

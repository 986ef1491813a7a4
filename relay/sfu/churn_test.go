package sfu_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/peergram/peergram/calls"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/relay/sfu"
)

// TestGroupCallChurn: a participant keeps hearing newcomers however many
// have come and gone before (the bound on received tracks counts those
// live, not those of the whole call: it stopped taking tracks after 32).
func TestGroupCallChurn(t *testing.T) {
	relay := newHost(t)
	ms := &members{dev: map[identity.DeviceID]identity.AccountID{}}
	srv, err := sfu.New(sfu.Config{Host: relay, Members: ms, Settings: loopback})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	var group [32]byte
	rand.Read(group[:])
	call := newCallID()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	audio := patternOgg(t, 250)
	a, x := newMember(t, relay, ms), newMember(t, relay, ms)
	if _, err := a.join(ctx, relay, group, call, calls.Media{}); err != nil {
		t.Fatal(err)
	}
	const rounds = 36 // more than the 32 tracks received at once
	for i := range rounds {
		if _, err := x.join(ctx, relay, group, call, calls.Media{Audio: audio}); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		shareKeys(t, call, a, x)
		waitFor(t, 10*time.Second, "a new track of x at a", func() bool {
			g, _ := a.e.GetGroup(call)
			n := 0
			for _, tr := range g.Tracks {
				if tr.Direction == "received" && tr.Frames > 0 {
					n++
				}
			}
			return n > i
		})
		g, _ := a.e.GetGroup(call)
		var last calls.GroupTrack
		for _, tr := range g.Tracks {
			if tr.Direction == "received" {
				last = tr
			}
		}
		if last.Frames == 0 {
			t.Fatalf("round %d: the newest track at a has no frames: %+v", i, last)
		}
		if _, err := x.e.LeaveGroup(ctx, call); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "x to leave a's roster", func() bool {
			g, _ := a.e.GetGroup(call)
			return len(g.Participants) == 1
		})
	}
}

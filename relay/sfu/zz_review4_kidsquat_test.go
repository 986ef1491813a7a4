package sfu_test

import (
	"context"
	"testing"
	"time"

	"github.com/peergram/peergram/calls"
	"github.com/peergram/peergram/relay/sfu"
)

// TestReview4KeyIDSquatting: a call key is bound to the device that
// posted it first (Engine.AddGroupKey: kidDevice[kid], later claims by
// another device refused). Key IDs are public — every SFrame header the
// SFU forwards carries one, and every member reads every key posted to
// the group — so a malicious member can post, as its own key (node:
// takeCallBody passes its authenticated device), the key ID of another
// participant. A receiver that takes that claim first (a late joiner,
// as every node reposts its key when it sees someone new) then refuses
// the real owner's key as "another device's" and never hears the
// victim: the frames on the victim's track are counted undecryptable.
// Expected: the victim's own key is taken (keys scoped per device, e.g.
// looked up by (stream device, KID) or derived with the device ID).
func TestReview4KeyIDSquatting(t *testing.T) {
	relay := newHost(t)
	_, ms, _ := r4Server(t, sfu.Config{Host: relay})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	audio := patternOgg(t, 500)
	group := r4Group()
	call := newCallID()

	victim, attacker, late := newMember(t, relay, ms), newMember(t, relay, ms), newMember(t, relay, ms)
	if _, err := victim.join(ctx, relay, group, call, calls.Media{Audio: audio}); err != nil {
		t.Fatal(err)
	}
	if _, err := attacker.join(ctx, relay, group, call, calls.Media{}); err != nil {
		t.Fatal(err)
	}
	// The attacker, a member, learns the victim's key ID (from the key
	// the victim posts to the group, or any SFrame header).
	vkid, _, err := victim.e.GroupKey(call)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := late.join(ctx, relay, group, call, calls.Media{}); err != nil {
		t.Fatal(err)
	}
	// The late joiner's node takes the attacker's "key" message first:
	// takeCallBody → AddGroupKey(call, <attacker's device>, vkid, junk).
	junk := make([]byte, 16)
	if err := late.e.AddGroupKey(call, attacker.dev.ID().String(), vkid, junk); err != nil {
		t.Fatalf("the squatting key was refused: %v", err)
	}
	// Then the victim's real key arrives.
	_, vbase, _ := victim.e.GroupKey(call)
	errReal := late.e.AddGroupKey(call, victim.dev.ID().String(), vkid, vbase)

	vdev := victim.dev.ID().String()
	deadline := time.Now().Add(8 * time.Second)
	var frames, packets, bad uint64
	for time.Now().Before(deadline) {
		g, _ := late.e.GetGroup(call)
		frames, packets, bad = received(g, vdev, "audio")
		if frames >= 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if frames < 50 {
		t.Fatalf("the late joiner cannot hear the victim after another member claimed the victim's key ID: "+
			"victim's own key refused (%v); %d frames opened, %d packets, %d undecryptable", errReal, frames, packets, bad)
	}
}

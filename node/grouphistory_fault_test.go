package node

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/relay/history"
)

// TestGroupHistoryRelayStoreLost: Bob's home relay loses its store (a
// new disk; same identity and address) while Bob is offline. It numbers
// the group's envelopes from 1 again: fewer than Bob's cursor (his node
// sees the relay's head behind it), or more (the relay's store ID
// changed). Either way his node reads the relay's history again from the
// start and gets what was posted after the loss, once each, with nothing
// held twice — and a post Alice made before her node registered the
// group at the new store too.
func TestGroupHistoryRelayStoreLost(t *testing.T) {
	for _, tc := range []struct {
		name          string
		before, after int // posts before the loss, and after (besides the one in the gap)
	}{
		{"head behind the cursor", 5, 2},
		{"head past the cursor", 1, 6},
	} {
		t.Run(tc.name, func(t *testing.T) { relayStoreLost(t, tc.before, tc.after) })
	}
}

func relayStoreLost(t *testing.T, nBefore, nAfter int) {
	r := rv22NewRelay(t, relayMods{})
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNodeWith(t, aliceHome, func(c *Config) { c.GroupStoreAfter = time.Second }, r.addr)
	bob := startNode(t, bobHome, r.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "Lost store")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the group at Bob", func() (bool, error) {
		_, err := bob.Group(ctx, g.ID)
		return err == nil, nil
	})
	raw, _ := hex.DecodeString(g.ID)
	gid := groupstate.GroupID(raw)
	var want []string
	for i := range nBefore {
		text := fmt.Sprint("before the loss ", i)
		if _, err := alice.SendGroup(ctx, g.ID, text); err != nil {
			t.Fatal(err)
		}
		want = append(want, text)
	}
	eventually(t, "Bob read the relay's history to its head", func() (bool, error) {
		pg, err := history.NewClient(bob.host).Query(ctx, r.id, gid, 0, 0, true)
		if err != nil || !slices.Equal(groupTexts(t, bob, g.ID), want) {
			return false, nil
		}
		return pg.Head >= uint64(nBefore) && bob.cursor(gid, r.id) == pg.Head, nil
	})
	before := bob.cursor(gid, r.id)
	bob.stop()
	r.stop()
	if err := os.RemoveAll(r.dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	r.start(t)
	// Posted before Alice's node registered the group at the new store:
	// the relay does not hold the group yet, and her node keeps the post
	// until it does.
	if _, err := alice.SendGroup(ctx, g.ID, "in the gap"); err != nil {
		t.Fatal(err)
	}
	want = append(want, "in the gap")
	hc := history.NewClient(alice.host)
	eventually(t, "the group registered again at the new store", func() (bool, error) {
		_, err := hc.Query(ctx, r.id, gid, 0, 0, true)
		return err == nil, nil
	})
	for i := range nAfter {
		text := fmt.Sprint("after the loss ", i)
		if _, err := alice.SendGroup(ctx, g.ID, text); err != nil {
			t.Fatal(err)
		}
		want = append(want, text)
	}
	eventually(t, "the new posts at the relay", func() (bool, error) {
		pg, err := hc.Query(ctx, r.id, gid, 0, 0, true)
		return err == nil && len(pg.Items) >= nAfter+1, nil
	})
	pg, err := hc.Query(ctx, r.id, gid, 0, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	if (nBefore > nAfter) != (pg.Head < before) {
		t.Fatalf("the relay's head %d against Bob's cursor %d: not the case this run is for", pg.Head, before)
	}
	bob = startNode(t, bobHome, r.addr)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && len(groupTexts(t, bob, g.ID)) < len(want) {
		time.Sleep(200 * time.Millisecond)
	}
	if got := groupTexts(t, bob, g.ID); !slices.Equal(got, want) {
		t.Fatalf("Bob holds %q, want %q", got, want)
	}
}

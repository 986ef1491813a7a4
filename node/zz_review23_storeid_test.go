package node

// Outside review 23: a relay whose store ID changes.

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/peergram/peergram/storage"
)

// TestReview23HeldStoreChangeNoDuplicates: the home relay restarts with
// another store ID (history.meta "store" rewritten; its envelopes kept,
// as a relay whose store was copied or whose meta was lost would). Bob's
// node drops its cursors there and reads the group's history again from
// the start; what it holds is skipped by ID, so nothing is shown twice,
// and a post after the change still arrives.
func TestReview23HeldStoreChangeNoDuplicates(t *testing.T) {
	r := rv22NewRelay(t, relayMods{})
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, r.addr)
	bob := startNode(t, bobHome, r.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "Store")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the group at Bob", func() (bool, error) {
		got, err := bob.Group(ctx, g.ID)
		return err == nil && got.Role == "member", nil
	})
	var want []string
	for i := range 3 {
		text := fmt.Sprint("before ", i)
		if _, err := alice.SendGroup(ctx, g.ID, text); err != nil {
			t.Fatal(err)
		}
		want = append(want, text)
	}
	eventually(t, "three posts at Bob", func() (bool, error) { return len(groupTexts(t, bob, g.ID)) == 3, nil })
	time.Sleep(2 * time.Second) // Bob's cursor past them
	r.stop()
	db, err := storage.Open(storage.Options{Dir: r.dir, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	id[0] |= 1
	if err := db.Update(func(tx *storage.Txn) error { return tx.Set(db.Keyspace("history.meta"), []byte("store"), id[:]) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	r.start(t)
	time.Sleep(4 * time.Second)
	if _, err := alice.SendGroup(ctx, g.ID, "after"); err != nil {
		t.Fatal(err)
	}
	want = append(want, "after")
	eventually(t, "the post after the change at Bob", func() (bool, error) {
		return slices.Contains(groupTexts(t, bob, g.ID), "after"), nil
	})
	time.Sleep(3 * time.Second)
	got := groupTexts(t, bob, g.ID)
	t.Logf("Bob holds %q", got)
	if !slices.Equal(got, want) {
		t.Errorf("after the relay's store ID changed, Bob holds %q, want %q", got, want)
	}
}

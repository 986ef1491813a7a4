package node

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// TestGroupCreate: a group is created with its owner, listed, found by ID
// or by a unique title, kept across a restart; a title two groups share
// names neither; a stored log edited behind the node's back is refused.
func TestGroupCreate(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	home, info := initHome(t, "alice")
	alice := startNode(t, home, relay.addr)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "  Book club ")
	if err != nil {
		t.Fatal(err)
	}
	if g.Title != "Book club" || g.Role != "owner" || len(g.ID) != 64 || len(g.Members) != 1 ||
		g.Members[0].AccountID != info.AccountID || g.Members[0].Role != "owner" || g.Members[0].Name != "alice" {
		t.Fatalf("created %+v", g)
	}
	for _, bad := range []string{"", "   ", strings.Repeat("x", 129)} {
		if _, err := alice.CreateGroup(ctx, bad); !errors.Is(err, chat.ErrInvalid) {
			t.Fatalf("title %q: %v", bad, err)
		}
	}
	if _, err := alice.CreateGroup(ctx, "Hikers"); err != nil {
		t.Fatal(err)
	}
	alice.stop()
	alice = startNode(t, home, relay.addr)
	gs, err := alice.Groups(ctx)
	if err != nil || len(gs) != 2 || gs[0].Title != "Book club" || gs[1].Title != "Hikers" {
		t.Fatalf("after restart: %+v (%v)", gs, err)
	}
	for _, name := range []string{g.ID, strings.ToUpper(g.ID), "Book club"} {
		if got, err := alice.Group(ctx, name); err != nil || got.ID != g.ID {
			t.Fatalf("group %q: %+v (%v)", name, got, err)
		}
	}
	if _, err := alice.CreateGroup(ctx, "Hikers"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Group(ctx, "Hikers"); !errors.Is(err, chat.ErrUnknownGroup) {
		t.Fatalf("a shared title: %v", err)
	}
	if _, err := alice.Group(ctx, "nobody's"); !errors.Is(err, chat.ErrUnknownGroup) {
		t.Fatalf("unknown: %v", err)
	}
	// The stored creation entry edited: the log no longer verifies.
	id, _ := hex.DecodeString(g.ID)
	if err := alice.db.Update(func(tx *storage.Txn) error {
		raw, err := tx.Get(alice.st.groupLog, append(id, 0, 0, 0, 0, 0, 0, 0, 0))
		if err != nil {
			return err
		}
		raw = append([]byte(nil), raw...)
		raw[len(raw)-70] ^= 1
		return tx.Set(alice.st.groupLog, append(id, 0, 0, 0, 0, 0, 0, 0, 0), raw)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Groups(ctx); err == nil {
		t.Fatal("a tampered log was read")
	}
}

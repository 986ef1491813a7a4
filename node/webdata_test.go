package node

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/peergram/peergram/node/chat"
)

// TestWebDataKeptAcrossRestarts: the web client's entries outlive the
// daemon; only the named entries, of bounded size, are kept; a change of
// the shared preferences is published.
func TestWebDataKeptAcrossRestarts(t *testing.T) {
	home, _ := initHome(t, "alice")
	n := startNode(t, home)
	ctx := context.Background()
	if got, err := n.WebData(ctx, "prefs"); err != nil || got != nil {
		t.Fatalf("nothing kept yet: %q %v", got, err)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	evs := n.Subscribe(sctx)
	if err := n.KeepWebData(ctx, "prefs", []byte(`{"pinned":["c:x"]}`)); err != nil {
		t.Fatal(err)
	}
	if ev := <-evs; ev.Type != chat.EventPrefs {
		t.Fatalf("event %q after a prefs change", ev.Type)
	}
	if err := n.KeepWebData(ctx, "sessions", []byte(`[]`)); err != nil {
		t.Fatal(err)
	}
	if err := n.KeepWebData(ctx, "contacts", []byte(`x`)); !errors.Is(err, chat.ErrInvalid) {
		t.Errorf("an entry that is not the web client's: %v", err)
	}
	if _, err := n.WebData(ctx, "../meta"); !errors.Is(err, chat.ErrInvalid) {
		t.Errorf("reading an entry that is not the web client's: %v", err)
	}
	if err := n.KeepWebData(ctx, "prefs", bytes.Repeat([]byte("x"), maxWebData+1)); !errors.Is(err, chat.ErrTooLarge) {
		t.Errorf("an entry over the limit: %v", err)
	}
	n.stop()
	n = startNode(t, home)
	if got, err := n.WebData(ctx, "prefs"); err != nil || string(got) != `{"pinned":["c:x"]}` {
		t.Fatalf("after a restart: %q %v", got, err)
	}
}

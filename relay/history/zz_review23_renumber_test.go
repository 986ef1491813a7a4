package history

// Outside review 23: numbering after a registration lapses.

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/peergram/peergram/storage"
)

// TestReview23RenumberedAfterRegistrationLapse: a group's registration
// lapses (no member renewed it within RegistrationTTL; here 2 s) and the
// relay drops it at its next start (load: dead registrations are
// forgotten). A member registers it again: keepNew sets first/next to 1
// without reading history.seq, so numbering starts again at 1 in the
// same store (same store ID in Heads). Bob, whose cursor is 3 from
// before, is told head 3 == his cursor after three new posts and takes
// none of them; after five he is told 5 and takes only 4 and 5. The
// store ID did not change, so the node's "store changed" reset does not
// help. Expected: numbering goes on from history.seq (new posts are 4..),
// or the store ID changes.
func TestReview23RenumberedAfterRegistrationLapse(t *testing.T) {
	alice, bob := newMember(t), newMember(t)
	gid, entries := groupLog(t, alice, bob)
	dir := t.TempDir()
	opts := storage.Options{Dir: dir, MemTableSize: 1 << 20}
	mod := func(c *Config) { c.RegistrationTTL = 2 * time.Second }
	r := rv22Server(t, opts, mod)
	c := clientOf(t, r)
	ctx := context.Background()
	lists := [][]byte{alice.listBytes(t), bob.listBytes(t)}
	if err := c.Register(ctx, r.h.ID(), gid, entries, lists, alice.dev); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := c.Store(ctx, r.h.ID(), gid, alice.seal(t, gid, fmt.Sprint("before ", i)), alice.dev); err != nil {
			t.Fatal(err)
		}
	}
	hs, err := c.Heads(ctx, r.h.ID(), []Head{{Group: gid}}, 0)
	if err != nil || len(hs) != 1 || hs[0].Seq != 3 {
		t.Fatalf("heads before: %+v %v", hs, err)
	}
	store := hs[0].Store
	cursor := uint64(3) // Bob read all three
	time.Sleep(2500 * time.Millisecond)
	r.stop()

	r2 := rv22Server(t, opts, mod)
	c2 := clientOf(t, r2)
	if err := c2.Register(ctx, r2.h.ID(), gid, entries, lists, alice.dev); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := c2.Store(ctx, r2.h.ID(), gid, alice.seal(t, gid, fmt.Sprint("after ", i)), alice.dev); err != nil {
			t.Fatal(err)
		}
	}
	hs, err = c2.Heads(ctx, r2.h.ID(), []Head{{Group: gid, Seq: cursor}}, 0)
	if err != nil || len(hs) != 1 {
		t.Fatalf("heads after: %+v %v", hs, err)
	}
	pg, err := c2.Query(ctx, r2.h.ID(), gid, cursor, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after re-registration: Heads for cursor %d says seq %d store same=%v; Query after the cursor gives %d of 3 new posts (%q)",
		cursor, hs[0].Seq, hs[0].Store == store, len(pg.Items), texts(t, pg.Items, gid))
	if len(pg.Items) != 3 && (hs[0].Store == store && !hs[0].Unknown) {
		t.Errorf("numbering restarted at 1 after the registration lapsed (same store ID): a member with cursor %d is told head %d and gets %d of the 3 new posts",
			cursor, hs[0].Seq, len(pg.Items))
	}
}

// TestReview23OverwrittenEnvelopeAckedAsHeld: the same lapse as above.
// The new numbering writes its envelopes over the old ones' keys
// (history.msg group|seq), while the old ones' ID index entries
// (history.ids) stay: an old envelope handed over again with Store — a
// member's node offering a post it still keeps — is answered OK as
// "held already" though the relay no longer holds it, and that member's
// node then drops its copy (heldAt). Expected: a Store answered OK means
// the relay serves the envelope.
func TestReview23OverwrittenEnvelopeAckedAsHeld(t *testing.T) {
	alice, bob := newMember(t), newMember(t)
	gid, entries := groupLog(t, alice, bob)
	dir := t.TempDir()
	opts := storage.Options{Dir: dir, MemTableSize: 1 << 20}
	mod := func(c *Config) { c.RegistrationTTL = 2 * time.Second }
	r := rv22Server(t, opts, mod)
	c := clientOf(t, r)
	ctx := context.Background()
	lists := [][]byte{alice.listBytes(t), bob.listBytes(t)}
	if err := c.Register(ctx, r.h.ID(), gid, entries, lists, alice.dev); err != nil {
		t.Fatal(err)
	}
	old := bob.seal(t, gid, "bob's old post")
	if err := c.Store(ctx, r.h.ID(), gid, old, bob.dev); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	r.stop()

	r2 := rv22Server(t, opts, mod)
	c2 := clientOf(t, r2)
	if err := c2.Register(ctx, r2.h.ID(), gid, entries, lists, alice.dev); err != nil {
		t.Fatal(err)
	}
	if err := c2.Store(ctx, r2.h.ID(), gid, alice.seal(t, gid, "alice's new post"), alice.dev); err != nil {
		t.Fatal(err)
	}
	err := c2.Store(ctx, r2.h.ID(), gid, old, bob.dev)
	pg, qerr := c2.Query(ctx, r2.h.ID(), gid, 0, 0, false)
	if qerr != nil {
		t.Fatal(qerr)
	}
	got := texts(t, pg.Items, gid)
	t.Logf("Store of Bob's old post again: %v; the relay serves %q", err, got)
	if err == nil && !slices.Contains(got, "bob's old post") {
		t.Errorf("a Store answered OK for an envelope the relay no longer serves (overwritten by the new numbering; its ID index kept): %q", got)
	}
}

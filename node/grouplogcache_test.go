package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// TestLogCacheFollowsStore: whatever changes a group's stored log — more
// entries, a transaction that wrote some and did not commit, a fork that
// replaces the head at the same length or longer, a damaged entry, a
// cleared or staged log — the log a node loads is the one a replay of its
// store gives, never the cached one it held before.
func TestLogCacheFollowsStore(t *testing.T) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "cached")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	id := groupstate.GroupID(raw)
	writePins(t, alice, id, 40)

	// replayed is what the store holds, read without the cache.
	replayed := func() (*groupstate.Log, error) {
		var l *groupstate.Log
		var bad error
		err := alice.db.View(func(tx *storage.Txn) error {
			return alice.replayLogs(tx, id[:], func(_ []byte, rl *groupstate.Log, rerr error) { l, bad = rl, rerr })
		})
		if err != nil {
			return nil, err
		}
		if l == nil && bad == nil {
			return nil, chat.ErrUnknownGroup
		}
		return l, bad
	}
	loaded := func() (*groupstate.Log, error) {
		var l *groupstate.Log
		err := alice.db.View(func(tx *storage.Txn) (err error) {
			l, err = alice.loadGroupTx(tx, id)
			return err
		})
		return l, err
	}
	same := func(what string) {
		t.Helper()
		want, werr := replayed()
		got, gerr := loaded()
		switch {
		case (werr == nil) != (gerr == nil):
			t.Fatalf("%s: loaded %v, the store replays %v", what, gerr, werr)
		case werr != nil:
			if errors.Is(werr, chat.ErrUnknownGroup) != errors.Is(gerr, chat.ErrUnknownGroup) {
				t.Fatalf("%s: loaded %v, the store replays %v", what, gerr, werr)
			}
		case got.Head().Hash() != want.Head().Hash() || got.State().Title != want.State().Title:
			t.Fatalf("%s: loaded head %d %x, the store's %d %x", what, got.Head().Seq, got.Head().Hash(), want.Head().Seq, want.Head().Hash())
		}
	}
	// sign makes an entry after prev that no reader has seen.
	sign := func(prev *groupstate.Entry, title string) []byte {
		t.Helper()
		e, err := groupstate.Sign(alice.keys.device, alice.keys.cert, prev, prev.Time, groupstate.Change{Kind: groupstate.KindTitle, Text: title})
		if err != nil {
			t.Fatal(err)
		}
		b, err := e.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	set := func(seq uint64, b []byte) {
		t.Helper()
		if err := alice.db.Update(func(tx *storage.Txn) error { return tx.Set(alice.st.groupLog, groupEntryKey(id, seq), b) }); err != nil {
			t.Fatal(err)
		}
	}
	same("after pins")
	l, _ := loaded()
	base := l.Head()

	// Grown in the store: the cached log is brought up to it.
	writePins(t, alice, id, 5)
	same("grown")

	// A transaction that reads its own new entry, then does not commit.
	// Once with the log cached (read on from its head), once without
	// (replayed).
	l, _ = loaded()
	errAbort := errors.New("abort")
	for _, cached := range []bool{true, false} {
		if !cached {
			alice.logCache.mu.Lock()
			delete(alice.logCache.logs, id)
			alice.logCache.mu.Unlock()
		}
		err = alice.db.Update(func(tx *storage.Txn) error {
			if err := tx.Set(alice.st.groupLog, groupEntryKey(id, l.Head().Seq+1), sign(l.Head(), "never committed")); err != nil {
				return err
			}
			in, err := alice.loadGroupTx(tx, id)
			if err != nil || in.State().Title != "never committed" {
				t.Errorf("inside the transaction: %v %v", in, err)
			}
			return errAbort
		})
		if !errors.Is(err, errAbort) {
			t.Fatal(err)
		}
		if c := alice.logCache.get(id); c != nil && c.log.Head().Hash() != l.Head().Hash() {
			t.Fatalf("cached %v: the cache holds what a transaction read of its own writes", cached)
		}
		same("after a transaction that did not commit")
	}

	// A fork replaces the head at the same length.
	l, _ = loaded()
	before := l.Entries(l.Head().Seq - 1)[0]
	set(l.Head().Seq, sign(before, "same length"))
	same("head replaced")
	if got, _ := loaded(); got.State().Title != "same length" {
		t.Fatalf("title %q after the head was replaced", got.State().Title)
	}

	// A fork replaces the head and goes further.
	l, _ = loaded()
	fork := sign(l.Entries(l.Head().Seq - 1)[0], "longer fork")
	set(l.Head().Seq, fork)
	forked, err := groupstate.Parse(fork)
	if err != nil {
		t.Fatal(err)
	}
	set(l.Head().Seq+1, sign(forked, "longer fork, then more"))
	same("head replaced, log longer")
	if got, _ := loaded(); got.State().Title != "longer fork, then more" {
		t.Fatalf("title %q after a longer fork", got.State().Title)
	}

	// A damaged entry after the cached head: an error, as a replay gives.
	l, _ = loaded()
	set(l.Head().Seq+1, []byte("not an entry"))
	set(l.Head().Seq+2, sign(l.Head(), "after the damage"))
	same("damaged after the head")
	if _, err := loaded(); err == nil {
		t.Fatal("a damaged log loaded")
	}
	if err := alice.db.Update(func(tx *storage.Txn) error {
		for _, s := range []uint64{l.Head().Seq + 1, l.Head().Seq + 2} {
			if err := tx.Delete(alice.st.groupLog, groupEntryKey(id, s)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	same("damage taken out")

	// A head replaced under an entry that follows the old head (a store
	// that no longer chains): an error, as a replay gives.
	l, _ = loaded()
	head := l.Head()
	headRaw, _ := head.MarshalBinary()
	set(head.Seq, sign(l.Entries(head.Seq - 1)[0], "other head"))
	set(head.Seq+1, sign(head, "after the old head"))
	same("head replaced under its successor")
	if _, err := loaded(); err == nil {
		t.Fatal("a log that does not chain loaded")
	}
	set(head.Seq, headRaw)
	same("head restored")
	if got, _ := loaded(); got.State().Title != "after the old head" {
		t.Fatalf("title %q once the head is restored", got.State().Title)
	}

	// A damaged creation entry, then a staged log (no creation entry).
	create, err := l.Entries(0)[0].MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	set(0, append([]byte{}, create[:len(create)-1]...))
	same("creation damaged")
	set(0, create)
	same("creation restored")
	if err := alice.db.Update(func(tx *storage.Txn) error { return tx.Delete(alice.st.groupLog, groupEntryKey(id, 0)) }); err != nil {
		t.Fatal(err)
	}
	same("staged")
	if _, err := loaded(); !errors.Is(err, chat.ErrUnknownGroup) {
		t.Fatalf("a staged log: %v", err)
	}

	// Cleared, then the old log written again up to an earlier entry.
	if err := alice.db.Update(func(tx *storage.Txn) error { return alice.clearGroupLog(tx, id) }); err != nil {
		t.Fatal(err)
	}
	same("cleared")
	set(0, create)
	for _, e := range l.Entries(1)[:base.Seq] {
		b, _ := e.MarshalBinary()
		set(e.Seq, b)
	}
	same("written again, shorter")
	if got, err := loaded(); err != nil || got.Head().Hash() != base.Hash() {
		t.Fatalf("the log written again: %v", err)
	}
}

// TestLogCacheBounded: the cache drops the logs used least recently
// once it holds more entries than its bound, keeps the one just put, and
// a dropped log loads again from the store.
func TestLogCacheBounded(t *testing.T) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	ctx := context.Background()
	var ids []groupstate.GroupID
	for _, title := range []string{"one", "two", "three"} {
		g, err := alice.CreateGroup(ctx, title)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := hex.DecodeString(g.ID)
		ids = append(ids, groupstate.GroupID(raw))
	}
	c := &alice.logCache
	cached := func(i int) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.logs[ids[i]] != nil
	}
	load := func(i int) {
		t.Helper()
		if g, err := alice.Group(ctx, hex.EncodeToString(ids[i][:])); err != nil || g.Title != []string{"one", "two", "three"}[i] {
			t.Fatalf("group %d: %+v %v", i, g, err)
		}
	}
	for i := range ids {
		load(i)
		if !cached(i) {
			t.Fatalf("group %d not cached once loaded", i)
		}
	}
	c.mu.Lock()
	per := c.held / 3 // (each log: its creation entry)
	c.max = 2*per + 1
	c.mu.Unlock()
	writePins(t, alice, ids[2], 1) // group three grows, and is put again
	load(2)
	if cached(0) || !cached(1) || !cached(2) {
		t.Fatalf("held: one %v, two %v, three %v; want the least recently used (one) dropped", cached(0), cached(1), cached(2))
	}
	c.mu.Lock()
	held := c.held
	c.mu.Unlock()
	if held != 2*per+1 {
		t.Fatalf("%d entries counted, want %d", held, 2*per+1)
	}
	load(0) // loads again; two goes
	if !cached(0) || cached(1) || !cached(2) {
		t.Fatalf("held: one %v, two %v, three %v; want two dropped", cached(0), cached(1), cached(2))
	}
}

// TestEndFromNonMemberDropped: a long log's end that continues the log a
// node holds (applied onto it, not replayed) is taken from a member, and
// dropped from an account that is not one, even when every entry in it
// is valid — as a whole log from a non-member is.
func TestEndFromNonMemberDropped(t *testing.T) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	g, err := alice.CreateGroup(context.Background(), "ends")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	id := groupstate.GroupID(raw)
	writePins(t, alice, id, 30)
	l := alice.reloadGroup(t, id)
	head := l.Head()
	e, err := groupstate.Sign(alice.keys.device, alice.keys.cert, head, head.Time, groupstate.Change{Kind: groupstate.KindTitle, Text: "from the end"})
	if err != nil {
		t.Fatal(err)
	}
	p := payload{Kind: "group-log", Group: g.ID, From: head.Seq - 15}
	for _, held := range l.Entries(head.Seq - 15) {
		b, _ := held.MarshalBinary()
		p.Log = append(p.Log, b)
	}
	b, _ := e.MarshalBinary()
	p.Log = append(p.Log, b)

	stranger, err := identity.NewAccountKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		sender identity.AccountID
		taken  bool
	}{
		{"a stranger", stranger.ID(), false},
		{"a member", alice.keys.account.ID(), true},
	} {
		if err := alice.db.Update(func(tx *storage.Txn) error { return alice.applyGroupLog(tx, c.sender, p) }); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := alice.reloadGroup(t, id).Head().Hash() == e.Hash(); got != c.taken {
			t.Fatalf("the end from %s: taken %v, want %v", c.name, got, c.taken)
		}
	}
}

// TestEndForkResolvedAsWhole: an end that forks the held log inside it
// (an entry the node holds replaced by another, then one more) is not a
// continuation: the node resolves it as a branch, as a whole log would
// be, and ends where groupstate's fork rule says.
func TestEndForkResolvedAsWhole(t *testing.T) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	g, err := alice.CreateGroup(context.Background(), "forked end")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	id := groupstate.GroupID(raw)
	writePins(t, alice, id, 30)
	l := alice.reloadGroup(t, id)
	head := l.Head()
	prev := l.Entries(head.Seq - 1)[0]
	sign := func(after *groupstate.Entry, title string) *groupstate.Entry {
		e, err := groupstate.Sign(alice.keys.device, alice.keys.cert, after, after.Time, groupstate.Change{Kind: groupstate.KindTitle, Text: title})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	// A rival to the head that wins the fork (the smaller hash: same
	// author), and one entry after it.
	var rival, next *groupstate.Entry
	var want *groupstate.Log
	for i := 0; ; i++ {
		rival = sign(prev, fmt.Sprint("rival ", i))
		next = sign(rival, "after the rival")
		try := l.Clone()
		if _, err := try.AddBranch([]*groupstate.Entry{rival, next}); err == nil {
			want = try
			break
		}
	}
	p := payload{Kind: "group-log", Group: g.ID, From: head.Seq - 15}
	for _, e := range append(l.Entries(head.Seq - 15)[:15], rival, next) {
		b, _ := e.MarshalBinary()
		p.Log = append(p.Log, b)
	}
	if err := alice.db.Update(func(tx *storage.Txn) error { return alice.applyGroupLog(tx, alice.keys.account.ID(), p) }); err != nil {
		t.Fatal(err)
	}
	if got := alice.reloadGroup(t, id); got.Head().Hash() != want.Head().Hash() || got.State().Title != "after the rival" {
		t.Fatalf("after the forked end: head %d %q, want %d %q", got.Head().Seq, got.State().Title, want.Head().Seq, want.State().Title)
	}
}

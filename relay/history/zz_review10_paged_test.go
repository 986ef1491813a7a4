package history

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/storage"
)

// Outside review 10: paged registrations, the store written entry by
// entry, and restarts.

// rv10Page is one crafted Register page, signed by dev for relay.
func rv10Page(relay peer.ID, group [32]byte, from uint64, entries, lists [][]byte, more bool, dev *identity.DeviceKey) []byte {
	m := &registerMsg{Group: group, From: from, Entries: entries, Lists: lists, More: more}
	m.Time, m.Device = time.Now().UnixMilli(), dev.ID()
	m.Sig = dev.Sign(RegisterLabel, registerSigned(string(relay), group, m.Time))
	return frame(typeRegister, m.appendBody(nil))
}

// rv10Send sends frames on one stream and returns the relay's status.
func rv10Send(t *testing.T, c *Client, relay peer.ID, frames [][]byte, closeEarly bool) *statusMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	str, err := c.h.NewStream(ctx, relay, ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	defer str.Close()
	_ = str.SetDeadline(time.Now().Add(20 * time.Second))
	for _, f := range frames {
		if _, err := str.Write(f); err != nil {
			break
		}
	}
	_ = str.CloseWrite()
	_, body, err := readFrame(str, typeStatus)
	if err != nil {
		t.Fatalf("no status: %v", err)
	}
	st, err := decodeStatus(body)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("relay: %v %q", st.Code, st.Text)
	return st
}

// rv10Stored returns what the relay stores of a group: entries, lists,
// and whether a registration key exists.
func rv10Stored(t *testing.T, r *relayUnderTest, gid [32]byte) (entries, lists [][]byte, reg bool) {
	t.Helper()
	if err := r.db.View(func(tx *storage.Txn) error {
		if err := tx.Iterate(r.srv.logs, gid[:], func(_, v []byte) error {
			entries = append(entries, bytes.Clone(v))
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Iterate(r.srv.lists, gid[:], func(_, v []byte) error {
			lists = append(lists, bytes.Clone(v))
			return nil
		}); err != nil {
			return err
		}
		_, err := tx.Get(r.srv.reg, gid[:])
		reg = err == nil
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return
}

func rv10Held(r *relayUnderTest, gid [32]byte) bool {
	r.srv.mu.Lock()
	defer r.srv.mu.Unlock()
	return r.srv.groups[gid] != nil
}

func rv10NothingKept(t *testing.T, r *relayUnderTest, gid [32]byte) {
	t.Helper()
	if rv10Held(r, gid) {
		t.Fatal("the relay holds the group")
	}
	e, l, reg := rv10Stored(t, r, gid)
	if len(e) > 0 || len(l) > 0 || reg {
		t.Fatalf("the relay stores %d entries, %d lists, registration %v of a group it refused", len(e), len(l), reg)
	}
}

// TestReview10PagedRegisterAttacks: crafted page sequences from a
// non-member, a removed member and a member that misbehaves on the wire.
func TestReview10PagedRegisterAttacks(t *testing.T) {
	owner, bob, mallory, stranger := newMember(t), newMember(t), newMember(t), newMember(t)
	gid, prefix := groupLog(t, owner, bob, mallory)
	prefix = appendLog(t, prefix, owner, pins(20)...)
	removed := appendLog(t, prefix, owner, groupstate.Change{Kind: groupstate.KindRemove, Account: mallory.acct.ID()})
	lists := [][]byte{owner.listBytes(t), bob.listBytes(t), mallory.listBytes(t)}
	rh := newHost(t)
	var clock atomic.Int64
	r := startServer(t, t.TempDir(), rh, func(c *Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(clock.Load())) }
	})
	c := clientOf(t, r)
	relay := rh.ID()

	t.Run("last page by a non-member", func(t *testing.T) {
		st := rv10Send(t, c, relay, [][]byte{
			rv10Page(relay, gid, 0, removed[:10], nil, true, owner.dev),
			rv10Page(relay, gid, 10, removed[10:], lists, true, owner.dev),
			rv10Page(relay, gid, uint64(len(removed)), nil, [][]byte{stranger.listBytes(t)}, false, stranger.dev),
		}, false)
		if st.Code != CodeInvalid {
			t.Fatalf("answer %v %q, want invalid", st.Code, st.Text)
		}
		rv10NothingKept(t, r, gid)
	})
	t.Run("last page by the member the pages removed", func(t *testing.T) {
		st := rv10Send(t, c, relay, [][]byte{
			rv10Page(relay, gid, 0, removed[:5], lists, true, mallory.dev),
			rv10Page(relay, gid, 5, removed[5:], lists, false, mallory.dev),
		}, false)
		if st.Code != CodeInvalid {
			t.Fatalf("answer %v %q, want invalid", st.Code, st.Text)
		}
		rv10NothingKept(t, r, gid)
	})
	t.Run("pages of two groups", func(t *testing.T) {
		other, otherLog := groupLog(t, mallory)
		st := rv10Send(t, c, relay, [][]byte{
			rv10Page(relay, other, 0, otherLog, nil, true, mallory.dev),
			rv10Page(relay, gid, 1, removed[1:], lists, false, mallory.dev),
		}, false)
		if st.Code != CodeMalformed {
			t.Fatalf("answer %v %q, want malformed", st.Code, st.Text)
		}
		rv10NothingKept(t, r, gid)
		rv10NothingKept(t, r, other)
	})
	t.Run("pages that do not follow", func(t *testing.T) {
		st := rv10Send(t, c, relay, [][]byte{
			rv10Page(relay, gid, 0, removed[:5], nil, true, owner.dev),
			rv10Page(relay, gid, 4, removed[4:], lists, false, owner.dev),
		}, false)
		if st.Code != CodeMalformed {
			t.Fatalf("answer %v %q, want malformed", st.Code, st.Text)
		}
		rv10NothingKept(t, r, gid)
	})
	t.Run("more forever", func(t *testing.T) {
		frames := [][]byte{rv10Page(relay, gid, 0, removed, lists, true, owner.dev)}
		for range MaxRegisterPages + 5 {
			frames = append(frames, rv10Page(relay, gid, uint64(len(removed)), nil, nil, true, owner.dev))
		}
		st := rv10Send(t, c, relay, frames, false)
		if st.Code != CodeInvalid {
			t.Fatalf("answer %v %q, want invalid", st.Code, st.Text)
		}
		rv10NothingKept(t, r, gid)
	})
	t.Run("stream ends after a page with more", func(t *testing.T) {
		st := rv10Send(t, c, relay, [][]byte{rv10Page(relay, gid, 0, removed, lists, true, owner.dev)}, true)
		if st.Code != CodeMalformed {
			t.Fatalf("answer %v %q, want malformed", st.Code, st.Text)
		}
		rv10NothingKept(t, r, gid)
	})
	t.Run("first page from past zero of a group not held", func(t *testing.T) {
		st := rv10Send(t, c, relay, [][]byte{rv10Page(relay, gid, 1, removed[1:], lists, false, owner.dev)}, false)
		if st.Code != CodeUnknown {
			t.Fatalf("answer %v %q, want unknown", st.Code, st.Text)
		}
		rv10NothingKept(t, r, gid)
	})

	// Now the owner registers the real log (Mallory removed).
	if err := c.Register(context.Background(), relay, gid, removed, lists, owner.dev); err != nil {
		t.Fatal(err)
	}
	expiry := func() time.Time {
		r.srv.mu.Lock()
		defer r.srv.mu.Unlock()
		return r.srv.groups[gid].expires
	}
	logNow := func() [][]byte {
		got, _, err := c.Log(context.Background(), relay, gid)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	exp0 := expiry()
	clock.Store(int64(5 * time.Minute))

	t.Run("removed member's fork in pages before the end", func(t *testing.T) {
		fork := appendLog(t, prefix, mallory, pins(30)...)
		n := uint64(len(prefix)) - 3
		st := rv10Send(t, c, relay, [][]byte{
			rv10Page(relay, gid, n, fork[n:n+10], nil, true, mallory.dev),
			rv10Page(relay, gid, n+10, fork[n+10:], [][]byte{mallory.listBytes(t)}, false, mallory.dev),
		}, false)
		if st.Code != CodeInvalid {
			t.Fatalf("answer %v %q, want invalid", st.Code, st.Text)
		}
		sameBytes(t, "the log after the fork", logNow(), removed)
		if !expiry().Equal(exp0) {
			t.Fatal("the removed member renewed the registration")
		}
		if _, err := r.srv.Member(gid, mallory.dev.ID()); err == nil {
			t.Fatal("Mallory is a member at the relay")
		}
	})
	t.Run("non-member renewal and lists", func(t *testing.T) {
		st := rv10Send(t, c, relay, [][]byte{
			rv10Page(relay, gid, uint64(len(removed)), nil, [][]byte{stranger.listBytes(t), mallory.listBytes(t)}, false, stranger.dev),
		}, false)
		if st.Code != CodeInvalid {
			t.Fatalf("answer %v %q, want invalid", st.Code, st.Text)
		}
		if !expiry().Equal(exp0) {
			t.Fatal("a stranger renewed the registration")
		}
		_, ls, _ := rv10Stored(t, r, gid)
		for _, l := range ls {
			if bytes.Equal(l, stranger.listBytes(t)) || bytes.Equal(l, mallory.listBytes(t)) {
				t.Fatal("a non-member's list is stored")
			}
		}
	})
	t.Run("page past the end", func(t *testing.T) {
		more := appendLog(t, removed, owner, pins(3)...)
		n := uint64(len(removed))
		st := rv10Send(t, c, relay, [][]byte{rv10Page(relay, gid, n+1, more[n+1:], nil, false, owner.dev)}, false)
		if st.Code != CodeInvalid {
			t.Fatalf("answer %v %q, want invalid", st.Code, st.Text)
		}
		sameBytes(t, "the log", logNow(), removed)
	})
	t.Run("a member's renewal", func(t *testing.T) {
		if err := c.RegisterFrom(context.Background(), relay, gid, uint64(len(removed)), nil, nil, bob.dev); err != nil {
			t.Fatal(err)
		}
		if !expiry().After(exp0) {
			t.Fatal("a member's renewal did not renew")
		}
	})
}

// TestReview10StoreMatchesMemory: competing branches registered at
// once by several members (equal roles: the fork rule picks by hash),
// a removed member's rollback, and paged renewals; the relay's stored
// log and lists must equal what it holds in memory, and after a restart
// it serves the same log.
func TestReview10StoreMatchesMemory(t *testing.T) {
	owner, mallory := newMember(t), newMember(t)
	ms := []*member{newMember(t), newMember(t), newMember(t), newMember(t)}
	gid, base := groupLog(t, owner, append(ms, mallory)...)
	base = appendLog(t, base, owner, pins(25)...)
	real := appendLog(t, base, owner, groupstate.Change{Kind: groupstate.KindRemove, Account: mallory.acct.ID()})
	lists := [][]byte{owner.listBytes(t), mallory.listBytes(t)}
	for _, m := range ms {
		lists = append(lists, m.listBytes(t))
	}
	dir := t.TempDir()
	rh := newHost(t)
	r := startServer(t, dir, rh, nil)
	r.srv.pageBudget = 2 << 10
	ctx := context.Background()
	small := func() *Client {
		c := clientOf(t, r)
		c.pageBudget = 2 << 10
		return c
	}
	if err := small().Register(ctx, rh.ID(), gid, real, lists, owner.dev); err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		var wg sync.WaitGroup
		cur, _, err := small().Log(ctx, rh.ID(), gid)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range ms {
			br := appendLog(t, cur, m, pins(1+(i+round)%5)...)
			wg.Add(1)
			go func() {
				defer wg.Done()
				from := uint64(len(cur)) - uint64(min(len(cur), 5))
				_ = small().RegisterFrom(ctx, rh.ID(), gid, from, br[from:], nil, m.dev)
			}()
		}
		fork := appendLog(t, base, mallory, pins(10)...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = small().Register(ctx, rh.ID(), gid, fork, lists, mallory.dev)
		}()
		wg.Wait()
	}
	r.srv.mu.Lock()
	var mem [][]byte
	for _, e := range r.srv.groups[gid].log.Entries(0) {
		b, _ := e.MarshalBinary()
		mem = append(mem, b)
	}
	var memLists [][]byte
	for _, h := range r.srv.groups[gid].lists {
		memLists = append(memLists, h.raw)
	}
	r.srv.mu.Unlock()
	stored, storedLists, _ := rv10Stored(t, r, gid)
	sameBytes(t, "stored log vs memory", stored, mem)
	sameBytes(t, "stored lists vs memory", sortedBytes(storedLists), sortedBytes(memLists))
	st, err := groupstate.Parse(mem[len(mem)-1])
	if err != nil {
		t.Fatal(err)
	}
	if st.Seq != uint64(len(mem)-1) {
		t.Fatal("memory log inconsistent")
	}
	r.stop()
	rh = newHost(t)
	r = startServer(t, dir, rh, nil)
	got, gotLists, err := clientOf(t, r).Log(ctx, rh.ID(), gid)
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "log after restart", got, mem)
	sameBytes(t, "lists after restart", sortedBytes(gotLists), sortedBytes(memLists))
	if _, err := r.srv.Member(gid, mallory.dev.ID()); err == nil {
		t.Fatal("Mallory is a member after the restart")
	}
}

// TestReview10ExpiredGroupForgotten: a registration not renewed for its
// TTL is gone after a restart, with its stored entries and lists; a
// registration of the same group afterwards starts clean.
func TestReview10ExpiredGroupForgotten(t *testing.T) {
	owner, bob := newMember(t), newMember(t)
	gid, entries := groupLog(t, owner, bob)
	entries = appendLog(t, entries, owner, pins(30)...)
	lists := [][]byte{owner.listBytes(t), bob.listBytes(t)}
	dir := t.TempDir()
	var clock atomic.Int64
	mod := func(c *Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(clock.Load())) }
	}
	r := startServer(t, dir, newHost(t), mod)
	if err := clientOf(t, r).Register(context.Background(), r.h.ID(), gid, entries, lists, owner.dev); err != nil {
		t.Fatal(err)
	}
	r.stop()
	clock.Store(int64(31 * 24 * time.Hour))
	r = startServer(t, dir, newHost(t), mod)
	rv10NothingKept(t, r, gid)
	// The same group again, shorter (a fresh start): no old entry comes back.
	short := entries[:5]
	c := clientOf(t, r)
	clock.Store(0)
	if err := c.Register(context.Background(), r.h.ID(), gid, short, lists, owner.dev); err != nil {
		t.Fatal(err)
	}
	e, _, _ := rv10Stored(t, r, gid)
	if len(e) != len(short) {
		t.Fatalf("stored %d entries, want %d", len(e), len(short))
	}

}

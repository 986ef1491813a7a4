package history

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/storage"
)

// bigLog signs a group created by owner with n accounts added (accounts
// that exist nowhere else: a log entry names an account, nothing more).
func bigLog(t *testing.T, owner *member, n int) ([32]byte, [][]byte) {
	t.Helper()
	var ref [32]byte
	_, _ = rand.Read(ref[:])
	e, err := groupstate.Sign(owner.dev, owner.cert, nil, time.Now().UnixMilli(), groupstate.Change{Kind: groupstate.KindCreate, Text: "g", Perms: groupstate.DefaultPerms, Ref: ref})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := e.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	l, err := groupstate.NewLog(e)
	if err != nil {
		t.Fatal(err)
	}
	raws := [][]byte{raw}
	for range n {
		var a identity.AccountID
		_, _ = rand.Read(a[:])
		if e, err = groupstate.Sign(owner.dev, owner.cert, e, time.Now().UnixMilli(), groupstate.Change{Kind: groupstate.KindAdd, Account: a}); err != nil {
			t.Fatal(err)
		}
		if raw, err = e.MarshalBinary(); err != nil {
			t.Fatal(err)
		}
		raws = append(raws, raw)
	}
	return l.Group(), raws
}

func sameBytes(t *testing.T, what string, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d items, want %d", what, len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("%s: item %d differs", what, i)
		}
	}
}

func sortedBytes(b [][]byte) [][]byte {
	b = slices.Clone(b)
	slices.SortFunc(b, bytes.Compare)
	return b
}

// TestLargeLogPaged: a group whose log is larger than one frame (2 MiB,
// 7,000 adds) registers in pages, on one stream, and is fetched whole,
// page by page.
func TestLargeLogPaged(t *testing.T) {
	owner := newMember(t)
	group, entries := bigLog(t, owner, 7000)
	size := 0
	for _, e := range entries {
		size += len(e)
	}
	if size <= MaxRegisterSize {
		t.Fatalf("the log has %d bytes: it fits one frame and tests nothing", size)
	}
	rh := newHost(t)
	r := startServer(t, t.TempDir(), rh, nil)
	ctx := context.Background()
	c := clientOf(t, r)
	lists := [][]byte{owner.listBytes(t)}
	if err := c.Register(ctx, rh.ID(), group, entries, lists, owner.dev); err != nil {
		t.Fatal(err)
	}
	got, gotLists, err := c.Log(ctx, rh.ID(), group)
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "the log", got, entries)
	sameBytes(t, "the lists", gotLists, lists)
}

// TestLogPagesAndRestart pages a small group's log and lists both ways
// (pages of 2 KiB, so each holds a few entries or lists), also after the
// relay restarts, where it reads the entries and lists it stored apart,
// each write within what one transaction takes. A registration that
// continues the log the relay holds appends to it; one that starts past
// its end, or names a group it does not hold, is refused; a new
// group's pages are kept only if the last page's signer is a member.
func TestLogPagesAndRestart(t *testing.T) {
	owner := newMember(t)
	others := make([]*member, 30)
	lists := [][]byte{owner.listBytes(t)}
	for i := range others {
		others[i] = newMember(t)
		lists = append(lists, others[i].listBytes(t))
	}
	gid, entries := groupLog(t, owner, others...)
	entries = appendLog(t, entries, owner, pins(40)...)
	dir := t.TempDir()
	rh := newHost(t)
	small := func(r *relayUnderTest) *Client {
		r.srv.pageBudget = 2 << 10
		c := clientOf(t, r)
		c.pageBudget = 2 << 10
		return c
	}
	r := startServer(t, dir, rh, nil)
	c := small(r)
	ctx := context.Background()

	// A stranger's pages of the group: refused, and nothing kept.
	stranger := newMember(t)
	var se *StatusError
	if err := c.Register(ctx, rh.ID(), gid, entries, append(slices.Clone(lists), stranger.listBytes(t)), stranger.dev); !errors.As(err, &se) || se.Code != CodeInvalid {
		t.Fatalf("a registration signed by a non-member: %v, want refused as invalid", err)
	}
	if _, _, err := c.Log(ctx, rh.ID(), gid); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("after a refused registration the relay answers %v, want ErrUnknownGroup", err)
	}

	if err := c.Register(ctx, rh.ID(), gid, entries, lists, others[29].dev); err != nil {
		t.Fatal(err)
	}
	check := func(c *Client, want [][]byte) {
		t.Helper()
		gotEntries, gotLists, err := c.Log(ctx, rh.ID(), gid)
		if err != nil {
			t.Fatal(err)
		}
		sameBytes(t, "the log", gotEntries, want)
		sameBytes(t, "the lists", sortedBytes(gotLists), sortedBytes(lists))
		// From an entry on (what a member behind lacks), in pages too,
		// and from its end (nothing).
		for _, from := range []int{1, len(want) / 2, len(want) - 1, len(want), len(want) + 3} {
			got, err := c.LogFrom(ctx, rh.ID(), gid, uint64(from))
			if err != nil {
				t.Fatalf("from %d: %v", from, err)
			}
			sameBytes(t, fmt.Sprint("the log from ", from), got, want[min(from, len(want)):])
		}
	}
	check(c, entries)

	// Restarted, the relay reads the log and lists it stored apart.
	r.stop()
	rh = newHost(t)
	r = startServer(t, dir, rh, nil)
	c = small(r)
	check(c, entries)

	// A page that continues the log.
	more := appendLog(t, entries, owner, pins(20)...)
	n := uint64(len(entries))
	if err := c.RegisterFrom(ctx, rh.ID(), gid, n, more[n:], nil, owner.dev); err != nil {
		t.Fatal(err)
	}
	check(c, more)

	// A page past the end, and a group the relay does not hold.
	n = uint64(len(more))
	past := appendLog(t, more, owner, pins(2)...)
	if err := c.RegisterFrom(ctx, rh.ID(), gid, n+1, past[n+1:], nil, owner.dev); !errors.As(err, &se) || se.Code != CodeInvalid {
		t.Fatalf("a page past the log's end: %v, want refused as invalid", err)
	}
	other, otherLog := groupLog(t, owner)
	if err := c.RegisterFrom(ctx, rh.ID(), other, 1, appendLog(t, otherLog, owner, pins(1)...)[1:], nil, owner.dev); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("a page of a group the relay does not hold: %v, want ErrUnknownGroup", err)
	}
	check(c, more)

	r.stop()
	rh = newHost(t)
	r = startServer(t, dir, rh, nil)
	check(small(r), more)
}

// TestForkShortensStoredLog: the relay holds a member's three entries;
// the owner's one concurrent entry wins the fork and displaces them, so
// the log is two entries shorter. After a restart the relay holds the
// owner's branch whole (entries the fork dropped are deleted from the
// store: left there, the stored log would end in the dropped branch).
func TestForkShortensStoredLog(t *testing.T) {
	owner, bob := newMember(t), newMember(t)
	gid, prefix := groupLog(t, owner, bob)
	bobs := appendLog(t, prefix, bob, pins(3)...)
	owners := appendLog(t, prefix, owner, pins(1)...)
	dir := t.TempDir()
	rh := newHost(t)
	r := startServer(t, dir, rh, nil)
	ctx := context.Background()
	c := clientOf(t, r)
	lists := [][]byte{owner.listBytes(t), bob.listBytes(t)}
	if err := c.Register(ctx, rh.ID(), gid, bobs, lists, bob.dev); err != nil {
		t.Fatal(err)
	}
	if err := c.Register(ctx, rh.ID(), gid, owners, lists, owner.dev); err != nil {
		t.Fatal(err)
	}
	stored := func() (n int) {
		t.Helper()
		if err := r.db.View(func(tx *storage.Txn) error {
			return tx.Iterate(r.srv.logs, gid[:], func(_, _ []byte) error { n++; return nil })
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := stored(); n != len(owners) {
		t.Fatalf("the relay stores %d entries of the group, want %d (the dropped branch deleted)", n, len(owners))
	}
	// A stop in the middle of writing a change (simulated: one entry of
	// the dropped branch written again after the log's end): the relay
	// still loads the log, up to where it stops verifying.
	stale, err := groupstate.Parse(bobs[len(bobs)-1])
	if err != nil {
		t.Fatal(err)
	}
	if err := r.db.Update(func(tx *storage.Txn) error {
		return tx.Set(r.srv.logs, entryKey(gid, stale.Seq), bobs[len(bobs)-1])
	}); err != nil {
		t.Fatal(err)
	}
	r.stop()
	rh = newHost(t)
	r = startServer(t, dir, rh, nil)
	c = clientOf(t, r)
	got, _, err := c.Log(ctx, rh.ID(), gid)
	if err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	sameBytes(t, "the log after the restart", got, owners)
	// And the relay still takes the owner's next entries.
	next := appendLog(t, owners, owner, pins(1)...)
	if err := c.Register(ctx, rh.ID(), gid, next, lists, owner.dev); err != nil {
		t.Fatal(err)
	}
	if got, _, err = c.Log(ctx, rh.ID(), gid); err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "the log after the owner's next entry", got, next)
}

// TestLegacyRegistrationLoaded: a registration stored whole, as relays
// stored them before logs were paged, loads, and is written again entry
// by entry.
func TestLegacyRegistrationLoaded(t *testing.T) {
	owner, bob := newMember(t), newMember(t)
	gid, entries := groupLog(t, owner, bob)
	lists := [][]byte{owner.listBytes(t), bob.listBytes(t)}
	dir := t.TempDir()
	db, err := storage.Open(storage.Options{Dir: dir, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	body := (&registerMsg{Group: gid, Entries: entries, Lists: lists}).appendBody(nil)
	exp := binary.BigEndian.AppendUint64(nil, uint64(time.Now().Add(time.Hour).UnixMilli()))
	if err := db.Update(func(tx *storage.Txn) error {
		return tx.Set(db.Keyspace("history.reg"), gid[:], append(exp, body...))
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	rh := newHost(t)
	r := startServer(t, dir, rh, nil)
	got, gotLists, err := clientOf(t, r).Log(context.Background(), rh.ID(), gid)
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "the log", got, entries)
	sameBytes(t, "the lists", sortedBytes(gotLists), sortedBytes(lists))
	r.stop()
	r = startServer(t, dir, newHost(t), nil)
	var v []byte
	if err := r.db.View(func(tx *storage.Txn) (err error) {
		v, err = tx.Get(r.srv.reg, gid[:])
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(v) != 8 {
		t.Fatalf("the registration is stored in %d bytes, want its expiry alone", len(v))
	}
	got, _, err = clientOf(t, r).Log(context.Background(), r.h.ID(), gid)
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "the log after the second start", got, entries)
}

// TestLogFromLyingRelay: a relay that claims a log longer than it sends
// (empty pages), sends pages that do not follow, or pages without end,
// gets an error, not a loop or a log put together wrong.
func TestLogFromLyingRelay(t *testing.T) {
	var gid [32]byte
	gid[0] = 1
	cases := []struct {
		name   string
		answer func(q *queryMsg) *registerMsg
		want   error
	}{
		{"empty pages", func(q *queryMsg) *registerMsg {
			return &registerMsg{Group: gid, From: q.After, Total: q.After + 5}
		}, ErrMalformed},
		{"a page that does not follow", func(q *queryMsg) *registerMsg {
			return &registerMsg{Group: gid, From: q.After + 1, Entries: [][]byte{{1}}, Total: q.After + 5}
		}, ErrMalformed},
		{"another group", func(q *queryMsg) *registerMsg {
			return &registerMsg{Group: [32]byte{2}, Entries: [][]byte{{1}}, Total: 1}
		}, ErrMalformed},
		{"no end", func(q *queryMsg) *registerMsg {
			return &registerMsg{Group: gid, From: q.After, ListsFrom: q.ListsAt, Entries: [][]byte{{1}}, Total: 1 << 40}
		}, ErrTooLarge},
		{"lists not asked for", func(q *queryMsg) *registerMsg {
			m := &registerMsg{Group: gid, From: q.After, ListsFrom: q.ListsAt, Entries: [][]byte{{1}}, Total: q.After + 1, ListsTotal: 2}
			if q.ListsAt == noLists {
				m.Lists = [][]byte{{2}}
			}
			return m
		}, ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rh := newHost(t)
			rh.SetStreamHandler(ProtocolID, func(str network.Stream) {
				defer str.Close()
				_, body, err := readFrame(str, typeGetLog)
				if err != nil {
					return
				}
				q, err := decodeQuery(body)
				if err != nil {
					return
				}
				_, _ = str.Write(frame(typeLog, tc.answer(q).appendBody(nil)))
			})
			c := NewClient(newHost(t))
			if err := c.h.Connect(context.Background(), peer.AddrInfo{ID: rh.ID(), Addrs: rh.Addrs()}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if tc.name != "lists not asked for" {
				if _, _, err := c.Log(ctx, rh.ID(), gid); !errors.Is(err, tc.want) {
					t.Fatalf("Log: %v, want %v", err, tc.want)
				}
			}
			if _, err := c.LogFrom(ctx, rh.ID(), gid, 3); !errors.Is(err, tc.want) {
				t.Fatalf("LogFrom: %v, want %v", err, tc.want)
			}
		})
	}
}

// TestNewGroupsBuiltAtOnce: new groups registered in several pages are
// held in memory until their last page; a relay builds at most
// maxBuilding at once and refuses another meanwhile (rate limited).
func TestNewGroupsBuiltAtOnce(t *testing.T) {
	owner := newMember(t)
	rh := newHost(t)
	r := startServer(t, t.TempDir(), rh, nil)
	ctx := context.Background()
	for range maxBuilding {
		gid, entries := groupLog(t, owner)
		c := clientOf(t, r)
		str, err := c.h.NewStream(ctx, rh.ID(), ProtocolID)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = str.Reset() })
		m := &registerMsg{Group: gid, Entries: entries, More: true}
		if _, err := str.Write(frame(typeRegister, m.appendBody(nil))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the relay building the held groups", func() bool { return len(r.srv.building) == maxBuilding })
	gid, entries := groupLog(t, owner)
	entries = appendLog(t, entries, owner, pins(10)...)
	c := clientOf(t, r)
	c.pageBudget = 1 << 10
	var se *StatusError
	if err := c.Register(ctx, rh.ID(), gid, entries, [][]byte{owner.listBytes(t)}, owner.dev); !errors.As(err, &se) || se.Code != CodeRateLimited {
		t.Fatalf("one more new group in pages: %v, want rate limited", err)
	}
	// One page only: not held, not limited.
	c.pageBudget = logBudget
	if err := c.Register(ctx, rh.ID(), gid, entries, [][]byte{owner.listBytes(t)}, owner.dev); err != nil {
		t.Fatal(err)
	}
}

// TestStateEntryMerged: a member's state entry from gossip is merged
// into the log the relay holds (GetLog has it without a registration)
// and kept in the history; a stranger's entry, and a member's entry
// that its rights do not allow, are neither.
func TestStateEntryMerged(t *testing.T) {
	owner, bob, stranger := newMember(t), newMember(t), newMember(t)
	gid, entries := groupLog(t, owner, bob)
	rh := newHost(t)
	r := startServer(t, t.TempDir(), rh, nil)
	ctx := context.Background()
	c := clientOf(t, r)
	if err := c.Register(ctx, rh.ID(), gid, entries, [][]byte{owner.listBytes(t), bob.listBytes(t)}, owner.dev); err != nil {
		t.Fatal(err)
	}
	stateEnv := func(m *member, raw []byte) []byte {
		env, err := groupmsg.Seal(m.dev, gid, groupmsg.KindState, time.Now().UnixMilli(), raw)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	head, err := groupstate.Parse(entries[len(entries)-1])
	if err != nil {
		t.Fatal(err)
	}
	next := func(m *member, ch groupstate.Change) []byte {
		e, err := groupstate.Sign(m.dev, m.cert, head, time.Now().UnixMilli(), ch)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := e.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	// Junk first (rejected by validators, or not taken), then the pin.
	attacker := startAttacker(t, r, gid)
	strangers := next(stranger, groupstate.Change{Kind: groupstate.KindPin, Ref: [32]byte{1}})
	bobsRemoval := next(bob, groupstate.Change{Kind: groupstate.KindRemove, Account: owner.acct.ID()})
	for _, env := range [][]byte{stateEnv(stranger, strangers), stateEnv(bob, bobsRemoval)} {
		if err := attacker.Publish(ctx, env); err != nil {
			t.Fatal(err)
		}
	}
	honest := startPeer(t, rh, gid, openAll{owner.dev.ID(): owner.acct.ID(), bob.dev.ID(): bob.acct.ID()})
	// Bob's third pin before his first: it passes the validators (ahead,
	// by a member) but the relay's log does not take it (a gap), so it
	// is not kept either.
	chain := appendLog(t, entries, bob, pins(3)...)
	pin := chain[len(entries)]
	honest.publish(t, r, gid, stateEnv(bob, chain[len(entries)+2]))
	honest.publish(t, r, gid, stateEnv(bob, pin))
	eventually(t, "the pin in the relay's log", func() bool {
		got, _, err := c.Log(ctx, rh.ID(), gid)
		return err == nil && len(got) == len(entries)+1 && bytes.Equal(got[len(entries)], pin)
	})
	time.Sleep(300 * time.Millisecond)
	pg, err := c.Query(ctx, rh.ID(), gid, 0, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(pg.Items) != 1 {
		t.Fatalf("the relay's history holds %d items, want the pin's envelope alone", len(pg.Items))
	}
	e, err := groupmsg.Open(gid, pg.Items[0].Envelope)
	if err != nil || e.Kind != groupmsg.KindState || !bytes.Equal(e.Payload, pin) {
		t.Fatalf("the history's item is not the pin: %v", err)
	}
}

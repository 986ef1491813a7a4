package history

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/storage"
)

func rvParse(t *testing.T, raws [][]byte) []*groupstate.Entry {
	t.Helper()
	var out []*groupstate.Entry
	for _, r := range raws {
		e, err := groupstate.Parse(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// rvAppend signs changes by m on top of raws and returns the longer log.
func rvAppend(t *testing.T, raws [][]byte, m *member, cs ...groupstate.Change) [][]byte {
	t.Helper()
	l, err := groupstate.Replay(rvParse(t, raws))
	if err != nil {
		t.Fatal(err)
	}
	out := append([][]byte(nil), raws...)
	for _, c := range cs {
		e, err := groupstate.Sign(m.dev, m.cert, l.Head(), max(time.Now().UnixMilli(), l.Head().Time), c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Add(e); err != nil {
			t.Fatal(err)
		}
		b, _ := e.MarshalBinary()
		out = append(out, b)
	}
	return out
}

func rvClient(t *testing.T, r *relayUnderTest) *Client {
	t.Helper()
	c := NewClient(newHost(t))
	if err := c.h.Connect(context.Background(), peer.AddrInfo{ID: r.h.ID(), Addrs: r.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	return c
}

func rvPins(n int) []groupstate.Change {
	var cs []groupstate.Change
	for range n {
		var ref [32]byte
		_, _ = rand.Read(ref[:])
		cs = append(cs, groupstate.Change{Kind: groupstate.KindPin, Ref: ref})
	}
	return cs
}

// TestReviewForkedLogReplaces: Mallory, removed from the group by its
// owner, forks the log just before her removal and appends a few pins
// (a plain member's right). The fork is longer than the real log, so the
// relay takes it: it stores and serves Mallory's envelopes again, and
// keeps the fork when the owner registers the real log with a new
// member, whose messages it then refuses.
func TestReviewForkedLogReplaces(t *testing.T) {
	alice, bob, mallory, carol := newMember(t), newMember(t), newMember(t), newMember(t)
	gid, prefix := groupLog(t, alice, bob, mallory) // create, add bob, add mallory
	real := rvAppend(t, prefix, alice, groupstate.Change{Kind: groupstate.KindRemove, Account: mallory.acct.ID()})
	rh := newHost(t)
	r := startServer(t, t.TempDir(), rh, nil)
	c := rvClient(t, r)
	ctx := context.Background()
	lists := [][]byte{alice.listBytes(t), bob.listBytes(t), mallory.listBytes(t), carol.listBytes(t)}
	if err := c.Register(ctx, rh.ID(), gid, real, lists); err != nil {
		t.Fatal(err)
	}
	// Mallory's fork: the prefix in which she is a member, plus pins.
	fork := rvAppend(t, prefix, mallory, rvPins(3)...)
	mc := rvClient(t, r)
	err := mc.Register(ctx, rh.ID(), gid, fork, [][]byte{mallory.listBytes(t)})
	t.Logf("removed member registers a forked log (%d entries vs %d real): err=%v", len(fork), len(real), err)

	// The owner adds Carol in the real log and registers it again.
	real2 := rvAppend(t, real, alice, groupstate.Change{Kind: groupstate.KindAdd, Account: carol.acct.ID()})
	if err := c.Register(ctx, rh.ID(), gid, real2, lists); err != nil {
		t.Fatal(err)
	}
	r.srv.mu.Lock()
	g := r.srv.groups[gid]
	t.Logf("relay's view: entries=%d mallory role=%v carol role=%v", g.entries, g.state.Role(mallory.acct.ID()), g.state.Role(carol.acct.ID()))
	r.srv.mu.Unlock()

	members := openAll{alice.dev.ID(): alice.acct.ID(), mallory.dev.ID(): mallory.acct.ID(), carol.dev.ID(): carol.acct.ID()}
	p := startPeer(t, rh, gid, members)
	p.publish(t, r, gid, mallory.seal(t, gid, "from the removed member"))
	p.publish(t, r, gid, carol.seal(t, gid, "from the new member"))
	p.publish(t, r, gid, alice.seal(t, gid, "from the owner"))
	eventually(t, "the owner's message", func() bool {
		pg, err := c.Query(ctx, rh.ID(), gid, 0, 0, false)
		if err != nil {
			return false
		}
		for _, s := range texts(t, pg.Items, gid) {
			if s == "from the owner" {
				return true
			}
		}
		return false
	})
	time.Sleep(300 * time.Millisecond)
	pg, _ := c.Query(ctx, rh.ID(), gid, 0, 0, false)
	got := texts(t, pg.Items, gid)
	t.Logf("relay stores and serves: %q", got)
	if fmt.Sprint(sorted(got)) != fmt.Sprint(sorted([]string{"from the new member", "from the owner"})) {
		t.Errorf("FINDING: the relay follows a removed member's forked log: it holds %q (want the new member's and the owner's only)", got)
	}
}

// TestReviewListsLostOnRestart: two honest members register the same log
// with the device lists each knows (Bob does not know Carol). The relay
// merges lists in memory but stores only the last body, so after a
// restart it no longer knows Carol's device and drops her messages; the
// nodes do not register again (the log did not change).
func TestReviewListsLostOnRestart(t *testing.T) {
	alice, bob, carol := newMember(t), newMember(t), newMember(t)
	gid, entries := groupLog(t, alice, bob, carol)
	rh := newHost(t)
	dir := t.TempDir()
	r := startServer(t, dir, rh, nil)
	c := rvClient(t, r)
	ctx := context.Background()
	if err := c.Register(ctx, rh.ID(), gid, entries, [][]byte{alice.listBytes(t), bob.listBytes(t), carol.listBytes(t)}); err != nil {
		t.Fatal(err)
	}
	if err := c.Register(ctx, rh.ID(), gid, entries, [][]byte{alice.listBytes(t), bob.listBytes(t)}); err != nil {
		t.Fatal(err)
	}
	r.srv.mu.Lock()
	before := len(r.srv.groups[gid].devices)
	r.srv.mu.Unlock()
	r.stop()
	rh2 := newHost(t)
	r2 := startServer(t, dir, rh2, nil)
	r2.srv.mu.Lock()
	after := len(r2.srv.groups[gid].devices)
	r2.srv.mu.Unlock()
	t.Logf("devices known to the relay: %d before restart, %d after", before, after)
	c2 := rvClient(t, r2)
	members := openAll{alice.dev.ID(): alice.acct.ID(), carol.dev.ID(): carol.acct.ID()}
	p := startPeer(t, rh2, gid, members)
	p.publish(t, r2, gid, carol.seal(t, gid, "carol after restart"))
	p.publish(t, r2, gid, alice.seal(t, gid, "alice after restart"))
	eventually(t, "alice's message", func() bool {
		pg, err := c2.Query(ctx, rh2.ID(), gid, 0, 0, true)
		return err == nil && len(pg.Items) >= 1
	})
	time.Sleep(300 * time.Millisecond)
	pg, _ := c2.Query(ctx, rh2.ID(), gid, 0, 0, false)
	got := texts(t, pg.Items, gid)
	t.Logf("stored after restart: %q", got)
	if len(got) != 2 {
		t.Errorf("FINDING: after a restart the relay lost a member's device list and dropped her message: holds %q", got)
	}
}

// TestReviewDeviceListsGrowUnbounded: anyone may create a group and
// register it; each further registration of the same log merges the
// device lists it carries (of any account, members or not) into the
// group's in-memory map, with no bound.
func TestReviewDeviceListsGrowUnbounded(t *testing.T) {
	owner := newMember(t)
	gid, entries := groupLog(t, owner)
	rh := newHost(t)
	r := startServer(t, t.TempDir(), rh, nil)
	c := rvClient(t, r)
	ctx := context.Background()
	const perReq, reqs = 200, 10
	var sizes []int
	for range reqs {
		var lists [][]byte
		for range perReq {
			lists = append(lists, newMember(t).listBytes(t))
		}
		if err := c.Register(ctx, rh.ID(), gid, entries, lists); err != nil {
			t.Fatal(err)
		}
		r.srv.mu.Lock()
		g := r.srv.groups[gid]
		sizes = append(sizes, len(g.devices)+len(g.lists))
		r.srv.mu.Unlock()
	}
	t.Logf("devices+lists entries held for one 1-member group after each registration: %v", sizes)
	if sizes[len(sizes)-1] >= 2*perReq*reqs {
		t.Errorf("FINDING: a group's device map grows without bound: %d entries of non-members after %d registrations", sizes[len(sizes)-1], reqs)
	}
}

// TestReviewBatchTooBig: with the relay's default store (16 MiB memtable:
// ~2.4 MiB per transaction) a burst of max-size envelopes in one group
// makes the committer's batch fail with ErrTxnTooBig: every envelope of
// the batch is lost, another group's included, and the sequence numbers
// taken are not given back, so Head names envelopes that do not exist.
func TestReviewBatchTooBig(t *testing.T) {
	alice, bob := newMember(t), newMember(t)
	gA, eA := groupLog(t, alice)
	gB, eB := groupLog(t, bob)
	rh := newHost(t)
	db, err := storage.Open(storage.Options{Dir: t.TempDir(), NoCompression: true}) // as relay.openStore
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(Config{DB: db, Host: rh})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	r := &relayUnderTest{h: rh, db: db, srv: srv}
	t.Cleanup(r.stop)
	c := rvClient(t, r)
	ctx := context.Background()
	if err := c.Register(ctx, rh.ID(), gA, eA, [][]byte{alice.listBytes(t)}); err != nil {
		t.Fatal(err)
	}
	if err := c.Register(ctx, rh.ID(), gB, eB, [][]byte{bob.listBytes(t)}); err != nil {
		t.Fatal(err)
	}
	pa := startPeer(t, rh, gA, openAll{alice.dev.ID(): alice.acct.ID()})
	pb := startPeer(t, rh, gB, openAll{bob.dev.ID(): bob.acct.ID()})
	big := make([]byte, groupmsg.MaxPayload)
	pa.publish(t, r, gA, alice.seal(t, gA, "warm-up"))
	pb.publish(t, r, gB, bob.seal(t, gB, "warm-up"))
	eventually(t, "warm-up stored", func() bool {
		p1, e1 := c.Query(ctx, rh.ID(), gA, 0, 0, true)
		p2, e2 := c.Query(ctx, rh.ID(), gB, 0, 0, true)
		return e1 == nil && e2 == nil && len(p1.Items) == 1 && len(p2.Items) == 1
	})
	const nBig, nSmall = 60, 30
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range nBig {
			_, _ = rand.Read(big[:16])
			binary.BigEndian.PutUint32(big[16:], uint32(i))
			env, err := groupmsg.Seal(alice.dev, gA, groupmsg.KindSenderKey, time.Now().UnixMilli(), big)
			if err != nil {
				t.Error(err)
				return
			}
			_ = pa.net.Publish(ctx, gA, env)
		}
	}()
	go func() {
		defer wg.Done()
		for i := range nSmall {
			_ = pb.net.Publish(ctx, gB, bob.seal(t, gB, fmt.Sprintf("victim %d", i)))
			time.Sleep(5 * time.Millisecond)
		}
	}()
	wg.Wait()
	time.Sleep(5 * time.Second)
	p1, err := c.Query(ctx, rh.ID(), gA, 0, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := c.Query(ctx, rh.ID(), gB, 0, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	lastA := p1.Items[len(p1.Items)-1].Seq
	t.Logf("group A (attacker): %d of %d stored, head %d, last held seq %d", len(p1.Items)-1, nBig, p1.Head, lastA)
	t.Logf("group B (victim):   %d of %d stored, head %d", len(p2.Items)-1, nSmall, p2.Head)
	if len(p2.Items)-1 < nSmall {
		t.Errorf("FINDING: another group's burst made the relay lose %d of %d of the victim group's messages", nSmall-(len(p2.Items)-1), nSmall)
	}
	if p1.Head > lastA || p2.Head > p2.Items[len(p2.Items)-1].Seq {
		t.Errorf("FINDING: Head names sequence numbers that hold nothing (A head %d, last %d): a client's cursor can never reach it", p1.Head, lastA)
	}
}

// TestReviewOpenRegistrationFillsRelay: any peer may register groups it
// made itself; fresh peer IDs lift the per-peer limit, so the relay's
// MaxGroups is filled and its own users' groups are refused.
func TestReviewOpenRegistrationFillsRelay(t *testing.T) {
	rh := newHost(t)
	r := startServer(t, t.TempDir(), rh, func(c *Config) { c.MaxGroups = 30; c.MaxGroupsPerPeer = 5 })
	ctx := context.Background()
	attacker := newMember(t)
	for i := 0; i < 30; i += 5 {
		c := rvClient(t, r) // a fresh peer ID each 5 groups
		for range 5 {
			gid, e := groupLog(t, attacker)
			if err := c.Register(ctx, rh.ID(), gid, e, nil); err != nil {
				t.Fatalf("attacker's group %d: %v", i, err)
			}
		}
	}
	alice := newMember(t)
	gid, e := groupLog(t, alice)
	err := rvClient(t, r).Register(ctx, rh.ID(), gid, e, [][]byte{alice.listBytes(t)})
	t.Logf("a legitimate registration after the attacker's: %v", err)
	var se *StatusError
	if errors.As(err, &se) && se.Code == CodeFull {
		t.Errorf("FINDING: a stranger filled the relay's groups (no relationship to the relay required)")
	}
}

// TestReviewRegisterCPU: one Register of ~8 MiB of device lists costs the
// relay one signature check per list and per certificate.
func TestReviewRegisterCPU(t *testing.T) {
	owner := newMember(t)
	gid, entries := groupLog(t, owner)
	rh := newHost(t)
	r := startServer(t, t.TempDir(), rh, nil)
	c := rvClient(t, r)
	ctx := context.Background()
	one := newMember(t).listBytes(t)
	n := (MaxRegisterSize - 64<<10) / (len(one) + 4)
	var lists [][]byte
	for range n {
		lists = append(lists, one) // the same list: verified again each time
	}
	start := time.Now()
	err := c.Register(ctx, rh.ID(), gid, entries, lists)
	t.Logf("a Register with %d copies of one list (%d bytes each): %v in %v", n, len(one), err, time.Since(start))
}

// TestReviewMalformedAndClose: junk frames, truncated bodies, a Heads
// with 1,000 unknown groups waiting, and Close with many Heads waiting.
func TestReviewMalformedAndClose(t *testing.T) {
	alice := newMember(t)
	gid, entries := groupLog(t, alice)
	rh := newHost(t)
	r := startServer(t, t.TempDir(), rh, nil)
	c := rvClient(t, r)
	ctx := context.Background()
	if err := c.Register(ctx, rh.ID(), gid, entries, [][]byte{alice.listBytes(t)}); err != nil {
		t.Fatal(err)
	}
	raw := func(b []byte) {
		str, err := c.h.NewStream(ctx, rh.ID(), ProtocolID)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = str.Write(b)
		_ = str.CloseWrite()
		_ = str.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 1024)
		n, _ := str.Read(buf)
		_ = str.Close()
		_ = n
	}
	var g [32]byte
	for _, b := range [][]byte{
		{0, 0, 0, 0, 1},
		{0xff, 0xff, 0xff, 0xff, 1},
		{0, 0, 0, 5, 9, 1, 2, 3, 4},
		frame(typePage, nil),
		frame(typeQuery, []byte{0x0a, 0x20}),
		frame(typeGet, append(appendBytes(nil, fGroup, g[:]), 0x10)),
		frame(typeHeads, []byte{0x0a, 0x05, 0x0a, 0x03, 1, 2, 3}),
		frame(typeRegister, appendBytes(appendBytes(nil, fGroup, gid[:]), fEntry, []byte{1, 2, 3})),
		frame(typeRegister, appendBytes(appendBytes(appendBytes(nil, fGroup, gid[:]), fEntry, entries[0]), fList, []byte{0, 0, 0})),
		frame(typeQuery, appendVarint(appendBytes(nil, fGroup, gid[:]), fAfter, ^uint64(0))),
	} {
		raw(b)
	}
	if _, err := c.Query(ctx, rh.ID(), gid, 0, 0, true); err != nil {
		t.Fatalf("the relay after junk: %v", err)
	}
	// Many waiting Heads, then Close.
	var heads []Head
	for i := range MaxHeads {
		var h Head
		binary.BigEndian.PutUint32(h.Group[:], uint32(i))
		heads = append(heads, h)
	}
	heads[0] = Head{Group: gid, Seq: 100}
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = c.Heads(ctx, rh.ID(), heads, 30*time.Second)
		}()
	}
	time.Sleep(500 * time.Millisecond)
	open := r.srv.streams.Open()
	start := time.Now()
	r.srv.Close()
	t.Logf("Close with %d open streams took %v; goroutines %d", open, time.Since(start), runtime.NumGoroutine())
	if time.Since(start) > 5*time.Second {
		t.Errorf("FINDING: Close waited %v", time.Since(start))
	}
	wg.Wait()
}

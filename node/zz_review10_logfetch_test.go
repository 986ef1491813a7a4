package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/relay/history"
	"github.com/peergram/peergram/storage"
)

// Outside review 10: a long log's end ("group-log" with from > 0) and the
// fetch of the rest from a relay.

// rv10Host is a libp2p host on loopback.
func rv10Host(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func rv10Addr(h host.Host) string { return h.Addrs()[0].String() + "/p2p/" + h.ID().String() }

// rv10EvilRelay answers every GetLog with answer(after) (a Log body, or
// nil: no answer), and counts the streams opened to it.
func rv10EvilRelay(t *testing.T, answer func(group []byte, after uint64) []byte) (host.Host, *atomic.Int64) {
	h := rv10Host(t)
	var dialed atomic.Int64
	h.SetStreamHandler(history.ProtocolID, func(str network.Stream) {
		defer str.Close()
		dialed.Add(1)
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(str, hdr); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr)-1)
		if _, err := io.ReadFull(str, body); err != nil {
			return
		}
		var group []byte
		var after uint64
		for len(body) > 0 {
			num, typ, n := protowire.ConsumeTag(body)
			if n < 0 {
				return
			}
			body = body[n:]
			switch typ {
			case protowire.BytesType:
				v, m := protowire.ConsumeBytes(body)
				if num == 1 {
					group = v
				}
				body = body[m:]
			case protowire.VarintType:
				v, m := protowire.ConsumeVarint(body)
				if num == 2 {
					after = v
				}
				body = body[m:]
			default:
				return
			}
		}
		if answer == nil {
			time.Sleep(40 * time.Second)
			return
		}
		out := answer(group, after)
		if out == nil {
			return
		}
		f := binary.BigEndian.AppendUint32(nil, uint32(1+len(out)))
		f = append(f, 0x08) // Log
		_, _ = str.Write(append(f, out...))
	})
	return h, &dialed
}

// rv10Junk is a Log page of n one-byte "entries" of group from after on,
// n in all.
func rv10Junk(group []byte, after, n uint64) []byte {
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, group)
	for i := after; i < n; i++ {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, []byte{0})
	}
	if after != 0 {
		b = protowire.AppendTag(b, 7, protowire.VarintType)
		b = protowire.AppendVarint(b, after)
	}
	b = protowire.AppendTag(b, 8, protowire.VarintType)
	return protowire.AppendVarint(b, n)
}

func rv10RandomGroup() string {
	var g [32]byte
	_, _ = rand.Read(g[:])
	return hex.EncodeToString(g[:])
}

// rv10LongGroup makes Alice the owner of a group of over maxLogSync
// entries (written straight to her store, as in TestLogOverATransaction)
// and waits until her relay holds it.
func rv10LongGroup(t *testing.T, alice *testNode, relay *testRelay, extra int) (string, groupstate.GroupID) {
	t.Helper()
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "long")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	l := alice.reloadGroup(t, group)
	batch := alice.db.NewBatch()
	var ref [32]byte
	for i := range extra {
		kind := groupstate.KindUnpin
		if i%2 == 0 {
			kind = groupstate.KindPin
			_, _ = rand.Read(ref[:])
		}
		e, err := groupstate.Sign(alice.keys.device, alice.keys.cert, l.Head(), l.Head().Time, groupstate.Change{Kind: kind, Ref: ref})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Add(e); err != nil {
			t.Fatal(err)
		}
		b, _ := e.MarshalBinary()
		if err := batch.Set(alice.st.groupLog, groupEntryKey(group, uint64(i+1)), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Flush(); err != nil {
		t.Fatal(err)
	}
	alice.refreshGroup(alice.runCtx, group)
	alice.wakeHistory()
	eventually(t, "the relay holding Alice's long log", func() (bool, error) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		hc := history.NewClient(alice.host)
		entries, _, err := hc.Log(cctx, relay.h.ID(), group)
		return err == nil && len(entries) == extra+1, err
	})
	return g.ID, group
}

// rv10Holds reports whether n holds group up to at least seq.
func rv10Holds(n *testNode, group groupstate.GroupID, seq uint64) bool {
	var l *groupstate.Log
	_ = n.db.View(func(tx *storage.Txn) (err error) {
		l, err = n.loadGroupTx(tx, group)
		return err
	})
	return l != nil && l.Head().Seq >= seq
}

// TestReview10StrangerMakesNodeDial: the threat model accepts that "a
// member can make other members dial relays of its choosing". A
// stranger — no contact, no member of anything — sends Bob one
// "group-log" naming a made-up group, from > 0, and its own host as
// relay: Bob must not dial it (the dial shows the stranger Bob's
// address, and Bob dials again on every retry).
func TestReview10StrangerMakesNodeDial(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	bobHome, _ := initHome(t, "bob")
	bob := startNode(t, bobHome, relay.addr)
	stranger := newFakeDevice(t, relay, nil, "stranger")
	stranger.publish(t, nil, stranger.cert)
	evil, dialed := rv10EvilRelay(t, func(group []byte, after uint64) []byte { return nil })
	p := payload{Kind: "group-log", Group: rv10RandomGroup(), Log: [][]byte{{1}}, From: 500, Relays: []string{rv10Addr(evil)}}
	if got := stranger.send(t, bob, p, newMessageID(t)); got != int(directOK) {
		t.Fatalf("answer %d", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && dialed.Load() == 0 {
		time.Sleep(50 * time.Millisecond)
	}
	if d := dialed.Load(); d > 0 {
		t.Fatalf("a stranger's group-log made Bob open %d stream(s) to the stranger's host (Bob's address: %v)", d, evil.Peerstore().Addrs(bob.host.ID()))
	}
}

// TestReview10StrangerFillsFetchSlots: a stranger sends Bob eight
// "group-log" ends of made-up groups (no relay named: Bob asks his own,
// which does not hold them, and retries for 2 min 42 s). Then Alice, a
// contact, adds Bob to her long group: Bob must get it.
func TestReview10StrangerFillsFetchSlots(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	gid, group := rv10LongGroup(t, alice, relay, maxLogSync+30)

	stranger := newFakeDevice(t, relay, nil, "stranger")
	stranger.publish(t, nil, stranger.cert)
	for range maxLogFetches {
		p := payload{Kind: "group-log", Group: rv10RandomGroup(), Log: [][]byte{{1}}, From: 1}
		if got := stranger.send(t, bob, p, newMessageID(t)); got != int(directOK) {
			t.Fatalf("answer %d", got)
		}
	}
	if _, err := alice.AddGroupMembers(context.Background(), gid, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	head := alice.reloadGroup(t, group).Head()
	deadline := time.Now().Add(20 * time.Second)
	for !rv10Holds(bob, group, head.Seq) {
		if time.Now().After(deadline) {
			bob.fetchMu.Lock()
			n := len(bob.fetching)
			bob.fetchMu.Unlock()
			t.Fatalf("Bob, added to Alice's long group, does not hold it after 20 s: the stranger's %d fetches hold every slot (%d running)", maxLogFetches, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestReview10StrangerPreemptsFetch: a stranger who knows the ID of
// Alice's group (it is in every invite link) sends Bob an end of it with
// a huge from before Alice adds him: the fetch it starts keeps the
// stranger's end, Alice's real one is ignored as "older", and Bob does
// not get the group.
func TestReview10StrangerPreemptsFetch(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	gid, group := rv10LongGroup(t, alice, relay, maxLogSync+30)

	stranger := newFakeDevice(t, relay, nil, "stranger")
	stranger.publish(t, nil, stranger.cert)
	p := payload{Kind: "group-log", Group: gid, Log: [][]byte{{1}}, From: 1 << 40}
	if got := stranger.send(t, bob, p, newMessageID(t)); got != int(directOK) {
		t.Fatalf("answer %d", got)
	}
	if _, err := alice.AddGroupMembers(context.Background(), gid, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	head := alice.reloadGroup(t, group).Head()
	deadline := time.Now().Add(25 * time.Second)
	for !rv10Holds(bob, group, head.Seq) {
		if time.Now().After(deadline) {
			t.Fatal("Bob, added to Alice's long group, does not hold it after 25 s: the stranger's end took the fetch's place")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestReview10StagedJunkKept: a stranger who knows the ID of Alice's
// (short) group sends Bob an end of it naming the stranger's relay, which
// answers 400,000 one-byte "entries". Bob stages them (writes them to his
// store) before verifying anything. Alice adds Bob to the group while
// that runs: Bob now holds the group's creation entry, so the junk is
// not cleared, and the group's stored log no longer verifies.
func TestReview10StagedJunkKept(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "short")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)

	const junk = 400_000
	evil, dialed := rv10EvilRelay(t, func(gr []byte, after uint64) []byte { return rv10Junk(gr, after, junk) })
	stranger := newFakeDevice(t, relay, nil, "stranger")
	stranger.publish(t, nil, stranger.cert)
	p := payload{Kind: "group-log", Group: g.ID, Log: [][]byte{{1}}, From: junk, Relays: []string{rv10Addr(evil)}}
	if got := stranger.send(t, bob, p, newMessageID(t)); got != int(directOK) {
		t.Fatalf("answer %d", got)
	}
	// Wait until Bob writes the stranger's junk into his store.
	staged := func() bool {
		var ok bool
		_ = bob.db.View(func(tx *storage.Txn) (err error) {
			ok, err = tx.Has(bob.st.groupLog, groupEntryKey(group, 100))
			return err
		})
		return ok
	}
	// (Fixed: a stranger's end starts no fetch, and a fetched log is
	// verified whole before anything of it is written —
	// TestFetchedJunkNotStaged.)
	time.Sleep(3 * time.Second)
	if staged() || dialed.Load() != 0 {
		t.Fatalf("Bob staged the stranger's junk (%v) or dialled its relay (%d streams)", staged(), dialed.Load())
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	// Let the fetch end (its apply fails; the junk is cleared unless Bob
	// holds the group by then).
	deadline := time.Now().Add(20 * time.Second)
	for {
		bob.fetchMu.Lock()
		n := len(bob.fetching)
		bob.fetchMu.Unlock()
		if n == 0 || time.Now().After(deadline) || rv10Holds(bob, group, 1) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	var lerr error
	_ = bob.db.View(func(tx *storage.Txn) error {
		_, lerr = bob.loadGroupTx(tx, group)
		return nil
	})
	left := 0
	_ = bob.db.View(func(tx *storage.Txn) error {
		return tx.Iterate(bob.st.groupLog, group[:], func(_, _ []byte) error { left++; return nil })
	})
	if lerr != nil || left > 10 {
		t.Fatalf("after the stranger's junk and Alice's add, Bob's group: %v (%d entries stored)", lerr, left)
	}
}

// TestReview10LongGroupControl: the same as the two tests above without
// the stranger: Bob gets Alice's long group well within their bounds.
func TestReview10LongGroupControl(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	gid, group := rv10LongGroup(t, alice, relay, maxLogSync+30)
	start := time.Now()
	if _, err := alice.AddGroupMembers(context.Background(), gid, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	head := alice.reloadGroup(t, group).Head()
	deadline := time.Now().Add(20 * time.Second)
	for !rv10Holds(bob, group, head.Seq) {
		if time.Now().After(deadline) {
			t.Fatal("Bob does not hold the group after 20 s without any attacker")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("Bob holds the long group %v after Alice added him", time.Since(start).Round(time.Millisecond))
}

// TestReview10StagedJunkAftermath: after the stranger's junk of
// TestReview10StagedJunkKept, Bob holds Alice's group, and Alice's next
// change and text reach him.
func TestReview10StagedJunkAftermath(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "short")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	const junk = 400_000
	evil, _ := rv10EvilRelay(t, func(gr []byte, after uint64) []byte { return rv10Junk(gr, after, junk) })
	stranger := newFakeDevice(t, relay, nil, "stranger")
	stranger.publish(t, nil, stranger.cert)
	p := payload{Kind: "group-log", Group: g.ID, Log: [][]byte{{1}}, From: junk, Relays: []string{rv10Addr(evil)}}
	stranger.send(t, bob, p, newMessageID(t))
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		var ok bool
		_ = bob.db.View(func(tx *storage.Txn) (err error) {
			ok, err = tx.Has(bob.st.groupLog, groupEntryKey(group, 100))
			return err
		})
		if ok {
			break
		}
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(8 * time.Second)
	gs, err := bob.Groups(ctx)
	if err != nil || len(gs) != 1 {
		t.Fatalf("Bob's groups after the attack: %d (%v), want Alice's", len(gs), err)
	}
	if _, err := alice.CreateInvite(ctx, g.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, "bob", "after the junk"); err != nil {
		t.Fatal(err)
	}
	got := false
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline) && !got; time.Sleep(100 * time.Millisecond) {
		for _, s := range texts(t, bob, "alice") {
			got = got || s == "after the junk"
		}
	}
	t.Logf("Alice's text after her group change reached Bob: %v", got)
	if !got {
		t.Fatal("Alice's next message never reached Bob: the group-log before it fails Bob's receive")
	}
}

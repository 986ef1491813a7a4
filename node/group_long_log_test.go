package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/history"
	"github.com/peergram/peergram/storage"
)

// TestLongLogReachesMembers: a group whose log grows past maxLogSync
// entries still changes, and its changes reach the members: Bob, a
// member throughout, takes each change from the end of the log Alice
// sends; Carol, added after, gets only that end and fetches the entries
// before it from the relay that keeps the group's history, then holds
// the same log as Alice and posts to the group.
func TestLongLogReachesMembers(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	carolHome, carolInfo := initHome(t, "carol")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	carol := startNode(t, carolHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	addEachOther(t, alice, carol, aliceInfo, carolInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "long log")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	for i := range maxLogSync + 10 {
		role := "admin"
		if i%2 == 1 {
			role = "member"
		}
		if _, err := alice.SetGroupRole(ctx, g.ID, "bob", role); err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
	}
	head := alice.reloadGroup(t, group).Head()
	if head.Seq < maxLogSync {
		t.Fatalf("the log has %d entries: not past maxLogSync, tests nothing", head.Seq+1)
	}
	holds := func(n *testNode, e *groupstate.Entry) func() (bool, error) {
		return func() (bool, error) {
			var l *groupstate.Log
			_ = n.db.View(func(tx *storage.Txn) (err error) {
				l, err = n.loadGroupTx(tx, group)
				return err
			})
			return l != nil && l.Head().Seq >= e.Seq && l.Entries(e.Seq)[0].Hash() == e.Hash(), nil
		}
	}
	eventually(t, "Bob holding Alice's log", holds(bob, head))

	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	head = alice.reloadGroup(t, group).Head()
	eventually(t, "Carol holding Alice's log", holds(carol, head))
	eventually(t, "Bob holding Carol's add", holds(bob, head))
	eventually(t, "Carol's fetch of the whole log counted", func() (bool, error) { return carol.fetched.whole.Load() > 0, nil })
	if _, err := carol.SendGroup(ctx, g.ID, "carol in the long group"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Carol's post at Bob", func() (bool, error) {
		ms, err := bob.GroupMessages(ctx, g.ID)
		if err != nil {
			return false, err
		}
		for _, m := range ms {
			if m.Text == "carol in the long group" {
				return true, nil
			}
		}
		return false, nil
	})
}

// TestLogOverATransaction: a group whose log is more than a node's store
// takes in one transaction (2,500 entries; Alice's written straight into
// her store, as if made over months). Carol, added, fetches it from the
// relay and stages it before the transaction that joins her; Dave joins
// by a link the same way.
func TestLogOverATransaction(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	carolHome, carolInfo := initHome(t, "carol")
	daveHome, _ := initHome(t, "dave")
	alice := startNode(t, aliceHome, relay.addr)
	carol := startNode(t, carolHome, relay.addr)
	dave := startNode(t, daveHome, relay.addr)
	addEachOther(t, alice, carol, aliceInfo, carolInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "longer log")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	if raws := writePins(t, alice, group, 2500); !alice.largeLog(raws) {
		t.Fatal("the log fits one transaction: tests nothing")
	}

	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	head := alice.reloadGroup(t, group).Head()
	holds := func(n *testNode) func() (bool, error) {
		return func() (bool, error) {
			var l *groupstate.Log
			_ = n.db.View(func(tx *storage.Txn) (err error) {
				l, err = n.loadGroupTx(tx, group)
				return err
			})
			return l != nil && l.Head().Seq >= head.Seq && l.Entries(head.Seq)[0].Hash() == head.Hash(), nil
		}
	}
	eventually(t, "Carol holding Alice's log", holds(carol))

	inv, err := alice.CreateInvite(ctx, g.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	head = alice.reloadGroup(t, group).Head()
	eventually(t, "Dave joins by the link (once the relay holds the log)", func() (bool, error) {
		_, err := dave.JoinGroup(ctx, inv.Link)
		return err == nil, err
	})
	eventually(t, "Dave holding the log", holds(dave))
}

// TestFetchedJunkNotStaged: the relay a contact's long-log end names
// answers 400,000 junk "entries". Bob fetches (a contact's end is
// trusted with that) but verifies the log whole before writing any of
// it: nothing is staged, and when Alice adds him to the group he holds
// it.
func TestFetchedJunkNotStaged(t *testing.T) {
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
	// The end as if from Alice (a contact), naming the junk relay.
	p := payload{Kind: "group-log", Group: g.ID, Log: [][]byte{{1}}, From: junk, Relays: []string{rv10Addr(evil)}}
	if err := bob.db.Update(func(tx *storage.Txn) error { return bob.applyGroupLog(tx, alice.keys.account.ID(), p) }); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob asking the junk relay", func() (bool, error) { return dialed.Load() > 0, nil })
	time.Sleep(2 * time.Second)
	stored := func() (n int) {
		_ = bob.db.View(func(tx *storage.Txn) error {
			return tx.Iterate(bob.st.groupLog, group[:], func(_, _ []byte) error { n++; return nil })
		})
		return n
	}
	if n := stored(); n != 0 {
		t.Fatalf("Bob's store holds %d entries of the junk log", n)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob in Alice's group", holdsEntry(bob, group, alice.reloadGroup(t, group).Head()))
	if n := stored(); n != 2 {
		t.Fatalf("Bob's store holds %d entries of the group, want 2", n)
	}
}

// TestMemberFarBehind: Bob, a member, holds the first entries of Alice's
// group when 2,500 more are made without him hearing of them (written
// straight into Alice's store); Alice's next change reaches him as a
// long log's end, and he catches up from the relay, transaction by
// transaction (one would not hold the 2,500 entries he lacks).
func TestMemberFarBehind(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "far behind")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob in the group", holdsEntry(bob, group, alice.reloadGroup(t, group).Head()))
	if lacking := writePins(t, alice, group, 2500); !bob.largeLog(lacking) {
		t.Fatal("what Bob lacks fits one transaction: tests nothing")
	}
	if _, err := alice.SetGroupRole(ctx, g.ID, "bob", "admin"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob caught up", holdsEntry(bob, group, alice.reloadGroup(t, group).Head()))
	// Bob fetched what he lacked, not the whole log.
	eventually(t, "Bob's fetch counted", func() (bool, error) { return bob.fetched.tail.Load() > 0, nil })
	if tail, whole := bob.fetched.tail.Load(), bob.fetched.whole.Load(); tail == 0 || whole != 0 {
		t.Fatalf("Bob's fetches: %d of the entries he lacked, %d of the whole log", tail, whole)
	}
}

// writePins signs count pins and unpins by n after the log of group it
// holds and writes them straight into its store, as if made over months
// without anyone hearing of them; it returns them.
func writePins(t testing.TB, n *testNode, group groupstate.GroupID, count int) [][]byte {
	t.Helper()
	l := n.reloadGroup(t, group)
	first := l.Head().Seq + 1
	batch := n.db.NewBatch()
	var ref [32]byte
	var raws [][]byte
	for i := range count {
		kind := groupstate.KindUnpin
		if i%2 == 0 {
			kind = groupstate.KindPin
			_, _ = rand.Read(ref[:])
		}
		e, err := groupstate.Sign(n.keys.device, n.keys.cert, l.Head(), l.Head().Time, groupstate.Change{Kind: kind, Ref: ref})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Add(e); err != nil {
			t.Fatal(err)
		}
		b, err := e.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, b)
		if err := batch.Set(n.st.groupLog, groupEntryKey(group, first+uint64(i)), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Flush(); err != nil {
		t.Fatal(err)
	}
	n.refreshGroup(n.runCtx, group)
	n.wakeHistory()
	return raws
}

// TestTailFromLyingRelay: Bob, a member behind Alice by 300 entries,
// gets her long log's end naming a relay that answers junk; he asks it
// for the entries after his (not the whole log), takes nothing of its
// answer, and catches up from his own relay, which holds Alice's log —
// again fetching only what he lacks.
func TestTailFromLyingRelay(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "tail")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob in the group", holdsEntry(bob, group, alice.reloadGroup(t, group).Head()))
	held := bob.reloadGroup(t, group).Head().Seq + 1
	writePins(t, alice, group, 300)
	l := alice.reloadGroup(t, group)
	head := l.Head()
	awaitRelayLog(t, alice, relay, group, head)

	var asked []uint64
	var mu sync.Mutex
	evil, _ := rv10EvilRelay(t, func(gr []byte, after uint64) []byte {
		mu.Lock()
		asked = append(asked, after)
		mu.Unlock()
		return rv10Junk(gr, after, head.Seq+1)
	})
	p := payload{Kind: "group-log", Group: g.ID, From: head.Seq - 16, Relays: []string{rv10Addr(evil)}}
	for _, e := range l.Entries(head.Seq - 16) {
		b, _ := e.MarshalBinary()
		p.Log = append(p.Log, b)
	}
	if err := bob.db.Update(func(tx *storage.Txn) error { return bob.applyGroupLog(tx, alice.keys.account.ID(), p) }); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob caught up", holdsEntry(bob, group, head))
	mu.Lock()
	defer mu.Unlock()
	if len(asked) == 0 || asked[0] == 0 || asked[0] > held {
		t.Fatalf("the relays named were asked from %v; want the entries after Bob's %d first", asked, held)
	}
	// (The fetch is counted once its last transaction committed.)
	eventually(t, "Bob's fetch counted", func() (bool, error) { return bob.fetched.tail.Load() > 0, nil })
	if tail, whole := bob.fetched.tail.Load(), bob.fetched.whole.Load(); tail != 1 || whole != 0 {
		t.Fatalf("Bob's fetches: %d of what he lacked, %d of the whole log", tail, whole)
	}
	// What Bob stored replays (read past the cache) to Alice's head.
	var stored *groupstate.Log
	var bad error
	if err := bob.db.View(func(tx *storage.Txn) error {
		return bob.replayLogs(tx, group[:], func(_ []byte, l *groupstate.Log, err error) { stored, bad = l, err })
	}); err != nil || bad != nil || stored == nil || stored.Head().Hash() != head.Hash() {
		t.Fatalf("Bob's stored log: %v %v", err, bad)
	}
}

// TestTailDatedAheadWaits: the entries Bob lacks are dated ahead of his
// clock (it runs 15 minutes slow, past the 10 a member allows); fetched, they are not taken until they
// are due, as a whole log's would not be — then they are.
func TestTailDatedAheadWaits(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "ahead")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob in the group", holdsEntry(bob, group, alice.reloadGroup(t, group).Head()))
	held := bob.reloadGroup(t, group).Head()
	writePins(t, alice, group, 200)
	l := alice.reloadGroup(t, group)
	head := l.Head()
	awaitRelayLog(t, alice, relay, group, head)
	bob.setClock(-15 * time.Minute)
	p := payload{Kind: "group-log", Group: g.ID, From: head.Seq - 16}
	for _, e := range l.Entries(head.Seq - 16) {
		b, _ := e.MarshalBinary()
		p.Log = append(p.Log, b)
	}
	if err := bob.db.Update(func(tx *storage.Txn) error { return bob.applyGroupLog(tx, alice.keys.account.ID(), p) }); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob's fetch done", func() (bool, error) { return bob.fetched.tail.Load()+bob.fetched.whole.Load() > 0, nil })
	if got := bob.reloadGroup(t, group).Head(); got.Hash() != held.Hash() {
		t.Fatalf("Bob took entries dated 15 minutes ahead of his clock (up to %d; fetches %d %d)", got.Seq, bob.fetched.tail.Load(), bob.fetched.whole.Load())
	}
	bob.setClock(0)
	eventually(t, "Bob caught up once they are due", holdsEntry(bob, group, head))
}

// TestInvitationToLongLog: Alice, not Dave's contact, adds Dave to a
// group whose log is long (300 entries: it goes to him as its end). Dave
// sees an invitation, fetches nothing until he accepts, then joins: the
// log before the end comes from his own relay, verified whole, and he
// reads what Alice posts.
func TestInvitationToLongLog(t *testing.T) {
	relay, alice, dave, g, group := invitedToLong(t, "Long strangers", 300)
	ctx := context.Background()
	if n := dave.fetched.tail.Load() + dave.fetched.whole.Load(); n != 0 {
		t.Fatalf("Dave fetched %d logs before accepting", n)
	}
	if _, err := dave.GroupMessages(ctx, g.ID); !errors.Is(err, chat.ErrUnknownGroup) {
		t.Fatalf("messages of an invitation: %v", err)
	}
	// The invitation shows the title and member count Alice's node sent
	// with the end (her word until Dave accepts), and is accepted by it.
	gs, err := dave.Groups(ctx)
	if err != nil || len(gs) != 1 || gs[0].Title != "Long strangers" || gs[0].InvitedMembers != 2 || gs[0].Role != "invited" {
		t.Fatalf("Dave's invitation: %+v (%v)", gs, err)
	}
	head := alice.reloadGroup(t, group).Head()
	awaitRelayLog(t, alice, relay, group, head)
	joined, err := dave.JoinGroup(ctx, "Long strangers")
	if err != nil || joined.Role != "member" || joined.Title != "Long strangers" || len(joined.Members) != 2 {
		t.Fatalf("join: %+v (%v)", joined, err)
	}
	if dave.reloadGroup(t, group).Head().Hash() != head.Hash() {
		t.Fatal("Dave's log is not Alice's")
	}
	if gs, err := dave.Groups(ctx); err != nil || len(gs) != 1 || gs[0].Role != "member" {
		t.Fatalf("Dave's groups after joining: %+v (%v)", gs, err)
	}
	if _, err := dave.JoinGroup(ctx, g.ID); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("join twice: %v", err)
	}
	if _, err := alice.SendGroup(ctx, g.ID, "welcome to the long group"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Alice's message at Dave", func() (bool, error) {
		ms, err := dave.GroupMessages(ctx, g.ID)
		if err != nil {
			return false, err
		}
		return len(ms) > 0 && ms[len(ms)-1].Text == "welcome to the long group", nil
	})
}

// TestEndInvitationChecked: a long log's end from someone who is not a
// contact is kept as an invitation only if its entries verify, follow
// each other, and one adds this account; nothing else is kept.
func TestEndInvitationChecked(t *testing.T) {
	malloryHome, _ := initHome(t, "mallory")
	daveHome, _ := initHome(t, "dave")
	mallory := startNode(t, malloryHome)
	dave := startNode(t, daveHome)
	g, err := mallory.CreateGroup(context.Background(), "junk")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	writePins(t, mallory, group, 40)
	l := mallory.reloadGroup(t, group)
	add, err := groupstate.Sign(mallory.keys.device, mallory.keys.cert, l.Head(), l.Head().Time, groupstate.Change{Kind: groupstate.KindAdd, Account: dave.keys.account.ID()})
	if err != nil {
		t.Fatal(err)
	}
	end := func(es ...*groupstate.Entry) payload {
		p := payload{Kind: "group-log", Group: g.ID, From: es[0].Seq}
		for _, e := range es {
			b, _ := e.MarshalBinary()
			p.Log = append(p.Log, b)
		}
		return p
	}
	tail := l.Entries(l.Head().Seq - 16)
	forged := end(append(tail, add)...)
	forged.Log[len(forged.Log)-1] = append([]byte(nil), forged.Log[len(forged.Log)-1]...)
	forged.Log[len(forged.Log)-1][len(forged.Log[len(forged.Log)-1])-1] ^= 1
	gap := end(append(tail[:5:5], append(tail[6:], add)...)...)
	for _, c := range []struct {
		name string
		p    payload
		kept bool
	}{
		{"an end that adds someone else", end(tail...), false},
		{"an end whose add does not verify", forged, false},
		{"an end with an entry missing", gap, false},
		{"an end that adds Dave", end(append(tail, add)...), true},
	} {
		if err := dave.db.Update(func(tx *storage.Txn) error { return dave.applyGroupLog(tx, mallory.keys.account.ID(), c.p) }); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var kept bool
		_ = dave.db.View(func(tx *storage.Txn) (err error) {
			kept, err = tx.Has(dave.st.groupInv, invKey(group, mallory))
			return err
		})
		if kept != c.kept {
			t.Fatalf("%s: kept as an invitation %v, want %v", c.name, kept, c.kept)
		}
	}
}

// TestLargeInvitationKeptAsEnd: an invitation whose whole log is more
// than a transaction holds (a contact's long log that adds this account
// by a stranger's hand, fetched whole) is kept as its end from a little
// before the add, and accepted like one.
func TestLargeInvitationKeptAsEnd(t *testing.T) {
	relay, alice, dave, g, group := invitedToLong(t, "Large strangers", 2500)
	ctx := context.Background()
	// The same invitation as a whole log, in place of the end.
	l := alice.reloadGroup(t, group)
	var whole [][]byte
	for _, e := range l.Entries(0) {
		b, _ := e.MarshalBinary()
		whole = append(whole, b)
	}
	if !dave.largeLog(whole) {
		t.Fatal("the log fits a transaction: tests nothing")
	}
	var inv *invitation
	if err := dave.db.Update(func(tx *storage.Txn) error {
		byAlice := invKey(group, alice) // (an end: under its inviter)
		first, _, err := dave.loadInvitation(tx, byAlice)
		if err != nil {
			return err
		}
		if err := tx.Delete(dave.st.groupInv, byAlice); err != nil {
			return err
		}
		if err := dave.storeInvitation(tx, group, alice.keys.account.ID(), alice.keys.account.ID(), payload{Kind: "group-log", Group: g.ID, Log: whole, Info: first.Info}); err != nil {
			return err
		}
		inv, _, err = dave.loadInvitation(tx, group[:])
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inv.From == 0 || inv.From > l.Head().Seq-groupstate.ForkWindow || len(inv.Log) > 2*groupstate.ForkWindow {
		t.Fatalf("kept from %d, %d entries; want the end from a little before the add", inv.From, len(inv.Log))
	}
	head := l.Head()
	awaitRelayLog(t, alice, relay, group, head)
	if joined, err := dave.JoinGroup(ctx, g.ID); err != nil || joined.Role != "member" || joined.Title != "Large strangers" {
		t.Fatalf("join: %+v (%v)", joined, err)
	}
	if dave.reloadGroup(t, group).Head().Hash() != head.Hash() {
		t.Fatal("Dave's log is not Alice's")
	}
}

// awaitRelayLog waits until relay holds n's log of group up to head.
func awaitRelayLog(t *testing.T, n *testNode, relay *testRelay, group groupstate.GroupID, head *groupstate.Entry) {
	t.Helper()
	eventually(t, "the relay holding the log", func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		entries, _, err := history.NewClient(n.host).Log(ctx, relay.h.ID(), group)
		return err == nil && uint64(len(entries)) == head.Seq+1, nil
	})
}

// invitedToLong has Alice, not Dave's contact, make a group titled
// title with entries pins written straight into her store, and add
// Dave; it waits until Dave holds the invitation.
func invitedToLong(t *testing.T, title string, entries int) (*testRelay, *testNode, *testNode, chat.Group, groupstate.GroupID) {
	t.Helper()
	relay := startRelay(t, t.TempDir())
	aliceHome, _ := initHome(t, "alice")
	daveHome, daveInfo := initHome(t, "dave")
	alice := startNode(t, aliceHome, relay.addr)
	dave := startNode(t, daveHome, relay.addr)
	ctx := context.Background()
	eventually(t, "Dave's keys at Alice", func() (bool, error) {
		c, err := alice.AddContact(ctx, daveInfo.AccountID, "dave")
		return err == nil && c.Devices == 1, nil
	})
	g, err := alice.CreateGroup(ctx, title)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	writePins(t, alice, group, entries)
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"dave"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the invitation at Dave", func() (bool, error) {
		gs, err := dave.Groups(ctx)
		return err == nil && len(gs) == 1 && gs[0].ID == g.ID && gs[0].Role == "invited", err
	})
	return relay, alice, dave, g, group
}

// invKey is the key of n's invitation, kept as a long log's end, to group.
func invKey(group groupstate.GroupID, n *testNode) []byte {
	by := n.keys.account.ID()
	return append(append([]byte(nil), group[:]...), by[:]...)
}

// TestEndInvitationsApart: Mallory, a stranger, sends Dave a junk end
// naming the group Alice invited him to (her own group's entries, adding
// him). Both are kept, each under its inviter; the group is listed once;
// accepting it joins Alice's group, whose log the relay holds — Mallory's
// end matches no relay's log of the group.
func TestEndInvitationsApart(t *testing.T) {
	relay, alice, dave, g, group := invitedToLong(t, "Apart", 300)
	ctx := context.Background()
	malloryHome, _ := initHome(t, "mallory")
	mallory := startNode(t, malloryHome)
	mg, err := mallory.CreateGroup(ctx, "junk")
	if err != nil {
		t.Fatal(err)
	}
	mraw, _ := hex.DecodeString(mg.ID)
	mgroup := groupstate.GroupID(mraw)
	writePins(t, mallory, mgroup, 20)
	ml := mallory.reloadGroup(t, mgroup)
	add, err := groupstate.Sign(mallory.keys.device, mallory.keys.cert, ml.Head(), ml.Head().Time, groupstate.Change{Kind: groupstate.KindAdd, Account: dave.keys.account.ID()})
	if err != nil {
		t.Fatal(err)
	}
	junk := payload{Kind: "group-log", Group: g.ID, From: ml.Head().Seq - 15}
	for _, e := range append(ml.Entries(ml.Head().Seq-15), add) {
		b, _ := e.MarshalBinary()
		junk.Log = append(junk.Log, b)
	}
	if err := dave.db.Update(func(tx *storage.Txn) error { return dave.applyGroupLog(tx, mallory.keys.account.ID(), junk) }); err != nil {
		t.Fatal(err)
	}
	var kept int
	_ = dave.db.View(func(tx *storage.Txn) (err error) { kept, err = tx.Count(dave.st.groupInv, group[:]); return err })
	if kept != 2 {
		t.Fatalf("%d invitations kept to the group, want Alice's and Mallory's", kept)
	}
	if gs, err := dave.Groups(ctx); err != nil || len(gs) != 1 {
		t.Fatalf("Dave's groups: %+v (%v), want the group listed once", gs, err)
	}
	awaitRelayLog(t, alice, relay, group, alice.reloadGroup(t, group).Head())
	joined, err := dave.JoinGroup(ctx, g.ID)
	if err != nil || joined.Role != "member" || joined.Title != "Apart" {
		t.Fatalf("join: %+v (%v)", joined, err)
	}
	_ = dave.db.View(func(tx *storage.Txn) (err error) { kept, err = tx.Count(dave.st.groupInv, group[:]); return err })
	if kept != 0 {
		t.Fatalf("%d invitations left once joined", kept)
	}
}

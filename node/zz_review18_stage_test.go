package node

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/storage"
)

// r18LongGroup is a group Alice owns with a log too large for one
// transaction (2,500 pins after its creation), its entries encoded, and
// extra more entries signed on its head (not stored).
func r18LongGroup(t *testing.T, alice *testNode, extra int) (groupstate.GroupID, *groupstate.Log, [][]byte, [][]byte) {
	t.Helper()
	id := r12NewGroup(t, alice, "long")
	writePins(t, alice, id, 2500)
	held := alice.reloadGroup(t, id)
	var raws [][]byte
	for _, e := range held.Entries(0) {
		b, _ := e.MarshalBinary()
		raws = append(raws, b)
	}
	if !alice.largeLog(raws) {
		t.Fatal("the log fits one transaction: tests nothing")
	}
	l := held.Clone()
	var more [][]byte
	for i := range extra {
		e, b := alice.r12Owner(t, l.Head(), groupstate.Change{Kind: groupstate.KindPin, Ref: [32]byte{byte(i), byte(i >> 8), 0x18}})
		if _, err := l.Add(e); err != nil {
			t.Fatal(err)
		}
		more = append(more, b)
	}
	return id, held, raws, more
}

func r18StoredKeys(t *testing.T, n *testNode, id groupstate.GroupID) (count int, last uint64) {
	t.Helper()
	if err := n.db.View(func(tx *storage.Txn) error {
		return tx.Iterate(n.st.groupLog, id[:], func(k, _ []byte) error {
			count++
			last = binary.BigEndian.Uint64(k[32:])
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return count, last
}

// TestReview18StagedLeftoverBeyondBlocksFetch (FINDING, low): staged
// entries left behind past the end of a later staged log are never
// deleted by the staged path, and block it for good. A staging that
// was neither kept nor unstaged (the process stopped between stageLog
// and the keeping transaction — a staging of a long log takes many
// transactions —, unstage's error ignored after 16 conflicts, a link
// join whose stageLog failed: joinByLink returns without unstage) leaves
// entries 1..M with no creation entry. A later fetch of a shorter log of
// the group (N < M entries; e.g. the relay's log without the join the
// failed link join had added, or a relay behind) stages 1..N-1 over
// them, checkStaged finds entries past N (errStageRaced), and unstage
// deletes only below N (unstage(id, count)): entries N..M-1 stay, so
// every staged apply of a log shorter than M fails the same way, until
// a log of M entries or more comes. Only a non-staged whole log or a
// link join clears them.
//
// Fix: when the group is not held, unstage (and the first stageLog
// transaction) deletes every stored entry of the group, not only those
// below count.
func TestReview18StagedLeftoverBeyondBlocksFetch(t *testing.T) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	id, held, raws, more := r18LongGroup(t, alice, 50)
	// A staging of the longer log that was never kept nor unstaged.
	if err := alice.clearLogOutside(id, false); err != nil {
		t.Fatal(err)
	}
	if err := alice.stageLog(id, append(append([][]byte(nil), raws...), more...)); err != nil {
		t.Fatal(err)
	}
	p := payload{Kind: "group-log", Group: hex.EncodeToString(id[:]), Log: raws}
	var errs []error
	for range 3 {
		err := alice.applyFetched(id, alice.keys.account.ID(), p)
		errs = append(errs, err)
		if err == nil {
			break
		}
	}
	n, last := r18StoredKeys(t, alice, id)
	t.Logf("applies: %v; stored entries left: %d (last seq %d)", errs, n, last)
	l, err := alice.r12Replayed(id)
	if err != nil || l.Head().Hash() != held.Head().Hash() {
		t.Fatalf("after %d fetch-applies of the group's %d-entry log over a leftover staging of %d, the group is not held (%v)",
			len(errs), len(raws), len(raws)+len(more), err)
	}
}

// TestReview18ConcurrentStagingsAndAppends (held): two fetch-applies of
// the same long log (each staging it), an unstage of a longer count and
// live entries from gossip (applyGroupLog ends from a member) all run at
// once on a group Alice does not hold. Whatever the interleaving, the
// group ends held, its stored log replays (no gap, no foreign entry), it
// holds every live entry, and nothing is stored past its head.
func TestReview18ConcurrentStagingsAndAppends(t *testing.T) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	id, _, raws, more := r18LongGroup(t, alice, 10)
	if err := alice.clearLogOutside(id, false); err != nil {
		t.Fatal(err)
	}
	self := alice.keys.account.ID()
	p := payload{Kind: "group-log", Group: hex.EncodeToString(id[:]), Log: raws}
	live := func(i int) error {
		q := payload{Kind: "group-log", Group: hex.EncodeToString(id[:]), From: uint64(len(raws) + i), Log: [][]byte{more[i]}}
		return alice.db.Update(func(tx *storage.Txn) error { return alice.applyGroupLog(tx, self, q) })
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var fetchErrs []error
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := alice.applyFetched(id, self, p)
			mu.Lock()
			fetchErrs = append(fetchErrs, err)
			mu.Unlock()
		}()
	}
	stop := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := alice.unstage(id, len(raws)+len(more)); err != nil && !errors.Is(err, storage.ErrConflict) {
				t.Errorf("unstage: %v", err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < len(more); {
			select {
			case <-stop:
				return
			default:
			}
			if err := live(i); err != nil {
				t.Errorf("live entry %d: %v", i, err)
				return
			}
			if alice.heldLength(id) > len(raws)+i {
				i++
			}
		}
	}()
	// The fetches end; then the appender and the unstager are stopped.
	for {
		mu.Lock()
		n := len(fetchErrs)
		mu.Unlock()
		if n == 2 {
			break
		}
		alice.heldLength(id)
	}
	close(stop)
	wg.Wait()
	t.Logf("fetch-applies: %v", fetchErrs)
	if !alice.heldGroup(id) {
		// Both stagings lost to each other (each may): the next fetch.
		if err := alice.applyFetched(id, self, p); err != nil {
			t.Fatalf("a fetch after the race: %v", err)
		}
	}
	for i := range more {
		if err := live(i); err != nil {
			t.Fatal(err)
		}
	}
	l, err := alice.r12Replayed(id)
	if err != nil {
		t.Fatalf("the stored log does not replay: %v", err)
	}
	want, _ := groupstate.Parse(more[len(more)-1])
	if l.Head().Hash() != want.Hash() {
		t.Fatalf("head %d, want %d", l.Head().Seq, want.Seq)
	}
	if n, _ := r18StoredKeys(t, alice, id); n != int(l.Head().Seq)+1 {
		t.Fatalf("%d entries stored, the log has %d", n, l.Head().Seq+1)
	}
}

// TestReview18DeferredLongLogNeverApplies (FINDING, pre-existing but on
// the staging path): a long log that is new here (staged) and holds an
// entry dated ahead of this node's clock (a member's clock 15 min fast:
// within maxDeferAhead) is deferred — deferLog sets p.staged = false,
// "applied later, it is written whole" — and the staged entries are
// unstaged. When the entry is due, retryDeferred applies the whole log
// in ONE transaction (applyWholeLog: clearGroupLog and 2,500 putEntry),
// which is over the store's transaction limit (ErrTxnTooBig, logged as
// "a kept log not applied"), and the waiting log is gone. The group is
// not joined until some other fetch brings the log again.
//
// Fix: retryDeferred of a whole log that largeLog reports goes through
// applyFetched (staged), as the first apply did.
func TestReview18DeferredLongLogNeverApplies(t *testing.T) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	id, held, raws, _ := r18LongGroup(t, alice, 0)
	ahead := alice.cfg.Now().Add(maxEntryAhead + 5*time.Minute).UnixMilli()
	e, err := groupstate.Sign(alice.keys.device, alice.keys.cert, held.Head(), ahead, groupstate.Change{Kind: groupstate.KindTitle, Text: "from a fast clock"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := e.MarshalBinary()
	raws = append(raws, b)
	if err := alice.clearLogOutside(id, false); err != nil {
		t.Fatal(err)
	}
	err = alice.applyFetched(id, alice.keys.account.ID(), payload{Kind: "group-log", Group: hex.EncodeToString(id[:]), Log: raws})
	t.Logf("the first apply: %v", err)
	alice.deferMu.Lock()
	_, waiting := alice.deferred[deferKey{id, alice.keys.account.ID()}]
	alice.deferMu.Unlock()
	if !waiting {
		t.Fatal("the log is not waiting: the test's premise")
	}
	alice.setClock(10 * time.Minute) // the entry is due
	deadline := time.Now().Add(deferPoll + 5*time.Second)
	// (Since review 19 the group is held at once, up to the entry dated
	// ahead; the entry is taken once due.)
	for time.Now().Before(deadline) {
		if ok, _ := holdsEntry(alice, id, e)(); ok {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	alice.deferMu.Lock()
	_, waiting = alice.deferred[deferKey{id, alice.keys.account.ID()}]
	alice.deferMu.Unlock()
	if !alice.heldGroup(id) {
		// What retryDeferred ran: the whole log in one transaction.
		whole := payload{Kind: "group-log", Group: hex.EncodeToString(id[:]), Log: raws}
		err := alice.db.Update(func(tx *storage.Txn) error { return alice.applyWholeLog(tx, alice.keys.account.ID(), whole) })
		t.Fatalf("the deferred long log was not applied once its entry was due (still waiting: %v; the whole log in one transaction: %v)", waiting, err)
	}
	l, err := alice.r12Replayed(id)
	if err != nil || l.Head().Hash() != e.Hash() {
		t.Fatalf("the log after the deferred apply: %v", err)
	}
}

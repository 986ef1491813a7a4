package node

import (
	"crypto/rand"
	"encoding/hex"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/storage"
)

// r19StrangerLongGroup: a group a stranger created, with pins pins and
// then an add of target; its entries encoded.
func r19StrangerLongGroup(t *testing.T, s *r12User, pins int, target [32]byte) (groupstate.GroupID, [][]byte) {
	t.Helper()
	var nonce [32]byte
	_, _ = rand.Read(nonce[:])
	e, err := groupstate.Sign(s.dev, s.cert, nil, time.Now().UnixMilli(), groupstate.Change{Kind: groupstate.KindCreate, Text: "s", Perms: groupstate.DefaultPerms, Ref: nonce})
	if err != nil {
		t.Fatal(err)
	}
	first, _ := e.MarshalBinary()
	entries, raws := []*groupstate.Entry{e}, [][]byte{first}
	for i := range pins {
		var b []byte
		kind := groupstate.KindPin // (pinned, then unpinned: at most 100 pins)
		if i%2 == 1 {
			kind = groupstate.KindUnpin
		}
		e, b = r12Sign(t, s.dev, s.cert, e, groupstate.Change{Kind: kind, Ref: [32]byte{byte(i / 2), byte(i >> 9), 0x19}})
		entries, raws = append(entries, e), append(raws, b)
	}
	var b []byte
	e, b = r12Sign(t, s.dev, s.cert, e, groupstate.Change{Kind: groupstate.KindAdd, Account: target})
	entries, raws = append(entries, e), append(raws, b)
	l, err := groupstate.Replay(entries)
	if err != nil {
		t.Fatal(err)
	}
	return l.Group(), raws
}

// TestReview19DeferredStrangerLongLogBecomesInvitation (held): a long
// whole log a stranger (not a contact; the only member, who added
// Alice) sent, waiting for an entry dated ahead, is retried through
// applyFetched (staged) once due. The retry keeps applyWholeLog's checks:
// the stranger's log becomes an invitation (its end), it is not joined,
// and nothing of the staging is left in the store.
func TestReview19DeferredStrangerLongLogBecomesInvitation(t *testing.T) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	self := alice.keys.account.ID()
	stranger := r12NewUser(t, "stranger")
	g, raws := r19StrangerLongGroup(t, stranger, 2500, self)
	if !alice.largeLog(raws) {
		t.Fatal("the log fits one transaction: tests nothing")
	}
	alice.deferLog(g, stranger.id(), payload{Kind: "group-log", Group: hex.EncodeToString(g[:]), Log: raws}, alice.cfg.Now().UnixMilli())
	deadline := time.Now().Add(deferPoll + 10*time.Second)
	for time.Now().Before(deadline) && !r18HasInvitation(t, alice, g) {
		time.Sleep(100 * time.Millisecond)
	}
	if !r18HasInvitation(t, alice, g) {
		t.Fatal("the stranger's deferred long log did not become an invitation")
	}
	if alice.heldGroup(g) {
		t.Fatal("a stranger's deferred long log was joined without the user accepting it")
	}
	time.Sleep(300 * time.Millisecond) // (applyFetched's unstage after the keeping transaction)
	if n, _ := r18StoredKeys(t, alice, g); n != 0 {
		t.Fatalf("%d staged entries of the stranger's log left in the store", n)
	}
	all, live := r19Notes(t, alice, stranger.id())
	if all != 1 || live != 1 {
		t.Fatalf("notes after the invitation: %d (%d the stranger's)", all, live)
	}
}

// TestReview19DeferredChainRestagedEveryRetry (FINDING, low–medium): a
// long log new here whose tail is a chain of entries dated ahead, each
// at most maxDeferAhead − maxEntryAhead after the one before (here 45
// min apart; nothing bounds how far the chain goes, only each step), is
// never joined while the chain lasts: applyWholeLog of a group not held
// defers the WHOLE log at the first entry dated ahead (nothing of it is
// taken), and retryDeferred (new in 64d0617 for long logs) sends it
// through applyFetched, which stages every entry of the log again (up to
// maxFetchedLog, 128 MiB), finds the next entry ahead, defers again and
// unstages. A log with k such entries costs k full stagings and keeps
// the group unjoined k × 45 min; a contact's relay (fetchGroupLog dials
// the relays a contact names) serving such a log, with entries 45 min
// apart over 128 MiB, has the node rewrite 128 MiB every 45 min for
// years. Before the commit the retry re-deferred in memory (no writes)
// — the same never-joined loop, without the staging.
//
// Fix: for a group not held, apply the log up to its first entry dated
// ahead (as joinByLink does with its own allowance) and defer only the
// rest (mergeLog then takes it cheaply on a held log); or at least look
// for entries dated ahead before staging (applyFetched / retryDeferred)
// so that a re-deferral costs no writes.
func TestReview19DeferredChainRestagedEveryRetry(t *testing.T) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	id, held, raws, _ := r18LongGroup(t, alice, 0)
	const steps, gap = 4, 45 * time.Minute
	t0 := alice.cfg.Now().Add(maxEntryAhead + time.Minute)
	prev := held.Head()
	var times []time.Time
	for k := range steps {
		at := t0.Add(time.Duration(k) * gap)
		e, err := groupstate.Sign(alice.keys.device, alice.keys.cert, prev, at.UnixMilli(), groupstate.Change{Kind: groupstate.KindTitle, Text: "ahead"})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := e.MarshalBinary()
		raws, prev, times = append(raws, b), e, append(times, at)
	}
	if err := alice.clearLogOutside(id, false); err != nil {
		t.Fatal(err)
	}
	// Count the stagings: the group's entry 1 appearing with no creation entry.
	var stagings atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		was := false
		for {
			select {
			case <-stop:
				return
			default:
			}
			var staged bool
			_ = alice.db.View(func(tx *storage.Txn) error {
				one, _ := tx.Has(alice.st.groupLog, groupEntryKey(id, 1))
				zero, _ := tx.Has(alice.st.groupLog, groupEntryKey(id, 0))
				staged = one && !zero
				return nil
			})
			if staged && !was {
				stagings.Add(1)
			}
			was = staged
			time.Sleep(time.Millisecond)
		}
	}()
	err := alice.applyFetched(id, alice.keys.account.ID(), payload{Kind: "group-log", Group: hex.EncodeToString(id[:]), Log: raws})
	t.Logf("the first apply: %v (stagings so far %d)", err, stagings.Load())
	base := alice.cfg.Now()
	heldAt := -1
	for k := range steps {
		// The node's clock moved to where entry k is just due.
		alice.setClock(times[k].Add(-maxEntryAhead + 10*time.Second).Sub(base))
		before := stagings.Load()
		deadline := time.Now().Add(deferPoll + 4*time.Second)
		for time.Now().Before(deadline) && stagings.Load() == before && !alice.heldGroup(id) {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		if alice.heldGroup(id) {
			heldAt = k
			break
		}
	}
	close(stop)
	<-done
	t.Logf("log of %d entries, %d dated ahead %v apart: full stagings %d; group held at retry %d (-1: never) — %v of node time after the first deferral",
		len(raws), steps, gap, stagings.Load(), heldAt, time.Duration(max(heldAt, 0))*gap)
	if heldAt != 0 {
		t.Errorf("a long log with a chain of entries dated ahead (each within maxDeferAhead of the last) was restaged %d times and the group was not joined at the first retry (held at retry %d)", stagings.Load(), heldAt)
	}
}

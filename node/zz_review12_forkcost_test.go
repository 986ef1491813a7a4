package node

import (
	"encoding/hex"
	"errors"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/storage"
)

// TestReview12ForkEntryForcesQuadraticWholePath: one signed entry from
// any member — a fork of the log's last entry (here a member's pin
// competing with the owner's last change; it loses) — arriving as a
// large group's state entry over gossip or a relay's history
// (takeStateEntry builds payload{From: e.Seq, Log: [e]}, viaGroup), or
// pairwise as a long log's end, does not take the new end fast path
// (continuation refuses a fork) and falls back to the old whole path:
// every held entry marshalled, parsed again (past the 50,000-entry
// parse cache, every signature verified again), groupstate.Replay of
// the whole log, and then mergeLog over the whole log, which calls
// holds(mine, e) for each held entry — and holds copies Entries(e.Seq),
// the whole rest of the log, each time: O(N²) pointer copies and
// allocations (N²/2 × 8 bytes: 144 MB at N = 6,000, ~25 GB at the
// 80,000 entries the commit measures). The entry is refused in the end
// (it loses the fork), so nothing marks it as seen: the same entry sent
// again costs the same again, and one gossip entry makes every member's
// node pay it. The commit's fast path (a continuing end) costs a few
// hundred KB.
//
// Right behaviour: a fork end that follows the held log (followsHeld)
// is verified against the held log from the fork point (a clone cut
// back there, within ForkWindow) and merged as a branch, without the
// whole log; and holds must not copy the log (a Log.At(seq), or
// comparing with Entries only over the end's span).
func TestReview12ForkEntryForcesQuadraticWholePath(t *testing.T) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	id := r12NewGroup(t, alice, "fork cost")
	x := r12NewUser(t, "x")
	l := alice.reloadGroup(t, id)
	_, add := alice.r12Owner(t, l.Head(), groupstate.Change{Kind: groupstate.KindAdd, Account: x.id()})
	alice.r12SetKey(t, groupEntryKey(id, l.Head().Seq+1), add)

	errAbort := errors.New("abort")
	// cost applies p from x in a transaction that does not commit (the
	// store stays as it is) and reports the bytes allocated meanwhile.
	cost := func(p payload) (uint64, time.Duration) {
		t.Helper()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		err := alice.db.Update(func(tx *storage.Txn) error {
			if err := alice.applyGroupLog(tx, x.id(), p); err != nil {
				return err
			}
			return errAbort
		})
		d := time.Since(start)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, errAbort) {
			t.Fatal(err)
		}
		return after.TotalAlloc - before.TotalAlloc, d
	}
	measure := func(n int) (forkBytes, contBytes uint64, forkTime, contTime time.Duration) {
		t.Helper()
		l := alice.reloadGroup(t, id) // (and cached)
		if int(l.Head().Seq) < n {
			writePins(t, alice, id, n-int(l.Head().Seq))
			l = alice.reloadGroup(t, id)
		}
		head := l.Head()
		prev := l.Entries(head.Seq - 1)[0]
		fork, forkRaw := r12Sign(t, x.dev, x.cert, prev, groupstate.Change{Kind: groupstate.KindPin, Ref: [32]byte{1}})
		cont, contRaw := r12Sign(t, x.dev, x.cert, head, groupstate.Change{Kind: groupstate.KindPin, Ref: [32]byte{2}})
		gid := hex.EncodeToString(id[:])
		// As takeStateEntry hands them on.
		forkP := payload{Kind: "group-log", Group: gid, Log: [][]byte{forkRaw}, From: fork.Seq, viaGroup: true}
		contP := payload{Kind: "group-log", Group: gid, Log: [][]byte{contRaw}, From: cont.Seq, viaGroup: true}
		cost(contP) // (warm)
		contBytes, contTime = cost(contP)
		forkBytes, forkTime = cost(forkP)
		if got := alice.reloadGroup(t, id).Head(); got.Hash() != head.Hash() {
			t.Fatalf("the store changed: head %d", got.Seq)
		}
		return
	}
	size := r12Size("R12_FORK_N", 6000)
	small, _, smallTime, _ := measure(size / 2)
	fork, cont, forkTime, contTime := measure(size)
	t.Logf("log of %d entries: a one-entry fork end allocates %d MB (%v)", size/2, small>>20, smallTime)
	t.Logf("log of %d entries: a one-entry fork end allocates %d MB (%v); a continuing one %d KB (%v)", size, fork>>20, forkTime, cont>>10, contTime)
	if fork > 16<<20 {
		t.Fatalf("one fork entry on a log of %d entries allocates %d MB (%d MB at half that: ×%.1f for twice the log); a continuing entry %d KB", size, fork>>20, small>>20, float64(fork)/float64(small), cont>>10)
	}
}

// TestReview12JunkEndFromStrangerForcesWholeLogWork: a stranger (no
// contact, no member) with a session to the node, who knows the group's
// ID and its head entry (a large group's entries travel over gossip and
// relays), sends a long log's end {From: head, Log: [the held head
// entry, junk]}. followsHeld passes (the first entry is the node's own),
// continuation fails on the junk and the end goes to the whole path,
// which is certain to drop it (continuation's own comment: "dropped as
// the whole log is applied") — but only after marshalling every held
// entry, hashing each again and parsing it through the 50,000-entry
// parse cache (which the log cache no longer keeps warm: past 50,000
// entries every signature is verified again, the ~15 s per operation of
// an 80,000-entry log the commit set out to remove). The sender is
// checked last. Every such message costs O(N) again.
//
// Right behaviour: an end whose entries do not parse, or whose seqs do
// not follow From, is dropped at continuation (the whole path cannot
// take it), and the sender is checked (a member of the held log, or the
// author of a leave in the end) before any work over the whole log.
func TestReview12JunkEndFromStrangerForcesWholeLogWork(t *testing.T) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	id := r12NewGroup(t, alice, "junk end")
	stranger := r12NewUser(t, "stranger")
	writePins(t, alice, id, r12Size("R12_JUNK_N", 6000))
	l := alice.reloadGroup(t, id)
	head := l.Head()
	headRaw, _ := head.MarshalBinary()
	gid := hex.EncodeToString(id[:])
	_, next := alice.r12Owner(t, head, groupstate.Change{Kind: groupstate.KindPin, Ref: [32]byte{9}})

	errAbort := errors.New("abort")
	cost := func(sender r12User, p payload) (uint64, time.Duration) {
		t.Helper()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		err := alice.db.Update(func(tx *storage.Txn) error {
			if err := alice.applyGroupLog(tx, sender.id(), p); err != nil {
				return err
			}
			return errAbort
		})
		d := time.Since(start)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, errAbort) {
			t.Fatal(err)
		}
		return after.TotalAlloc - before.TotalAlloc, d
	}
	// A stranger's end that continues the log: the fast path drops it.
	valid := payload{Kind: "group-log", Group: gid, From: head.Seq, Log: [][]byte{headRaw, next}}
	cost(*stranger, valid)
	validBytes, validTime := cost(*stranger, valid)
	junk := payload{Kind: "group-log", Group: gid, From: head.Seq, Log: [][]byte{headRaw, []byte("junk")}}
	junkBytes, junkTime := cost(*stranger, junk)
	if got := alice.reloadGroup(t, id).Head(); got.Hash() != head.Hash() {
		t.Fatalf("the store changed: head %d", got.Seq)
	}
	t.Logf("log of %d entries, stranger's end: continuing %d KB (%v), with junk %d KB (%v)", head.Seq+1, validBytes>>10, validTime, junkBytes>>10, junkTime)
	if junkBytes > 1<<20 {
		t.Fatalf("a stranger's two-entry end with junk makes the node work over the whole log: %d KB allocated (%v), against %d KB (%v) for a continuing one", junkBytes>>10, junkTime, validBytes>>10, validTime)
	}
}

// r12Size is the log length a cost test builds: def, or the environment
// variable name's value (to measure at the lengths the commit names).
func r12Size(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

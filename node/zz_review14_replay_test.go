package node

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/storage"
)

// TestReview14DamagedLogAtBatchBoundary: a group whose stored log spans
// replayLogs' batches (replayBatch entries) loads whole; damaged at the
// last entry of the first batch, at the first of the second, in the
// middle of the second, by a valid entry put in another's place, or by an
// entry missing at the boundary, the whole group fails to load (naming
// the entry where it can) while the other groups, before and after it in
// the store's order, still load. Restored, it loads again (the parsed
// entry cache keeps no damage).
func TestReview14DamagedLogAtBatchBoundary(t *testing.T) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	ctx := context.Background()
	var others []string
	for i := range 4 {
		g, err := alice.CreateGroup(ctx, fmt.Sprintf("other %d", i))
		if err != nil {
			t.Fatal(err)
		}
		others = append(others, g.ID)
	}
	long, err := alice.CreateGroup(ctx, "long")
	if err != nil {
		t.Fatal(err)
	}
	gid := r14Gid(t, long.ID)
	raws := writePins(t, alice, gid, replayBatch+20) // entries 1 … 4116
	if got, err := alice.Group(ctx, long.ID); err != nil || got.Title != "long" {
		t.Fatalf("the long group: %v", err)
	}
	entry := func(seq int) []byte { return raws[seq-1] }
	set := func(seq int, v []byte) {
		t.Helper()
		if err := alice.db.Update(func(tx *storage.Txn) error {
			if v == nil {
				return tx.Delete(alice.st.groupLog, groupEntryKey(gid, uint64(seq)))
			}
			return tx.Set(alice.st.groupLog, groupEntryKey(gid, uint64(seq)), v)
		}); err != nil {
			t.Fatal(err)
		}
	}
	// check replays every stored log as the node does at its start
	// (replayLogs over the whole keyspace; the log cache, which checks
	// a cached log's first and head entries only, left out).
	check := func(what, wantErr string) {
		t.Helper()
		got := map[string]error{}
		if err := alice.db.View(func(tx *storage.Txn) error {
			return alice.replayLogs(tx, nil, func(id []byte, l *groupstate.Log, err error) {
				if err == nil && l == nil {
					err = fmt.Errorf("no log")
				}
				got[fmt.Sprintf("%x", id)] = err
			})
		}); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if err, ok := got[long.ID]; !ok || err == nil || (wantErr != "" && !strings.Contains(err.Error(), wantErr)) {
			t.Errorf("%s: the long group replays (%v, %v)", what, ok, err)
		}
		for _, id := range others {
			if err, ok := got[id]; !ok || err != nil {
				t.Errorf("%s: a sound group does not replay (%v, %v)", what, ok, err)
			}
		}
	}
	restore := func(seq int) {
		t.Helper()
		set(seq, entry(seq))
		if l, err := alice.r12Replayed(gid); err != nil || l.Head().Seq != uint64(replayBatch+20) {
			t.Fatalf("restored entry %d: %v", seq, err)
		}
	}
	for _, seq := range []int{replayBatch - 1, replayBatch, replayBatch + 1, replayBatch + 10, replayBatch + 20} {
		set(seq, flip14(entry(seq), len(entry(seq))-1))
		check(fmt.Sprintf("signature of entry %d", seq), fmt.Sprintf("entry %d", seq))
		restore(seq)
		set(seq, []byte("junk"))
		check(fmt.Sprintf("junk at entry %d", seq), fmt.Sprintf("entry %d", seq))
		restore(seq)
	}
	// A valid entry in another's place.
	set(replayBatch, entry(replayBatch+1))
	check("entry 4097 at 4096", "")
	restore(replayBatch)
	set(replayBatch-1, entry(replayBatch))
	check("entry 4096 at 4095", "")
	restore(replayBatch - 1)
	// One missing at the boundary.
	set(replayBatch, nil)
	check("entry 4096 missing", "")
	restore(replayBatch)
	// An extra one beyond the end that does not follow.
	set(replayBatch+21, entry(replayBatch))
	check("a stray entry at the end", "")
	set(replayBatch+21, nil)
	if _, err := alice.r12Replayed(gid); err != nil {
		t.Fatal(err)
	}
	// A start with entry 4096 damaged: the group is not served, the
	// others are; restored, a start serves it whole.
	set(replayBatch, flip14(entry(replayBatch), 70))
	alice.stop()
	alice = startNode(t, home)
	if _, err := alice.Group(ctx, long.ID); err == nil {
		t.Error("the damaged group served after a start")
	}
	gs, err := alice.Groups(ctx)
	if err != nil || len(gs) != len(others) {
		t.Errorf("groups after a start beside a damaged one: %d (%v)", len(gs), err)
	}
	set(replayBatch, entry(replayBatch))
	alice.stop()
	alice = startNode(t, home)
	if got, err := alice.Group(ctx, long.ID); err != nil || got.Title != "long" {
		t.Fatalf("after a restart: %v", err)
	}
	if l := alice.reloadGroup(t, gid); l.Head().Seq != uint64(replayBatch+20) {
		t.Fatalf("head %d", l.Head().Seq)
	}
}

func flip14(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 1
	return c
}

// TestReview14ParseEntriesCacheIndex: parseEntries over a mix of entries
// already in the parsed-entry cache, new ones, duplicates and damaged
// ones (concurrently, as gossip and API reads do) gives for every index
// the entry or error groupstate.Parse gives for that input.
func TestReview14ParseEntriesCacheIndex(t *testing.T) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	g, err := alice.CreateGroup(context.Background(), "cache")
	if err != nil {
		t.Fatal(err)
	}
	raws := writePins(t, alice, r14Gid(t, g.ID), 300)
	// Half of them cached (the first 150 parsed once).
	if _, errs := alice.parseEntries(raws[:150]); errs[0] != nil {
		t.Fatal(errs[0])
	}
	var mixed [][]byte
	for i := range 400 {
		switch i % 5 {
		case 0:
			mixed = append(mixed, raws[(i*7)%300])
		case 1:
			mixed = append(mixed, flip14(raws[(i*11)%300], len(raws[0])-1-i%60))
		case 2:
			mixed = append(mixed, raws[299-i%150])
		case 3:
			mixed = append(mixed, raws[i%150][:i%len(raws[0])])
		default:
			mixed = append(mixed, raws[(i*13)%300])
		}
	}
	done := make(chan error, 4)
	for w := range 4 {
		go func() {
			in := mixed[w*50:]
			es, errs := alice.parseEntries(in)
			for i, raw := range in {
				want, werr := groupstate.Parse(raw)
				switch {
				case (werr == nil) != (errs[i] == nil):
					done <- fmt.Errorf("input %d: %v, Parse %v", i, errs[i], werr)
					return
				case werr == nil && (es[i] == nil || es[i].Hash() != want.Hash()):
					done <- fmt.Errorf("input %d: another entry", i)
					return
				case werr != nil && es[i] != nil:
					done <- fmt.Errorf("input %d: an entry with an error", i)
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

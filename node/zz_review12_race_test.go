package node

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/storage"
)

// TestReview12ConcurrentClonesRace (held; run with -race): readers load
// a cached log of over two entry chunks at once (views and updates that
// have not written, all filling the cache), each forks its copy back
// into the last full chunk's reach and adds to it, while a writer grows
// the stored log. No reader sees another's change, none a race, and the
// cache ends where a replay of the store does.
func TestReview12ConcurrentClonesRace(t *testing.T) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	id := r12NewGroup(t, alice, "race")
	writePins(t, alice, id, 2*1024+3)
	base := alice.reloadGroup(t, id)
	baseHead := base.Head()

	// The writer's entries, signed before it starts.
	var grow [][]byte
	prev := baseHead
	for i := range 60 {
		e, raw := alice.r12Owner(t, prev, groupstate.Change{Kind: groupstate.KindTitle, Text: fmt.Sprint("grown ", i)})
		grow = append(grow, raw)
		prev = e
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i, raw := range grow {
			if err := alice.db.Update(func(tx *storage.Txn) error {
				return tx.Set(alice.st.groupLog, groupEntryKey(id, baseHead.Seq+1+uint64(i)), raw)
			}); err != nil {
				errs <- err
				return
			}
		}
	}()
	for r := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 15 {
				var l *groupstate.Log
				load := func(tx *storage.Txn) (err error) {
					l, err = alice.loadGroupTx(tx, id)
					return err
				}
				var err error
				if (r+i)%2 == 0 {
					err = alice.db.View(load)
				} else {
					err = alice.db.Update(load)
				}
				if err != nil {
					errs <- err
					return
				}
				head := l.Head()
				title := l.State().Title
				// A fork from ForkWindow-1 entries back, then more.
				fp := l.Entries(head.Seq - groupstate.ForkWindow + 1)[0]
				fe, err := groupstate.Sign(alice.keys.device, alice.keys.cert, fp, fp.Time, groupstate.Change{Kind: groupstate.KindTitle, Text: fmt.Sprint("reader ", r, " ", i)})
				if err != nil {
					errs <- err
					return
				}
				if _, err := l.AddBranch([]*groupstate.Entry{fe}); err != nil && !errors.Is(err, groupstate.ErrLostFork) {
					errs <- fmt.Errorf("reader %d: fork: %w", r, err)
					return
				}
				ne, err := groupstate.Sign(alice.keys.device, alice.keys.cert, l.Head(), l.Head().Time, groupstate.Change{Kind: groupstate.KindPin, Ref: [32]byte{byte(r), byte(i), 1}})
				if err != nil {
					errs <- err
					return
				}
				if _, err := l.Add(ne); err != nil {
					errs <- fmt.Errorf("reader %d: add: %w", r, err)
					return
				}
				// The next load is what the store holds, not this copy.
				var again *groupstate.Log
				if err := alice.db.View(func(tx *storage.Txn) (err error) {
					again, err = alice.loadGroupTx(tx, id)
					return err
				}); err != nil {
					errs <- err
					return
				}
				if again.Head().Hash() == ne.Hash() || again.Head().Seq < head.Seq {
					errs <- fmt.Errorf("reader %d: a reader's change shows in the next load (head %d, title %q; loaded before %d %q)", r, again.Head().Seq, again.State().Title, head.Seq, title)
					return
				}
				for _, p := range again.State().Pins {
					if p[2] == 1 {
						errs <- fmt.Errorf("reader %d: another reader's pin in the loaded state", r)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	want, err := alice.r12Replayed(id)
	if err != nil {
		t.Fatal(err)
	}
	got := alice.reloadGroup(t, id)
	if got.Head().Hash() != want.Head().Hash() || fmt.Sprint(*got.State()) != fmt.Sprint(*want.State()) {
		t.Fatalf("loaded head %d %q, the store replays to %d %q", got.Head().Seq, got.State().Title, want.Head().Seq, want.State().Title)
	}
	if got.Head().Seq != baseHead.Seq+uint64(len(grow)) {
		t.Fatalf("head %d, want %d", got.Head().Seq, baseHead.Seq+uint64(len(grow)))
	}
}

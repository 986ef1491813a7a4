package node

import (
	"encoding/hex"
	"errors"
	"testing"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/storage"
)

// stagedFixture is a group Alice holds (20 pins after its creation) and
// two longer logs of it: longer (10 pins more on its head) and fork (the
// log up to seq 5, then 30 other pins), their entries encoded.
type stagedFixture struct {
	alice        *testNode
	id           groupstate.GroupID
	held         *groupstate.Log
	longer, fork [][]byte
}

func newStagedFixture(t *testing.T) *stagedFixture {
	home, _ := initHome(t, "alice")
	f := &stagedFixture{alice: startNode(t, home)}
	f.id = r12NewGroup(t, f.alice, "staged")
	writePins(t, f.alice, f.id, 20)
	f.held = f.alice.reloadGroup(t, f.id)
	grow := func(base *groupstate.Log, upTo uint64, pins int, tag byte) [][]byte {
		var raws [][]byte
		for _, e := range base.Entries(0) {
			if e.Seq > upTo {
				break
			}
			b, _ := e.MarshalBinary()
			raws = append(raws, b)
		}
		l, err := groupstate.Replay(base.Entries(0)[:upTo+1])
		if err != nil {
			t.Fatal(err)
		}
		for i := range pins {
			e, b := f.alice.r12Owner(t, l.Head(), groupstate.Change{Kind: groupstate.KindPin, Ref: [32]byte{byte(i), tag}})
			if _, err := l.Add(e); err != nil {
				t.Fatal(err)
			}
			raws = append(raws, b)
		}
		return raws
	}
	f.longer = grow(f.held, f.held.Head().Seq, 10, 1)
	f.fork = grow(f.held, 5, 30, 2)
	return f
}

// restage clears the group's stored log and stages raws in its place.
func (f *stagedFixture) restage(t *testing.T, raws [][]byte) {
	t.Helper()
	if err := f.alice.clearLogOutside(f.id, false); err != nil {
		t.Fatal(err)
	}
	if err := f.alice.stageLog(f.id, raws); err != nil {
		t.Fatal(err)
	}
}

// keep runs the transaction that keeps a staged log (applyWholeLog of
// raws, staged) on Alice's node.
func (f *stagedFixture) keep(raws [][]byte) error {
	p := payload{Kind: "group-log", Group: hex.EncodeToString(f.id[:]), Log: raws, staged: true}
	return f.alice.db.Update(func(tx *storage.Txn) error { return f.alice.applyWholeLog(tx, f.alice.keys.account.ID(), p) })
}

// TestStagingNeverTouchesAHeldLog: a long log is staged (written in
// several transactions before the one that keeps it) while another path
// of the node changes the same group — stores it whole, appends to it,
// overwrites what was staged. Each case is that other path's change made
// at the worst moment; the staging must fail (errStageRaced) or delete
// only its own entries, and the log the other path stored must load
// unchanged. Before: stageLog wrote a blind batch over a held log's
// entries (a fork's entries over the held ones: the group no longer
// verified), the keeping transaction wrote the creation entry over
// entries it had not checked, and unstage and clearLogOutside deleted in
// batches after a check made outside them (outside review 17).
func TestStagingNeverTouchesAHeldLog(t *testing.T) {
	tests := []struct {
		name    string
		run     func(t *testing.T, f *stagedFixture) error
		wantErr bool
		// want is the head the group must end at (nil: not held).
		want func(f *stagedFixture) *groupstate.Entry
	}{
		{
			name: "staging over a log stored meanwhile",
			run: func(t *testing.T, f *stagedFixture) error {
				return f.alice.stageLog(f.id, f.fork)
			},
			wantErr: true,
			want:    func(f *stagedFixture) *groupstate.Entry { return f.held.Head() },
		},
		{
			name: "keeping a staging another path overwrote",
			run: func(t *testing.T, f *stagedFixture) error {
				f.restage(t, f.longer)
				f.alice.r12SetKey(t, groupEntryKey(f.id, 7), f.fork[7])
				return f.keep(f.longer)
			},
			wantErr: true,
			want:    func(*stagedFixture) *groupstate.Entry { return nil },
		},
		{
			name: "keeping a staging another path cut short",
			run: func(t *testing.T, f *stagedFixture) error {
				f.restage(t, f.longer)
				if err := f.alice.db.Update(func(tx *storage.Txn) error {
					return tx.Delete(f.alice.st.groupLog, groupEntryKey(f.id, uint64(len(f.longer)-1)))
				}); err != nil {
					t.Fatal(err)
				}
				return f.keep(f.longer)
			},
			wantErr: true,
			want:    func(*stagedFixture) *groupstate.Entry { return nil },
		},
		{
			name: "keeping an intact staging",
			run: func(t *testing.T, f *stagedFixture) error {
				f.restage(t, f.longer)
				return f.keep(f.longer)
			},
			want: func(f *stagedFixture) *groupstate.Entry {
				e, err := groupstate.Parse(f.longer[len(f.longer)-1])
				if err != nil {
					panic(err)
				}
				return e
			},
		},
		{
			name: "unstaging past a held log",
			run: func(t *testing.T, f *stagedFixture) error {
				return f.alice.unstage(f.id, len(f.longer))
			},
			want: func(f *stagedFixture) *groupstate.Entry { return f.held.Head() },
		},
		{
			name: "a whole log stored over a staging's leftovers",
			run: func(t *testing.T, f *stagedFixture) error {
				f.restage(t, f.fork)
				var raws [][]byte
				for _, e := range f.held.Entries(0) {
					b, _ := e.MarshalBinary()
					raws = append(raws, b)
				}
				p := payload{Kind: "group-log", Group: hex.EncodeToString(f.id[:]), Log: raws}
				return f.alice.db.Update(func(tx *storage.Txn) error {
					return f.alice.applyWholeLog(tx, f.alice.keys.account.ID(), p)
				})
			},
			want: func(f *stagedFixture) *groupstate.Entry { return f.held.Head() },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newStagedFixture(t)
			err := tt.run(t, f)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want one: %v", err, tt.wantErr)
			}
			if tt.wantErr && !errors.Is(err, errStageRaced) {
				t.Fatalf("error %v, want errStageRaced", err)
			}
			l, lerr := f.alice.r12Replayed(f.id)
			want := tt.want(f)
			switch {
			case want == nil && lerr == nil:
				t.Fatalf("the group is held (head %d), want none", l.Head().Seq)
			case want == nil:
			case lerr != nil:
				t.Fatalf("the group does not load: %v", lerr)
			case l.Head().Hash() != want.Hash():
				t.Fatalf("head %d, want %d", l.Head().Seq, want.Seq)
			}
		})
	}
}

// TestClearStopsAtAStoredGroup: clearing a log in several transactions
// (clearLogOutside), a transaction after the first that finds the
// group's creation entry stored again — another path stored the group
// between two of them — deletes nothing and fails.
func TestClearStopsAtAStoredGroup(t *testing.T) {
	f := newStagedFixture(t)
	if _, err := f.alice.clearSome(f.id, false, false); !errors.Is(err, errStageRaced) {
		t.Fatalf("error %v, want errStageRaced", err)
	}
	if l, err := f.alice.r12Replayed(f.id); err != nil || l.Head().Hash() != f.held.Head().Hash() {
		t.Fatalf("the held log after a clear that found it: %v", err)
	}
	done, err := f.alice.clearSome(f.id, true, false)
	if err != nil || !done {
		t.Fatalf("clearing the held log: done %v, %v", done, err)
	}
	if f.alice.heldGroup(f.id) {
		t.Fatal("the group is still held after the clear")
	}
}

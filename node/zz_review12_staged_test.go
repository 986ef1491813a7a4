package node

import (
	"testing"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/storage"
)

// TestReview12StagedLogNotShownFromCache (held): a group whose log the
// cache holds is cleared outside a transaction (clearLogOutside, as a
// link join over a log held from before does), and a longer log of the
// same group staged (stageLog: every entry but the creation). Until the
// creation entry is written, neither loadGroups nor loadGroupTx shows
// the group, though the cache still holds its old log (whose head the
// staged log holds at the same seq); once written, the staged log is
// the group's, read on from the cached head.
func TestReview12StagedLogNotShownFromCache(t *testing.T) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	id := r12NewGroup(t, alice, "staged")
	writePins(t, alice, id, 20)
	old := alice.reloadGroup(t, id) // cached
	if alice.logCache.get(id) == nil {
		t.Fatal("not cached")
	}
	// The longer log: the old one and 10 entries more.
	longer := old.Clone()
	var raws [][]byte
	for _, e := range old.Entries(0) {
		b, _ := e.MarshalBinary()
		raws = append(raws, b)
	}
	for i := range 10 {
		e, b := alice.r12Owner(t, longer.Head(), groupstate.Change{Kind: groupstate.KindPin, Ref: [32]byte{byte(i), 7}})
		if _, err := longer.Add(e); err != nil {
			t.Fatal(err)
		}
		raws = append(raws, b)
	}
	if err := alice.clearLogOutside(id, false); err != nil {
		t.Fatal(err)
	}
	if err := alice.stageLog(id, raws); err != nil {
		t.Fatal(err)
	}
	shown := func() bool {
		logs, err := alice.loadGroups()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range logs {
			if l.Group() == id {
				return true
			}
		}
		return false
	}
	if shown() {
		t.Fatal("a staged log listed as a group")
	}
	if _, err := alice.r12Load(t, id); err == nil {
		t.Fatal("a staged log loaded as a group")
	}
	if err := alice.db.Update(func(tx *storage.Txn) error { return tx.Set(alice.st.groupLog, groupEntryKey(id, 0), raws[0]) }); err != nil {
		t.Fatal(err)
	}
	if !shown() {
		t.Fatal("the kept log not listed")
	}
	l, err := alice.r12Load(t, id)
	if err != nil || l.Head().Hash() != longer.Head().Hash() {
		t.Fatalf("the kept log: %v", err)
	}
}

package storage

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGroupSyncWaitsForALaterSync: every wait returns only after a sync
// that started after the wait was called, and concurrent waits share
// syncs.
func TestGroupSyncWaitsForALaterSync(t *testing.T) {
	var started atomic.Int64 // unix ns of the latest sync start
	g := newGroupSyncer(func() error {
		started.Store(time.Now().UnixNano())
		time.Sleep(2 * time.Millisecond)
		return nil
	})
	defer g.close()
	const n = 200
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			called := time.Now().UnixNano()
			if err := g.wait(); err != nil {
				t.Error(err)
			}
			if s := started.Load(); s < called {
				t.Errorf("wait returned after a sync that started %v before it was called", time.Duration(called-s))
			}
		})
	}
	wg.Wait()
	if s := g.syncs.Load(); s < 1 || s > n/4 {
		t.Fatalf("%d syncs for %d concurrent waits", s, n)
	}
}

// TestUpdatesShareSyncs: concurrent Updates are synced in groups, and
// every Update is synced.
func TestUpdatesShareSyncs(t *testing.T) {
	db, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ks := db.Keyspace("t")
	const workers, n = 32, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if err := db.Update(func(tx *Txn) error { return tx.Set(ks, []byte(fmt.Sprint(i)), []byte("v")) }); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if s := db.gs.syncs.Load(); s < 1 || s > n/2 {
		t.Fatalf("%d syncs for %d commits from %d goroutines", s, n, workers)
	}
	before := db.gs.syncs.Load()
	if err := db.Update(func(tx *Txn) error { return tx.Set(ks, []byte("one"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	if db.gs.syncs.Load() == before {
		t.Fatal("an Update returned without a sync")
	}
	before = db.gs.syncs.Load()
	if err := db.View(func(tx *Txn) error { _, err := tx.Get(ks, []byte("one")); return err }); err != nil {
		t.Fatal(err)
	}
	if db.gs.syncs.Load() != before {
		t.Fatal("a View waited for a sync")
	}
}

// TestUpdateNoSync: UpdateNoSync commits (a View sees it) without waiting
// for a sync; the next Update's sync covers it.
func TestUpdateNoSync(t *testing.T) {
	db, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ks := db.Keyspace("t")
	before := db.gs.syncs.Load()
	for i := range 50 {
		if err := db.UpdateNoSync(func(tx *Txn) error { return tx.Set(ks, []byte(fmt.Sprint(i)), []byte("v")) }); err != nil {
			t.Fatal(err)
		}
	}
	if s := db.gs.syncs.Load(); s != before {
		t.Fatalf("UpdateNoSync waited for %d syncs", s-before)
	}
	if err := db.View(func(tx *Txn) error { _, err := tx.Get(ks, []byte("49")); return err }); err != nil {
		t.Fatalf("an UpdateNoSync not visible: %v", err)
	}
	if err := db.Update(func(tx *Txn) error { return tx.Set(ks, []byte("x"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	if db.gs.syncs.Load() == before {
		t.Fatal("Update after UpdateNoSync did not sync")
	}
}

// TestLogFilesSynced: every memtable log and value-log file but the newest
// of each kind is fsynced once and then remembered until it is deleted.
func TestLogFilesSynced(t *testing.T) {
	dir := t.TempDir()
	touch := func(name string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"00001.mem", "00002.mem", "000001.vlog", "000002.vlog", "000003.vlog", "000001.sst"} {
		touch(name)
	}
	l := &logFiles{dir: dir, done: map[string]bool{}}
	if err := l.sync(); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"00001.mem": true, "000001.vlog": true, "000002.vlog": true}
	if fmt.Sprint(l.done) != fmt.Sprint(want) {
		t.Fatalf("synced %v, want %v", l.done, want)
	}
	if err := os.Remove(filepath.Join(dir, "00001.mem")); err != nil {
		t.Fatal(err)
	}
	touch("00003.mem")
	if err := l.sync(); err != nil {
		t.Fatal(err)
	}
	want = map[string]bool{"00002.mem": true, "000001.vlog": true, "000002.vlog": true}
	if fmt.Sprint(l.done) != fmt.Sprint(want) {
		t.Fatalf("synced %v, want %v", l.done, want)
	}
}

package storage

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestDiskFull fills a small tmpfs (mounted for the test; needs root, which
// CI has): writes end with ErrDiskFull instead of Badger's SIGBUS, deletes
// still work, and everything committed before is there after a reopen.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root (CI runs as root)")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	dir := filepath.Join(mnt, "db")
	opts := Options{Dir: dir, MemTableSize: 1 << 20}
	db, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	ks := db.Keyspace("fill")
	val := make([]byte, 8<<10)
	committed := 0
	for i := range 100_000 {
		err = db.Update(func(tx *Txn) error { return tx.Set(ks, []byte(fmt.Sprintf("%08d", i)), val) })
		if err != nil {
			break
		}
		committed++
	}
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("after %d writes: %v, want ErrDiskFull", committed, err)
	}
	if committed == 0 {
		t.Fatal("nothing could be written at all")
	}
	// Badger may free space meanwhile (a memtable flushed, a compaction
	// done; a CI run saw the batch succeed): a filler file keeps the disk
	// under the reserve for the batch's check.
	filler := filepath.Join(mnt, "filler")
	if free, err := freeBytes(dir); err == nil && free > db.reserve/2 {
		if err := os.WriteFile(filler, make([]byte, free-db.reserve/2), 0o600); err != nil {
			t.Logf("filler: %v", err) // the disk is fuller than it said: fine
		}
	}
	b := db.NewBatch()
	if err := b.Set(ks, []byte("batch"), val); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("batch on a full disk: %v", err)
	}
	b.Cancel()
	if err := os.Remove(filler); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *Txn) error { return tx.Delete(ks, []byte("00000000")) }); err != nil {
		t.Fatalf("delete on a full disk: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	opts.MinFreeBytes = -1 // reading back needs no reserve
	db, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.View(func(tx *Txn) (err error) { n, err = tx.Count(ks, nil); return err }); err != nil {
		t.Fatal(err)
	}
	if n != committed-1 {
		t.Fatalf("%d keys after reopen, want %d", n, committed-1)
	}
}

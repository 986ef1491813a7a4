package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// When badger.Open fails after it started its cache monitor (e.g. a table
	// listed in the MANIFEST is missing), Badger's cleanup forgets to stop that
	// monitor and its allocator pool (badger v4.9.6 db.go: cleanup does not
	// signal closers.cacheHealth nor release allocPool). Every other Badger
	// goroutine still counts as a leak.
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/dgraph-io/badger/v4.(*DB).monitorCache"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2/z.(*AllocatorPool).freeupAllocators"),
	)
}

// testOpts keeps each test DB's footprint small.
func testOpts(dir string) Options {
	return Options{Dir: dir, MemTableSize: 1 << 20}
}

func openT(t *testing.T, opts Options) *DB {
	t.Helper()
	db, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

func set(t *testing.T, db *DB, ks Keyspace, key, val string) {
	t.Helper()
	if err := db.Update(func(tx *Txn) error { return tx.Set(ks, []byte(key), []byte(val)) }); err != nil {
		t.Fatalf("set %q: %v", key, err)
	}
}

func get(t *testing.T, db *DB, ks Keyspace, key string) (string, error) {
	t.Helper()
	var v []byte
	err := db.View(func(tx *Txn) error {
		var err error
		v, err = tx.Get(ks, []byte(key))
		return err
	})
	return string(v), err
}

func TestPersistence(t *testing.T) {
	tests := []struct {
		name string
		key  []byte
		opts func(dir string) Options
	}{
		{"sync", nil, testOpts},
		{"nosync", nil, func(dir string) Options { o := testOpts(dir); o.NoSync = true; return o }},
		{"encrypted", bytes.Repeat([]byte{7}, 32), testOpts},
		{"default-memtable", nil, func(dir string) Options { return Options{Dir: dir} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := tt.opts(dir)
			opts.EncryptionKey = tt.key
			db, err := Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			ks := db.Keyspace("msgs")
			big := bytes.Repeat([]byte("v"), 200<<10) // above the value threshold of a 1 MiB memtable
			err = db.Update(func(tx *Txn) error {
				if err := tx.Set(ks, []byte("k1"), []byte("v1")); err != nil {
					return err
				}
				if err := tx.Set(ks, []byte("empty"), nil); err != nil {
					return err
				}
				if err := tx.Set(ks, []byte("gone"), []byte("x")); err != nil {
					return err
				}
				return tx.Set(ks, []byte("big"), big[:100<<10])
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *Txn) error { return tx.Delete(ks, []byte("gone")) }); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db = openT(t, opts)
			ks = db.Keyspace("msgs")
			err = db.View(func(tx *Txn) error {
				if v, err := tx.Get(ks, []byte("k1")); err != nil || string(v) != "v1" {
					return fmt.Errorf("k1 = %q, %v", v, err)
				}
				if v, err := tx.Get(ks, []byte("empty")); err != nil || len(v) != 0 {
					return fmt.Errorf("empty = %q, %v", v, err)
				}
				if v, err := tx.Get(ks, []byte("big")); err != nil || !bytes.Equal(v, big[:100<<10]) {
					return fmt.Errorf("big: len %d, %v", len(v), err)
				}
				if _, err := tx.Get(ks, []byte("gone")); !errors.Is(err, ErrNotFound) {
					return fmt.Errorf("gone: err %v, want ErrNotFound", err)
				}
				for key, want := range map[string]bool{"k1": true, "gone": false, "nope": false} {
					if has, err := tx.Has(ks, []byte(key)); err != nil || has != want {
						return fmt.Errorf("Has(%q) = %v, %v; want %v", key, has, err, want)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestInMemory(t *testing.T) {
	db := openT(t, Options{InMemory: true, MemTableSize: 1 << 20})
	ks := db.Keyspace("x")
	set(t, db, ks, "k", "v")
	if v, err := get(t, db, ks, "k"); err != nil || v != "v" {
		t.Fatalf("get = %q, %v", v, err)
	}
}

func TestInvalidOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want error
	}{
		{"no dir", Options{}, ErrInvalidOptions},
		{"dir and memory", Options{Dir: t.TempDir(), InMemory: true}, ErrInvalidOptions},
		{"negative memtable", Options{Dir: t.TempDir(), MemTableSize: -1}, ErrInvalidOptions},
		{"key length", Options{Dir: t.TempDir(), EncryptionKey: make([]byte, 17)}, ErrBadKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := Open(tt.opts)
			if !errors.Is(err, tt.want) {
				if db != nil {
					db.Close()
				}
				t.Fatalf("Open err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCloseThenUse(t *testing.T) {
	db, err := Open(testOpts(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	ks := db.Keyspace("k")
	seq, err := db.Sequence(ks, "ids")
	if err != nil {
		t.Fatal(err)
	}
	pending := db.NewBatch()
	if err := pending.Set(ks, []byte("a"), []byte("b")); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := db.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"Update", func() error { return db.Update(func(*Txn) error { return nil }) }},
		{"View", func() error { return db.View(func(*Txn) error { return nil }) }},
		{"NewBatch.Set", func() error { return db.NewBatch().Set(ks, []byte("a"), nil) }},
		{"pending batch Set", func() error { return pending.Set(ks, []byte("a"), nil) }},
		{"pending batch Flush", func() error { return pending.Flush() }},
		{"Sequence", func() error { _, err := db.Sequence(ks, "other"); return err }},
		{"Sequence.Next", func() error { _, err := seq.Next(); return err }},
		{"RunGC", func() error { return db.RunGC(context.Background(), time.Millisecond) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, ErrClosed) {
				t.Fatalf("err = %v, want ErrClosed", err)
			}
		})
	}
	pending.Cancel() // no-op, no panic
	if err := seq.Release(); err != nil {
		t.Fatalf("Release after Close: %v", err)
	}
}

func TestCloseWaitsForTxn(t *testing.T) {
	db, err := Open(testOpts(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	ks := db.Keyspace("k")
	inside := make(chan struct{})
	release := make(chan struct{})
	updErr := make(chan error, 1)
	go func() {
		updErr <- db.Update(func(tx *Txn) error {
			close(inside)
			<-release
			return tx.Set(ks, []byte("k"), []byte("v"))
		})
	}()
	<-inside
	closed := make(chan error, 1)
	go func() { closed <- db.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a transaction was in flight")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-updErr; err != nil {
		t.Fatalf("Update: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	openT(t, testOpts(dir))
	db, err := Open(testOpts(dir))
	if !errors.Is(err, ErrLocked) {
		if db != nil {
			db.Close()
		}
		t.Fatalf("second Open err = %v, want ErrLocked", err)
	}
}

func TestKeyspaceIsolation(t *testing.T) {
	db := openT(t, testOpts(t.TempDir()))
	names := []string{"", "a", "ab", "b", "a\x00", strings.Repeat("n", 300), "badger!"}
	for _, n := range names {
		set(t, db, db.Keyspace(n), "key", "val-"+n)
		set(t, db, db.Keyspace(n), "b", "b-"+n) // "a"+"b..." must not leak into "ab"
	}
	if _, err := db.Sequence(db.Keyspace("a"), "seq"); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		t.Run(fmt.Sprintf("%.10q", n), func(t *testing.T) {
			ks := db.Keyspace(n)
			if ks.Name() != n {
				t.Fatalf("Name() = %q", ks.Name())
			}
			if v, err := get(t, db, ks, "key"); err != nil || v != "val-"+n {
				t.Fatalf("get = %q, %v", v, err)
			}
			var keys []string
			err := db.View(func(tx *Txn) error {
				return tx.Iterate(ks, nil, func(k, v []byte) error {
					keys = append(keys, string(k)+"="+string(v))
					return nil
				})
			})
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"b=b-" + n, "key=val-" + n}
			if fmt.Sprint(keys) != fmt.Sprint(want) {
				t.Fatalf("keys = %q, want %q", keys, want)
			}
		})
	}
	// The zero Keyspace is the keyspace "".
	if v, err := get(t, db, Keyspace{}, "key"); err != nil || v != "val-" {
		t.Fatalf("zero keyspace get = %q, %v", v, err)
	}
}

func TestIterate(t *testing.T) {
	db := openT(t, testOpts(t.TempDir()))
	ks := db.Keyspace("it")
	keys := []string{"m/3", "m/1", "a", "m/2", "m/10", "z", "m", "n/1"}
	err := db.Update(func(tx *Txn) error {
		for _, k := range keys {
			if err := tx.Set(ks, []byte(k), []byte("v"+k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	errBoom := errors.New("boom")
	tests := []struct {
		name      string
		prefix    string
		start     string
		stopAfter int   // return stopErr after this many keys; 0 = never
		stopErr   error // ErrStop or another error
		want      []string
		wantErr   error
	}{
		{name: "all", want: []string{"a", "m", "m/1", "m/10", "m/2", "m/3", "n/1", "z"}},
		{name: "prefix", prefix: "m/", want: []string{"m/1", "m/10", "m/2", "m/3"}},
		{name: "prefix no match", prefix: "q", want: nil},
		{name: "from", prefix: "m/", start: "2", want: []string{"m/2", "m/3"}},
		{name: "from between", prefix: "m/", start: "11", want: []string{"m/2", "m/3"}},
		{name: "from past end", prefix: "m/", start: "4", want: nil},
		{name: "from no prefix", start: "n", want: []string{"n/1", "z"}},
		{name: "stop", stopAfter: 2, stopErr: ErrStop, want: []string{"a", "m"}},
		{name: "wrapped stop", stopAfter: 1, stopErr: fmt.Errorf("done: %w", ErrStop), want: []string{"a"}},
		{name: "error", prefix: "m/", stopAfter: 1, stopErr: errBoom, want: []string{"m/1"}, wantErr: errBoom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			err := db.View(func(tx *Txn) error {
				return tx.IterateFrom(ks, []byte(tt.prefix), []byte(tt.start), func(k, v []byte) error {
					if string(v) != "v"+string(k) {
						t.Errorf("value of %q = %q", k, v)
					}
					got = append(got, string(k))
					if tt.stopAfter > 0 && len(got) == tt.stopAfter {
						return tt.stopErr
					}
					return nil
				})
			})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			if tt.start == "" && tt.stopAfter == 0 {
				var n int
				err := db.View(func(tx *Txn) (err error) { n, err = tx.Count(ks, []byte(tt.prefix)); return err })
				if err != nil || n != len(tt.want) {
					t.Fatalf("Count = %d, %v; want %d", n, err, len(tt.want))
				}
			}
		})
	}
	// Iteration inside Update sees the transaction's own writes.
	err = db.Update(func(tx *Txn) error {
		if err := tx.Set(ks, []byte("m/0"), []byte("vm/0")); err != nil {
			return err
		}
		n, err := tx.Count(ks, []byte("m/"))
		if err != nil {
			return err
		}
		if n != 5 {
			return fmt.Errorf("count in txn = %d, want 5", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestLast: the greatest key under a prefix, past keys that only start
// like it, keys of 0xff bytes, keys of the next keyspace, and inside an
// Update the transaction's own writes and deletions.
func TestLast(t *testing.T) {
	db := openT(t, testOpts(t.TempDir()))
	ks, next := db.Keyspace("la"), db.Keyspace("lb")
	keys := []string{"m/3", "m/1", "a", "m/2", "m/10", "m0", "n", "m", "p\xff", "p\xff\xff", "p\xff\xff\x01", "q"}
	if err := db.Update(func(tx *Txn) error {
		for _, k := range keys {
			if err := tx.Set(ks, []byte(k), []byte("v"+k)); err != nil {
				return err
			}
		}
		return tx.Set(next, []byte("a"), []byte("other keyspace"))
	}); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ prefix, want string }{
		{"", "q"},
		{"m/", "m/3"},
		{"m", "m0"},
		{"m/1", "m/10"},
		{"p\xff", "p\xff\xff\x01"},
		{"p\xff\xff", "p\xff\xff\x01"},
		{"o", ""},
		{"r", ""},
	}
	last := func(tx *Txn, prefix string) string {
		k, v, err := tx.Last(ks, []byte(prefix))
		if errors.Is(err, ErrNotFound) {
			return ""
		}
		if err != nil {
			t.Fatal(err)
		}
		if string(v) != "v"+string(k) {
			t.Fatalf("value of %q = %q", k, v)
		}
		return string(k)
	}
	for _, tt := range tests {
		if err := db.View(func(tx *Txn) error {
			if got := last(tx, tt.prefix); got != tt.want {
				t.Errorf("Last(%q) = %q, want %q", tt.prefix, got, tt.want)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Update(func(tx *Txn) error {
		if err := tx.Set(ks, []byte("m/4"), []byte("vm/4")); err != nil {
			return err
		}
		if got := last(tx, "m/"); got != "m/4" {
			t.Errorf("Last after a write in the txn = %q", got)
		}
		for _, k := range []string{"m/4", "m/3", "m/2"} {
			if err := tx.Delete(ks, []byte(k)); err != nil {
				return err
			}
		}
		if got := last(tx, "m/"); got != "m/10" {
			t.Errorf("Last after deletions in the txn = %q", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestChanged: a transaction reports a write (Set or Delete) from the
// first one on, and a read-only one never does.
func TestChanged(t *testing.T) {
	db := openT(t, testOpts(t.TempDir()))
	ks := db.Keyspace("ch")
	for _, tt := range []struct {
		name  string
		write func(*Txn) error
	}{
		{"set", func(tx *Txn) error { return tx.Set(ks, []byte("k"), []byte("v")) }},
		{"delete", func(tx *Txn) error { return tx.Delete(ks, []byte("k")) }},
		{"set with TTL", func(tx *Txn) error { return tx.SetTTL(ks, []byte("k"), []byte("v"), time.Hour) }},
	} {
		if err := db.Update(func(tx *Txn) error {
			if _, err := tx.Get(ks, []byte("k")); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			if tx.Changed() {
				t.Errorf("%s: changed before writing", tt.name)
			}
			if err := tt.write(tx); err != nil {
				return err
			}
			if !tx.Changed() {
				t.Errorf("%s: not changed after writing", tt.name)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.View(func(tx *Txn) error {
		if tx.Changed() {
			t.Error("a view changed")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestTxnDone(t *testing.T) {
	db := openT(t, testOpts(t.TempDir()))
	ks := db.Keyspace("d")
	var leaked *Txn
	if err := db.Update(func(tx *Txn) error { leaked = tx; return nil }); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"Get":     func() error { _, err := leaked.Get(ks, []byte("k")); return err },
		"Has":     func() error { _, err := leaked.Has(ks, []byte("k")); return err },
		"Set":     func() error { return leaked.Set(ks, []byte("k"), nil) },
		"SetTTL":  func() error { return leaked.SetTTL(ks, []byte("k"), nil, time.Second) },
		"Delete":  func() error { return leaked.Delete(ks, []byte("k")) },
		"Iterate": func() error { return leaked.Iterate(ks, nil, func(k, v []byte) error { return nil }) },
		"Count":   func() error { _, err := leaked.Count(ks, nil); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrTxnDone) {
			t.Errorf("%s after txn: err = %v, want ErrTxnDone", name, err)
		}
	}
}

func TestUpdateRollback(t *testing.T) {
	db := openT(t, testOpts(t.TempDir()))
	ks := db.Keyspace("r")
	errBoom := errors.New("boom")
	err := db.Update(func(tx *Txn) error {
		if err := tx.Set(ks, []byte("k"), []byte("v")); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if _, err := get(t, db, ks, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rolled-back key: err = %v, want ErrNotFound", err)
	}
	err = db.View(func(tx *Txn) error { return tx.Set(ks, []byte("k"), []byte("v")) })
	if err == nil {
		t.Fatal("Set in View succeeded")
	}
}

func TestTxnTooBig(t *testing.T) {
	db := openT(t, testOpts(t.TempDir())) // 1 MiB memtable: ~150 KiB per txn
	ks := db.Keyspace("big")
	val := make([]byte, 1024)
	err := db.Update(func(tx *Txn) error {
		for i := range 1000 {
			if err := tx.Set(ks, fmt.Appendf(nil, "k%04d", i), val); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, ErrTxnTooBig) {
		t.Fatalf("err = %v, want ErrTxnTooBig", err)
	}
}

func TestTTL(t *testing.T) {
	db := openT(t, testOpts(t.TempDir()))
	ks := db.Keyspace("ttl")
	err := db.Update(func(tx *Txn) error {
		if err := tx.SetTTL(ks, []byte("short"), []byte("s"), time.Second); err != nil {
			return err
		}
		return tx.SetTTL(ks, []byte("long"), []byte("l"), time.Hour)
	})
	if err != nil {
		t.Fatal(err)
	}
	b := db.NewBatch()
	if err := b.SetTTL(ks, []byte("batch-short"), []byte("b"), time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if v, err := get(t, db, ks, "short"); err != nil || v != "s" {
		t.Fatalf("before expiry: %q, %v", v, err)
	}
	start := time.Now()
	deadline := start.Add(5 * time.Second)
	for {
		_, err1 := get(t, db, ks, "short")
		_, err2 := get(t, db, ks, "batch-short")
		if errors.Is(err1, ErrNotFound) && errors.Is(err2, ErrNotFound) {
			if el := time.Since(start); el < time.Second {
				t.Fatalf("1s TTL keys expired after %v", el)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("TTL keys still present after 5s: %v, %v", err1, err2)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, ttl := range []time.Duration{0, -time.Second} {
		err := db.Update(func(tx *Txn) error { return tx.SetTTL(ks, []byte("bad"), nil, ttl) })
		if !errors.Is(err, ErrInvalidOptions) {
			t.Fatalf("SetTTL(%v) err = %v, want ErrInvalidOptions", ttl, err)
		}
	}
	if v, err := get(t, db, ks, "long"); err != nil || v != "l" {
		t.Fatalf("long TTL key: %q, %v", v, err)
	}
	var n int
	if err := db.View(func(tx *Txn) (err error) { n, err = tx.Count(ks, nil); return err }); err != nil || n != 1 {
		t.Fatalf("Count after expiry = %d, %v; want 1", n, err)
	}
}

// dirContains reports which files under dir contain marker.
func dirContains(t *testing.T, dir string, marker []byte) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, marker) {
			found = append(found, filepath.Base(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func TestEncryption(t *testing.T) {
	key := bytes.Repeat([]byte{0x42}, 32)
	marker := []byte("PEERGRAM-PLAINTEXT-MARKER-7f3a")
	write := func(t *testing.T, db *DB) {
		ks := db.Keyspace("secret")
		err := db.Update(func(tx *Txn) error {
			if err := tx.Set(ks, marker, marker); err != nil {
				return err
			}
			// A large value goes to the value log rather than the LSM tree.
			return tx.Set(ks, []byte("large"), bytes.Repeat(marker, 4000))
		})
		if err != nil {
			t.Fatal(err)
		}
		b := db.NewBatch()
		for i := range 2000 { // enough to flush a memtable into an SST
			if err := b.Set(ks, fmt.Appendf(nil, "%s-%d", marker, i), marker); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name      string
		key       []byte
		wantFound bool
	}{
		{"plaintext control", nil, true},
		{"aes-128", key[:16], false},
		{"aes-256", key, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := testOpts(dir)
			opts.EncryptionKey = tt.key
			db, err := Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			write(t, db)
			open := dirContains(t, dir, marker) // while open: WAL and value log
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			closed := dirContains(t, dir, marker)
			if found := len(open)+len(closed) > 0; found != tt.wantFound {
				t.Fatalf("marker found in %v (open) / %v (closed); want found=%v", open, closed, tt.wantFound)
			}
		})
	}

	dir := t.TempDir()
	opts := testOpts(dir)
	opts.EncryptionKey = key
	db, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	write(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	wrong := []struct {
		name string
		key  []byte
	}{
		{"wrong key", bytes.Repeat([]byte{0x43}, 32)},
		{"wrong length", key[:16]},
		{"no key", nil},
	}
	for _, w := range wrong {
		t.Run(w.name, func(t *testing.T) {
			o := testOpts(dir)
			o.EncryptionKey = w.key
			db, err := Open(o)
			if !errors.Is(err, ErrBadKey) {
				if db != nil {
					db.Close()
				}
				t.Fatalf("Open err = %v, want ErrBadKey", err)
			}
		})
	}
	db = openT(t, opts)
	if v, err := get(t, db, db.Keyspace("secret"), string(marker)); err != nil || v != string(marker) {
		t.Fatalf("right key: %q, %v", v, err)
	}
}

func TestBatch(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(testOpts(dir))
	if err != nil {
		t.Fatal(err)
	}
	ks := db.Keyspace("bulk")
	const n = 5000 // several internal transactions at a 1 MiB memtable
	b := db.NewBatch()
	val := make([]byte, 100)
	for i := range n {
		if err := b.Set(ks, fmt.Appendf(nil, "%06d", i), val); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Delete(ks, []byte("000000")); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := b.Set(ks, []byte("late"), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Set after Flush: %v, want ErrClosed", err)
	}
	b.Cancel() // after Flush: no-op

	c := db.NewBatch()
	if err := c.Set(ks, []byte("cancelled"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	c.Cancel()
	c.Cancel()
	if err := c.Flush(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush after Cancel: %v, want ErrClosed", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openT(t, testOpts(dir))
	ks = db.Keyspace("bulk")
	var count int
	if err := db.View(func(tx *Txn) (err error) { count, err = tx.Count(ks, nil); return err }); err != nil {
		t.Fatal(err)
	}
	if count != n-1 {
		t.Fatalf("count = %d, want %d", count, n-1)
	}
	if _, err := get(t, db, ks, "cancelled"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("cancelled key: %v", err)
	}
}

func TestSequence(t *testing.T) {
	dir := t.TempDir()
	var last uint64
	for round := range 3 {
		db, err := Open(testOpts(dir))
		if err != nil {
			t.Fatal(err)
		}
		ks := db.Keyspace("ids")
		seq, err := db.Sequence(ks, "msg")
		if err != nil {
			t.Fatal(err)
		}
		other, err := db.Sequence(db.Keyspace("other"), "msg")
		if err != nil {
			t.Fatal(err)
		}
		if v, err := other.Next(); err != nil || (round == 0 && v != 1) {
			t.Fatalf("other sequence first = %d, %v", v, err)
		}
		for range 1500 { // crosses a lease boundary
			v, err := seq.Next()
			if err != nil {
				t.Fatal(err)
			}
			if v <= last {
				t.Fatalf("round %d: Next = %d after %d", round, v, last)
			}
			last = v
		}
		switch round {
		case 0:
			if err := seq.Release(); err != nil { // explicit
				t.Fatal(err)
			}
			if err := seq.Release(); err != nil { // twice: no-op
				t.Fatal(err)
			}
			if _, err := seq.Next(); !errors.Is(err, ErrClosed) {
				t.Fatalf("Next after Release: %v, want ErrClosed", err)
			}
		}
		if err := db.Close(); err != nil { // releases the rest
			t.Fatal(err)
		}
		if round == 0 && last != 1500 {
			t.Fatalf("first round ended at %d, want 1500", last)
		}
		if n := 0; round == 0 {
			// Sequence state is not visible in keyspace iteration.
			db := openT(t, testOpts(t.TempDir()))
			s, _ := db.Sequence(db.Keyspace("ids"), "x")
			if _, err := s.Next(); err != nil {
				t.Fatal(err)
			}
			_ = db.View(func(tx *Txn) (err error) { n, err = tx.Count(db.Keyspace("ids"), nil); return err })
			if n != 0 {
				t.Fatalf("keyspace sees %d sequence keys", n)
			}
		}
	}
}

func TestConcurrentUpdate(t *testing.T) {
	db := openT(t, testOpts(t.TempDir()))
	ks := db.Keyspace("c")
	const workers, perWorker = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				err := db.Update(func(tx *Txn) error {
					// Own key: no conflict. Shared counter: conflicts, retried.
					if err := tx.Set(ks, fmt.Appendf(nil, "w%d-%d", w, i), []byte("x")); err != nil {
						return err
					}
					v, err := tx.Get(ks, []byte("counter"))
					if err != nil && !errors.Is(err, ErrNotFound) {
						return err
					}
					var n int
					if len(v) > 0 {
						fmt.Sscan(string(v), &n)
					}
					return tx.Set(ks, []byte("counter"), fmt.Append(nil, n+1))
				})
				if errors.Is(err, ErrConflict) {
					continue // allowed under heavy contention; counted below
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var own, counter int
	err := db.View(func(tx *Txn) error {
		var err error
		if own, err = tx.Count(ks, []byte("w")); err != nil {
			return err
		}
		v, err := tx.Get(ks, []byte("counter"))
		if err != nil {
			return err
		}
		_, err = fmt.Sscan(string(v), &counter)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Every committed transaction wrote its own key and bumped the counter once.
	if own != counter {
		t.Fatalf("%d own keys but counter = %d: lost update", own, counter)
	}
	t.Logf("%d of %d committed", own, workers*perWorker)
	if own < workers*perWorker*9/10 {
		t.Fatalf("only %d of %d updates committed", own, workers*perWorker)
	}
}

func TestRunGC(t *testing.T) {
	db, err := Open(testOpts(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	ks := db.Keyspace("gc")
	big := make([]byte, 300<<10) // value-log entries
	for range 5 {
		set(t, db, ks, "k", string(big))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- db.RunGC(ctx, 10*time.Millisecond) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("RunGC after cancel: %v", err)
	}
	go func() { done <- db.RunGC(context.Background(), 10*time.Millisecond) }()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("RunGC after Close: %v, want ErrClosed", err)
	}
	if err := db.RunGC(context.Background(), 0); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("RunGC(0): %v", err)
	}
}

// recordHandler keeps the records it is given, at or above min.
type recordHandler struct {
	min     slog.Level
	mu      sync.Mutex
	levels  map[slog.Level]int
	records []slog.Record
}

func (h *recordHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.min }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.levels[r.Level]++
	h.records = append(h.records, r)
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

// TestLogger opens and closes a store: Badger's informational lines (and
// its multi-line level summary on close) arrive at Debug, none at Info.
func TestLogger(t *testing.T) {
	h := &recordHandler{min: slog.LevelDebug, levels: map[slog.Level]int{}}
	opts := testOpts(t.TempDir())
	opts.Logger = slog.New(h)
	db, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.levels[slog.LevelDebug] == 0 || h.levels[slog.LevelInfo] != 0 {
		t.Fatalf("records by level %v, want Debug only", h.levels)
	}
}

func TestLoggerLevelsAndLines(t *testing.T) {
	type rec struct {
		level slog.Level
		msg   string
	}
	tests := []struct {
		name string
		min  slog.Level
		call func(a slogAdapter)
		want []rec
	}{
		{"info is debug", slog.LevelDebug, func(a slogAdapter) { a.Infof("All %d tables opened", 3) },
			[]rec{{slog.LevelDebug, "All 3 tables opened"}}},
		{"info hidden at info", slog.LevelInfo, func(a slogAdapter) { a.Infof("Lifetime L0 stalled for: 0s\n") }, nil},
		{"warning kept", slog.LevelInfo, func(a slogAdapter) { a.Warningf("Block cache might be too small\n") },
			[]rec{{slog.LevelWarn, "Block cache might be too small"}}},
		{"multi-line warning: first line only", slog.LevelInfo, func(a slogAdapter) { a.Warningf("compaction failed:\nLevel 0 [ ]\nLevel 1 [ ]\n") },
			[]rec{{slog.LevelWarn, "compaction failed:"}}},
		{"multi-line error: full text at debug", slog.LevelDebug, func(a slogAdapter) { a.Errorf("bad table\ndetail") },
			[]rec{{slog.LevelError, "bad table"}, {slog.LevelDebug, "badger: full text of the previous record"}}},
		{"multi-line debug: one record", slog.LevelDebug, func(a slogAdapter) { a.Infof("\nLevel 0 [ ]\nLevel 1 [ ]") },
			[]rec{{slog.LevelDebug, "Level 0 [ ]\nLevel 1 [ ]"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &recordHandler{min: tt.min, levels: map[slog.Level]int{}}
			tt.call(slogAdapter{slog.New(h)})
			var got []rec
			for _, r := range h.records {
				got = append(got, rec{r.Level, r.Message})
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("records %+v, want %+v", got, tt.want)
			}
		})
	}
	slogAdapter{}.Errorf("a nil logger discards")
}

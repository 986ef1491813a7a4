package storage

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// populate creates a closed database in dir with at least one SST and value-log data.
func populate(t *testing.T, dir string) {
	t.Helper()
	db, err := Open(testOpts(dir))
	if err != nil {
		t.Fatal(err)
	}
	ks := db.Keyspace("c")
	b := db.NewBatch()
	for i := range 4000 {
		if err := b.Set(ks, fmt.Appendf(nil, "k%05d", i), bytes.Repeat([]byte{byte(i)}, 300)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	set(t, db, ks, "big", string(make([]byte, 200<<10)))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func globOne(t *testing.T, dir, pattern string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(m) == 0 {
		names, _ := os.ReadDir(dir)
		t.Fatalf("no %s in %s (%v): %v", pattern, dir, err, names)
	}
	return m[0]
}

func TestCorrupt(t *testing.T) {
	garbage := bytes.Repeat([]byte("garbage!"), 64)
	tests := []struct {
		name    string
		corrupt func(t *testing.T, dir string)
	}{
		{"garbage MANIFEST", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "MANIFEST"), garbage, 0o600)
		}},
		{"truncated MANIFEST", func(t *testing.T, dir string) {
			os.Truncate(filepath.Join(dir, "MANIFEST"), 5)
		}},
		{"MANIFEST bad checksum", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "MANIFEST")
			b, _ := os.ReadFile(p)
			b[len(b)-1] ^= 0xff
			os.WriteFile(p, b, 0o600)
		}},
		{"truncated sst", func(t *testing.T, dir string) {
			p := globOne(t, dir, "*.sst")
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()-10)
		}},
		{"sst index bit flip", func(t *testing.T, dir string) {
			p := globOne(t, dir, "*.sst")
			b, _ := os.ReadFile(p)
			b[len(b)-200] ^= 0x01
			os.WriteFile(p, b, 0o600)
		}},
		{"garbage sst", func(t *testing.T, dir string) {
			os.WriteFile(globOne(t, dir, "*.sst"), garbage, 0o600)
		}},
		{"missing sst", func(t *testing.T, dir string) {
			os.Remove(globOne(t, dir, "*.sst"))
		}},
		{"garbage vlog", func(t *testing.T, dir string) {
			os.WriteFile(globOne(t, dir, "*.vlog"), garbage, 0o600)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			populate(t, dir)
			tt.corrupt(t, dir)
			db, err := Open(testOpts(dir))
			if err == nil {
				// Some damage is only found on read; it must still not panic.
				verr := db.View(func(tx *Txn) error {
					return tx.Iterate(db.Keyspace("c"), nil, func(k, v []byte) error { return nil })
				})
				db.Close()
				t.Fatalf("Open succeeded (read err %v), want ErrCorrupt", verr)
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open err = %v, want ErrCorrupt", err)
			}
		})
	}
}

package storage

import (
	"encoding/binary"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

func benchDB(b *testing.B, noSync bool) *DB {
	b.Helper()
	db, err := Open(Options{Dir: b.TempDir(), NoSync: noSync})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

var benchModes = []struct {
	name   string
	noSync bool
}{{"nosync", true}, {"sync", false}}

// BenchmarkUpdate writes one 100-byte value per storage.Update.
func BenchmarkUpdate(b *testing.B) {
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			db := benchDB(b, m.noSync)
			ks := db.Keyspace("bench")
			key, val := make([]byte, 8), make([]byte, 100)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				binary.BigEndian.PutUint64(key, uint64(i))
				if err := db.Update(func(tx *Txn) error { return tx.Set(ks, key, val) }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRawBadgerUpdate is the anchor for BenchmarkUpdate: the same write
// through badger.DB.Update with a pre-built key.
func BenchmarkRawBadgerUpdate(b *testing.B) {
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			db := benchDB(b, m.noSync)
			bdb := db.Badger()
			prefix := db.Keyspace("bench").pfx()
			key, val := make([]byte, len(prefix)+8), make([]byte, 100)
			copy(key, prefix)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				binary.BigEndian.PutUint64(key[len(prefix):], uint64(i))
				err := bdb.Update(func(tx *badger.Txn) error { return tx.Set(key, val) })
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGet reads one key per storage.View.
func BenchmarkGet(b *testing.B) {
	db := benchDB(b, true)
	ks := db.Keyspace("bench")
	key := []byte("k")
	if err := db.Update(func(tx *Txn) error { return tx.Set(ks, key, make([]byte, 100)) }); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := db.View(func(tx *Txn) error { _, err := tx.Get(ks, key); return err }); err != nil {
			b.Fatal(err)
		}
	}
}

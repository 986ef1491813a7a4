package storage

import (
	"bytes"
	"errors"
	mrand "math/rand/v2"
	"testing"
)

// TestReview12LastModel (held): Last against a model — the greatest key
// a forward Iterate gives under the same prefix — over random keys made
// of 0x00, 0x01, 0xfe and 0xff bytes (prefixes of each other, runs of
// 0xff where the successor is cut short), with keys in the keyspaces
// either side, committed, deleted and overwritten across versions, and
// inside an Update with the transaction's own pending sets and deletes
// (which also make Changed true; a view's reads never do).
func TestReview12LastModel(t *testing.T) {
	db := openT(t, testOpts(t.TempDir()))
	ks, before, after := db.Keyspace("m"), db.Keyspace("l"), db.Keyspace("n")
	rng := mrand.New(mrand.NewPCG(12, 12))
	alpha := []byte{0x00, 0x01, 0xfe, 0xff}
	randKey := func(max int) []byte {
		k := make([]byte, rng.IntN(max+1))
		for i := range k {
			k[i] = alpha[rng.IntN(len(alpha))]
		}
		return k
	}
	model := func(tx *Txn, prefix []byte) []byte {
		var last []byte
		if err := tx.Iterate(ks, prefix, func(k, _ []byte) error {
			last = append(last[:0], k...)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return last
	}
	check := func(tx *Txn, what string) {
		t.Helper()
		for range 40 {
			prefix := randKey(3)
			want := model(tx, prefix)
			k, v, err := tx.Last(ks, prefix)
			switch {
			case want == nil:
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("%s: Last(%x) = %x, %v; nothing under the prefix", what, prefix, k, err)
				}
			case err != nil:
				t.Fatalf("%s: Last(%x): %v, want %x", what, prefix, err, want)
			case !bytes.Equal(k, want):
				t.Fatalf("%s: Last(%x) = %x, want %x", what, prefix, k, want)
			default:
				got, err := tx.Get(ks, k)
				if err != nil || !bytes.Equal(got, v) {
					t.Fatalf("%s: Last(%x) value %x, Get %x %v", what, prefix, v, got, err)
				}
			}
		}
	}
	for round := range 30 {
		if err := db.Update(func(tx *Txn) error {
			for range 30 {
				k := randKey(5)
				switch rng.IntN(4) {
				case 0:
					if err := tx.Delete(ks, k); err != nil {
						return err
					}
				case 1:
					if err := tx.Set(before, k, []byte("b")); err != nil {
						return err
					}
					if err := tx.Set(after, k, []byte("a")); err != nil {
						return err
					}
				default:
					if err := tx.Set(ks, k, append([]byte{byte(round)}, k...)); err != nil {
						return err
					}
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := db.View(func(tx *Txn) error {
			check(tx, "view")
			if tx.Changed() {
				t.Fatal("a view changed")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		errAbort := errors.New("abort")
		if err := db.Update(func(tx *Txn) error {
			check(tx, "update, before writing")
			if tx.Changed() {
				t.Fatal("changed before writing")
			}
			for range 10 {
				k := randKey(5)
				if rng.IntN(2) == 0 {
					if err := tx.Delete(ks, k); err != nil {
						return err
					}
				} else if err := tx.Set(ks, k, []byte("pending")); err != nil {
					return err
				}
			}
			if !tx.Changed() {
				t.Fatal("not changed after writing")
			}
			check(tx, "update, pending writes")
			return errAbort
		}); !errors.Is(err, errAbort) {
			t.Fatal(err)
		}
	}
}

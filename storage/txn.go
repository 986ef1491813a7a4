package storage

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Txn is a transaction handed to the callback of DB.View or DB.Update. It is
// not safe for concurrent use and must not be used after the callback returns
// (calls then return ErrTxnDone).
//
// Keys may be empty. Values passed to Set are copied, so the caller may reuse
// its buffers at once.
type Txn struct {
	btx   *badger.Txn
	done  bool
	wrote bool // a Set happened: the commit needs free space
	// changed: a Set or Delete happened; what the transaction reads may
	// not be committed (Changed).
	changed bool
}

// Changed reports whether the transaction has set or deleted a key:
// until it commits, what it reads may hold writes that never will be.
// A cache of what the store holds fills only from transactions that
// have not.
func (t *Txn) Changed() bool { return t.changed }

func (t *Txn) finish() {
	t.done = true
	t.btx.Discard()
}

// Get returns a copy of the value stored under key in ks, or ErrNotFound.
func (t *Txn) Get(ks Keyspace, key []byte) ([]byte, error) {
	if t.done {
		return nil, ErrTxnDone
	}
	item, err := t.btx.Get(ks.key(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("storage: get: %w", err)
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, fmt.Errorf("storage: get: %w", err)
	}
	return v, nil
}

// Has reports whether key exists in ks.
func (t *Txn) Has(ks Keyspace, key []byte) (bool, error) {
	if t.done {
		return false, ErrTxnDone
	}
	_, err := t.btx.Get(ks.key(key))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, badger.ErrKeyNotFound):
		return false, nil
	}
	return false, fmt.Errorf("storage: has: %w", err)
}

// Set stores val under key in ks.
func (t *Txn) Set(ks Keyspace, key, val []byte) error {
	return t.set("set", badger.NewEntry(ks.key(key), bytes.Clone(val)))
}

// SetTTL stores val under key in ks; it disappears after ttl, which must be
// positive. Badger's expiry has one-second granularity: the key lives at least
// ttl and less than ttl+1s.
func (t *Txn) SetTTL(ks Keyspace, key, val []byte, ttl time.Duration) error {
	e, err := ttlEntry(ks, key, val, ttl)
	if err != nil {
		return fmt.Errorf("storage: set ttl: %w", err)
	}
	return t.set("set ttl", e)
}

// ttlEntry builds an entry expiring at the first whole second at or after
// now+ttl. Badger stores expiry in unix seconds and treats a key as gone once
// the current second reaches it, so plain WithTTL(ttl) could expire up to a
// second early.
func ttlEntry(ks Keyspace, key, val []byte, ttl time.Duration) (*badger.Entry, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("%w: non-positive ttl %v", ErrInvalidOptions, ttl)
	}
	return badger.NewEntry(ks.key(key), nonNil(bytes.Clone(val))).WithTTL(ttl + time.Second - time.Nanosecond), nil
}

func (t *Txn) set(op string, e *badger.Entry) error {
	if t.done {
		return ErrTxnDone
	}
	if e.Value == nil {
		e.Value = []byte{}
	}
	t.wrote, t.changed = true, true
	if err := t.btx.SetEntry(e); err != nil {
		return fmt.Errorf("storage: %s: %w", op, mapWriteErr(err))
	}
	return nil
}

// Delete removes key from ks; deleting a missing key is not an error.
func (t *Txn) Delete(ks Keyspace, key []byte) error {
	if t.done {
		return ErrTxnDone
	}
	t.changed = true
	if err := t.btx.Delete(ks.key(key)); err != nil {
		return fmt.Errorf("storage: delete: %w", mapWriteErr(err))
	}
	return nil
}

// Iterate calls fn for every key in ks that starts with prefix, in ascending
// byte order. fn receives the key without the keyspace prefix (but with
// prefix); key and val are valid only during the call: copy them to keep them.
// If fn returns ErrStop, iteration ends and Iterate returns nil; any other
// error ends it and is returned. In an Update, the iteration also sees the
// transaction's own pending writes.
func (t *Txn) Iterate(ks Keyspace, prefix []byte, fn func(key, val []byte) error) error {
	return t.IterateFrom(ks, prefix, nil, fn)
}

// IterateFrom is Iterate starting at the first key >= prefix+start.
func (t *Txn) IterateFrom(ks Keyspace, prefix, start []byte, fn func(key, val []byte) error) error {
	if t.done {
		return ErrTxnDone
	}
	full := ks.key(prefix)
	strip := len(ks.pfx())
	opt := badger.DefaultIteratorOptions
	opt.PrefetchValues = false // values are read in place during fn
	opt.Prefix = full
	it := t.btx.NewIterator(opt)
	defer it.Close()
	for it.Seek(ks.key(prefix, start)); it.ValidForPrefix(full); it.Next() {
		item := it.Item()
		key := item.Key()[strip:]
		err := item.Value(func(val []byte) error { return fn(key, val) })
		if errors.Is(err, ErrStop) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Last returns the greatest key in ks that starts with prefix (without
// the keyspace prefix, as Iterate gives it) and a copy of its value, or
// ErrNotFound: the newest entry of a log keyed by sequence, without
// reading the log. In an Update it sees the transaction's own writes.
func (t *Txn) Last(ks Keyspace, prefix []byte) (key, val []byte, err error) {
	if t.done {
		return nil, nil, ErrTxnDone
	}
	full := ks.key(prefix)
	opt := badger.DefaultIteratorOptions
	opt.PrefetchValues = false
	opt.Reverse = true // (no opt.Prefix: Valid would hide the successor below)
	it := t.btx.NewIterator(opt)
	defer it.Close()
	// In reverse, Seek finds the greatest key at or before its argument:
	// the first key after every key under full (full's successor).
	it.Seek(successor(full))
	if it.Valid() && !it.ValidForPrefix(full) && bytes.Compare(it.Item().Key(), full) > 0 {
		it.Next() // the successor itself
	}
	if !it.ValidForPrefix(full) {
		return nil, nil, ErrNotFound
	}
	item := it.Item()
	key = append([]byte(nil), item.Key()[len(ks.pfx()):]...)
	if val, err = item.ValueCopy(nil); err != nil {
		return nil, nil, fmt.Errorf("storage: last: %w", err)
	}
	return key, val, nil
}

// successor is the least key greater than every key starting with p.
// Keyspace prefixes never are all 0xff, so it always exists for keys.
func successor(p []byte) []byte {
	s := append([]byte(nil), p...)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] != 0xff {
			s[i]++
			return s[:i+1]
		}
	}
	return append(s, 0xff) // (no successor: as far as a key may reach in practice)
}

// Count returns how many keys in ks start with prefix. It reads keys only.
func (t *Txn) Count(ks Keyspace, prefix []byte) (int, error) {
	if t.done {
		return 0, ErrTxnDone
	}
	full := ks.key(prefix)
	opt := badger.DefaultIteratorOptions
	opt.PrefetchValues = false
	opt.Prefix = full
	it := t.btx.NewIterator(opt)
	defer it.Close()
	n := 0
	for it.Seek(full); it.ValidForPrefix(full); it.Next() {
		n++
	}
	return n, nil
}

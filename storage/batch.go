package storage

import (
	"bytes"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Batch writes many keys fast (Badger WriteBatch): writes are split into
// transactions and committed in the background as they fill, without conflict
// detection, so it suits bulk ingest, not read-modify-write. Nothing is
// guaranteed to be durable until Flush returns nil. A Batch is not safe for
// concurrent use; after Flush or Cancel its methods return ErrClosed. Close
// cancels batches that were never flushed.
type Batch struct {
	db *DB
	wb *badger.WriteBatch
}

// NewBatch starts a batch. Errors surface from its methods (ErrClosed if the DB
// is closed).
func (db *DB) NewBatch() *Batch {
	b := &Batch{db: db}
	if err := db.begin(); err != nil {
		return b // wb nil: every method reports ErrClosed
	}
	defer db.end()
	b.wb = db.bdb.NewWriteBatch()
	db.mu.Lock()
	db.batches[b] = struct{}{}
	db.mu.Unlock()
	return b
}

// use runs f while holding the DB open, failing if the batch is finished or
// the DB closed.
func (b *Batch) use(op string, f func() error) error {
	if err := b.db.begin(); err != nil {
		return fmt.Errorf("storage: batch %s: %w", op, err)
	}
	defer b.db.end()
	b.db.mu.Lock()
	_, open := b.db.batches[b]
	b.db.mu.Unlock()
	if b.wb == nil || !open {
		return fmt.Errorf("storage: batch %s: %w", op, ErrClosed)
	}
	if err := f(); err != nil {
		return fmt.Errorf("storage: batch %s: %w", op, mapWriteErr(err))
	}
	return nil
}

// forget removes b from the DB's set of open batches; it reports whether b
// was still open.
func (b *Batch) forget() bool {
	b.db.mu.Lock()
	defer b.db.mu.Unlock()
	_, open := b.db.batches[b]
	delete(b.db.batches, b)
	return open
}

// Set queues val (copied) under key in ks.
func (b *Batch) Set(ks Keyspace, key, val []byte) error {
	return b.use("set", func() error {
		if err := b.db.checkSpace(); err != nil {
			return err
		}
		return b.wb.Set(ks.key(key), nonNil(bytes.Clone(val)))
	})
}

// SetTTL queues val (copied) under key in ks, expiring after ttl (see Txn.SetTTL).
func (b *Batch) SetTTL(ks Keyspace, key, val []byte, ttl time.Duration) error {
	e, err := ttlEntry(ks, key, val, ttl)
	if err != nil {
		return fmt.Errorf("storage: batch set ttl: %w", err)
	}
	return b.use("set ttl", func() error {
		if err := b.db.checkSpace(); err != nil {
			return err
		}
		return b.wb.SetEntry(e)
	})
}

// Delete queues the deletion of key in ks.
func (b *Batch) Delete(ks Keyspace, key []byte) error {
	return b.use("delete", func() error { return b.wb.Delete(ks.key(key)) })
}

// Flush commits everything queued and waits for it; the batch is then finished.
func (b *Batch) Flush() error {
	return b.use("flush", func() error {
		b.forget()
		if err := b.wb.Flush(); err != nil {
			return err
		}
		return b.db.syncCommitted()
	})
}

// Cancel discards the batch and waits for its background commits. Writes
// already committed in the background are not rolled back. Cancel after Flush,
// Cancel twice, or Cancel after Close do nothing.
func (b *Batch) Cancel() {
	if b.wb == nil || b.db.begin() != nil {
		return
	}
	defer b.db.end()
	if b.forget() {
		b.wb.Cancel()
	}
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

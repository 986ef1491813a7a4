package storage

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Sequence hands out monotonically increasing uint64 IDs, starting at 1, that
// stay increasing across reopen. IDs are leased from the database in blocks of
// 1000 (badger.DB.GetSequence); Release (or Close) returns the unused part of
// the lease, and after a crash the unused part is skipped, leaving a gap. It is
// safe for concurrent use. Two Sequences with the same keyspace and name must
// not be open at once.
type Sequence struct {
	db  *DB
	seq *badger.Sequence
}

// Sequence opens the sequence called name in ks. Sequences are stored apart
// from ks's keys: they never appear in its iteration.
func (db *DB) Sequence(ks Keyspace, name string) (*Sequence, error) {
	if err := db.begin(); err != nil {
		return nil, fmt.Errorf("storage: sequence: %w", err)
	}
	defer db.end()
	bs, err := db.bdb.GetSequence(sequenceKey(ks, name), sequenceLease)
	if err != nil {
		return nil, fmt.Errorf("storage: sequence %q: %w", name, mapWriteErr(err))
	}
	s := &Sequence{db: db, seq: bs}
	db.mu.Lock()
	db.seqs[s] = struct{}{}
	db.mu.Unlock()
	return s, nil
}

// Next returns the next ID. It writes only when a new lease is needed, and
// does not wait for that write to be synced: the lease is committed before
// any ID of it is handed out, so the synced commit that stores an ID (or
// Sync) makes its lease durable too.
func (s *Sequence) Next() (uint64, error) {
	if err := s.hold(); err != nil {
		return 0, fmt.Errorf("storage: sequence next: %w", err)
	}
	defer s.db.end()
	n, err := s.seq.Next()
	if err != nil {
		return 0, fmt.Errorf("storage: sequence next: %w", mapWriteErr(err))
	}
	return n + 1, nil // Badger's sequences start at 0; 0 is reserved for "no ID"
}

// Release returns the unused lease to the database; the Sequence is then
// finished (Next returns ErrClosed). Releasing twice is a no-op.
func (s *Sequence) Release() error {
	if err := s.db.begin(); err != nil {
		return nil // Close already released it
	}
	defer s.db.end()
	s.db.mu.Lock()
	_, open := s.db.seqs[s]
	delete(s.db.seqs, s)
	s.db.mu.Unlock()
	if !open {
		return nil
	}
	if err := s.seq.Release(); err != nil {
		return fmt.Errorf("storage: sequence release: %w", mapWriteErr(err))
	}
	return nil
}

// hold registers a call in flight on an open sequence.
func (s *Sequence) hold() error {
	if err := s.db.begin(); err != nil {
		return err
	}
	s.db.mu.Lock()
	_, open := s.db.seqs[s]
	s.db.mu.Unlock()
	if !open {
		s.db.end()
		return ErrClosed
	}
	return nil
}

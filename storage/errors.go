package storage

import "errors"

var (
	// ErrNotFound is returned by Txn.Get when the key does not exist (or expired).
	ErrNotFound = errors.New("storage: not found")

	// ErrStop may be returned by an iteration callback to end the iteration early;
	// Iterate then returns nil.
	ErrStop = errors.New("storage: stop iteration")

	// ErrLocked is returned by Open when the directory is in use by another DB,
	// in this process or another one (Badger's directory flock).
	ErrLocked = errors.New("storage: database directory is locked by another user")

	// ErrCorrupt is returned by Open when the on-disk files (MANIFEST, key
	// registry, tables, value log) cannot be read.
	ErrCorrupt = errors.New("storage: database is corrupt")

	// ErrBadKey is returned by Open when the encryption key is not the key the
	// database was created with (including a missing key for an encrypted
	// database) or has an invalid length (AES needs 16, 24 or 32 bytes).
	ErrBadKey = errors.New("storage: wrong or invalid encryption key")

	// ErrClosed is returned by every operation on a DB (and on its batches and
	// sequences) after Close.
	ErrClosed = errors.New("storage: database closed")

	// ErrDiskFull is returned when a write or commit failed because the
	// filesystem is out of space (ENOSPC).
	ErrDiskFull = errors.New("storage: disk full")

	// ErrTxnTooBig is returned when a transaction holds more writes than fit in
	// one memtable batch; split the work or use a Batch.
	ErrTxnTooBig = errors.New("storage: transaction too big")

	// ErrConflict is returned by Update when its transaction kept conflicting
	// with concurrent ones after several retries.
	ErrConflict = errors.New("storage: transaction conflict")

	// ErrTxnDone is returned when a Txn is used after its View or Update
	// callback has returned.
	ErrTxnDone = errors.New("storage: transaction already finished")

	// ErrInvalidOptions is returned by Open for an unusable Options value.
	ErrInvalidOptions = errors.New("storage: invalid options")
)

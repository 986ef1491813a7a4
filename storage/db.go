package storage

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// DB is an open store. It is safe for concurrent use.
type DB struct {
	bdb *badger.DB

	dir     string       // for free-space checks; "" in memory
	reserve int64        // bytes of free space writes never eat into
	gs      *groupSyncer // nil: commits are not synced (NoSync, InMemory)
	maxTxn  int64        // Badger's batch limit: bytes one transaction may write

	retryMu sync.Mutex // serializes Update attempts that already conflicted several times

	mu      sync.Mutex // guards the fields below
	idle    sync.Cond  // signalled when active drops to zero; L is &mu
	closed  bool
	active  int // calls in flight (transactions, batch ops, sequence ops, GC)
	batches map[*Batch]struct{}
	seqs    map[*Sequence]struct{}
}

// Open opens (creating if needed) the database described by opts. It starts
// only Badger's own background goroutines, which Close stops.
//
// Errors wrap ErrLocked, ErrCorrupt, ErrBadKey, ErrDiskFull or ErrInvalidOptions
// where they apply.
func Open(opts Options) (db *DB, err error) {
	bo, err := opts.badgerOptions()
	if err != nil {
		return nil, fmt.Errorf("storage: open: %w", err)
	}
	// Badger panics on some malformed files (y.Check in table and manifest
	// code) in the calling goroutine; report those as corruption.
	defer func() {
		if r := recover(); r != nil {
			db = nil
			err = fmt.Errorf("storage: open %q: %w: badger panicked: %v", opts.Dir, ErrCorrupt, r)
		}
	}()
	if !opts.InMemory {
		if err := checkTables(opts.Dir); err != nil {
			return nil, fmt.Errorf("storage: open %q: %w", opts.Dir, err)
		}
	}
	bdb, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("storage: open %q: %w", opts.Dir, classifyOpenErr(err))
	}
	db = newDB(bdb)
	db.maxTxn = bo.MemTableSize * 15 / 100
	if !opts.InMemory {
		db.dir, db.reserve = opts.Dir, opts.reserve(bo.MemTableSize)
		if !opts.NoSync {
			logs := &logFiles{dir: opts.Dir, done: map[string]bool{}}
			db.gs = newGroupSyncer(func() error {
				if err := bdb.Sync(); err != nil {
					return fmt.Errorf("storage: sync: %w", mapWriteErr(err))
				}
				return logs.sync()
			})
		}
	}
	return db, nil
}

func newDB(bdb *badger.DB) *DB {
	db := &DB{
		bdb:     bdb,
		batches: make(map[*Batch]struct{}),
		seqs:    make(map[*Sequence]struct{}),
	}
	db.idle.L = &db.mu
	return db
}

// classifyOpenErr maps a badger.Open error to our sentinels. Badger wraps most
// errors with fmt's %+v (y.Wrap outside its debug mode), which drops the error
// chain, so this falls back to matching Badger's messages.
func classifyOpenErr(err error) error {
	msg := err.Error()
	switch {
	case errors.Is(err, badger.ErrEncryptionKeyMismatch),
		errors.Is(err, badger.ErrInvalidEncryptionKey),
		strings.Contains(msg, badger.ErrEncryptionKeyMismatch.Error()):
		return fmt.Errorf("%w: %v", ErrBadKey, err)
	case strings.Contains(msg, "Cannot acquire directory lock"):
		return fmt.Errorf("%w: %v", ErrLocked, err)
	case isDiskFull(err):
		return fmt.Errorf("%w: %v", ErrDiskFull, err)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM),
		strings.Contains(msg, "permission denied"):
		return err
	case isCorruptMsg(msg):
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return err
}

// corruptMarkers are fragments of Badger's errors for unreadable files.
var corruptMarkers = []string{
	"manifest", "checksum", "magic", "corrupt", "truncate", "EOF",
	"key registry", "keyregistry", "datakey", "sanity text",
	"table", "vlog", "value log", "memtable", "while opening", "invalid",
	"unsupported version", "unable to read", "unexpected", "index",
}

func isCorruptMsg(msg string) bool {
	lower := strings.ToLower(msg)
	for _, m := range corruptMarkers {
		if strings.Contains(lower, strings.ToLower(m)) {
			return true
		}
	}
	return false
}

func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), "no space left on device")
}

// mapWriteErr maps Badger errors from writes and commits.
func mapWriteErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, badger.ErrTxnTooBig):
		return fmt.Errorf("%w: %v", ErrTxnTooBig, err)
	case isDiskFull(err):
		return fmt.Errorf("%w: %v", ErrDiskFull, err)
	case errors.Is(err, badger.ErrDBClosed), errors.Is(err, badger.ErrBlockedWrites):
		return fmt.Errorf("%w: %v", ErrClosed, err)
	}
	return err
}

// begin registers a call in flight; it fails once Close has started.
func (db *DB) begin() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closed {
		return ErrClosed
	}
	db.active++
	return nil
}

func (db *DB) end() {
	db.mu.Lock()
	db.active--
	if db.active == 0 {
		db.idle.Broadcast()
	}
	db.mu.Unlock()
}

// Close waits for calls in flight, cancels unflushed batches, releases
// sequences (returning their unused leases) and closes Badger. It is
// idempotent: later calls return nil. Calling Close from inside a View or
// Update callback deadlocks.
func (db *DB) Close() error {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return nil
	}
	db.closed = true
	for db.active > 0 {
		db.idle.Wait()
	}
	batches, seqs := db.batches, db.seqs
	db.batches, db.seqs = nil, nil
	db.mu.Unlock()

	for b := range batches {
		b.wb.Cancel()
	}
	var errs []error
	for s := range seqs {
		if err := s.seq.Release(); err != nil {
			errs = append(errs, fmt.Errorf("storage: close: release sequence: %w", err))
		}
	}
	if db.gs != nil {
		db.gs.close()
	}
	if err := db.bdb.Close(); err != nil {
		errs = append(errs, fmt.Errorf("storage: close: %w", err))
	}
	return errors.Join(errs...)
}

// Update runs fn in a read-write transaction and commits it if fn returns nil.
// On a write conflict (another transaction changed a key fn read) fn is run
// again, up to a few times, so fn must not have side effects outside the Txn.
// The Txn must not be used after fn returns, and fn must not call Update
// itself (a nested Update could wait for its own caller).
func (db *DB) Update(fn func(*Txn) error) error {
	return db.update(fn, true)
}

// UpdateNoSync is Update without waiting for the commit to be durable:
// it returns once the transaction is committed and visible, and the next
// sync (any Update's, or Sync) makes it durable. It is for writes whose
// loss in a crash costs nothing that the crash did not already cost —
// a call's signal, whose call ends with the daemon anyway; a delivered
// job's outcome, whose loss only sends the job again — and that sit on a
// path where a sync would be felt (a call's setup, the outbox). Never for
// anything a later network message depends on having been kept.
func (db *DB) UpdateNoSync(fn func(*Txn) error) error {
	return db.update(fn, false)
}

func (db *DB) update(fn func(*Txn) error, sync bool) error {
	if err := db.begin(); err != nil {
		return fmt.Errorf("storage: update: %w", err)
	}
	defer db.end()
	var err error
	for attempt := range conflictRetries {
		if attempt > 0 {
			// Jittered, growing backoff so that the transactions racing for a hot
			// key do not collide again in the same group commit.
			time.Sleep(time.Duration(rand.Int64N(int64(attempt) * int64(conflictBackoff))))
		}
		if attempt >= conflictSerialAfter {
			// Repeated losers take turns, so one of them wins each round
			// instead of all of them colliding again.
			db.retryMu.Lock()
			err = db.updateOnce(fn, sync)
			db.retryMu.Unlock()
		} else {
			err = db.updateOnce(fn, sync)
		}
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("storage: update: %w after %d attempts: %v", ErrConflict, conflictRetries, err)
}

func (db *DB) updateOnce(fn func(*Txn) error, sync bool) error {
	t := &Txn{btx: db.bdb.NewTransaction(true)}
	defer t.finish()
	if err := fn(t); err != nil {
		return err
	}
	if t.wrote {
		if err := db.checkSpace(); err != nil {
			return err
		}
	}
	if err := t.btx.Commit(); err != nil {
		if errors.Is(err, badger.ErrConflict) {
			return err
		}
		return fmt.Errorf("storage: commit: %w", mapWriteErr(err))
	}
	if t.wrote && sync {
		return db.syncCommitted()
	}
	return nil
}

// syncCommitted returns once everything committed so far is durable: it
// waits for a group sync (groupsync.go) that started after the call.
func (db *DB) syncCommitted() error {
	if db.gs == nil {
		return nil
	}
	return db.gs.wait()
}

// Sync makes every committed write durable. Update, Batch.Flush and
// Sequence do it themselves; Sync is for writes made through Badger
// directly.
func (db *DB) Sync() error {
	if err := db.begin(); err != nil {
		return fmt.Errorf("storage: sync: %w", err)
	}
	defer db.end()
	return db.syncCommitted()
}

// Syncs returns how many group syncs the store has run (0 for a store
// that does not sync): for tests and metrics.
func (db *DB) Syncs() int64 {
	if db.gs == nil {
		return 0
	}
	return db.gs.syncs.Load()
}

// View runs fn in a read-only transaction that sees a consistent snapshot.
// The Txn must not be used after fn returns.
func (db *DB) View(fn func(*Txn) error) error {
	if err := db.begin(); err != nil {
		return fmt.Errorf("storage: view: %w", err)
	}
	defer db.end()
	t := &Txn{btx: db.bdb.NewTransaction(false)}
	defer t.finish()
	return fn(t)
}

// RunGC runs Badger's value-log garbage collection every interval until ctx is
// done (it then returns nil) or the DB is closed (ErrClosed). Each round
// rewrites value-log files while at least half of a file is garbage. For an
// in-memory DB it only waits for ctx.
func (db *DB) RunGC(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return fmt.Errorf("storage: gc: %w: interval %v", ErrInvalidOptions, interval)
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := db.gcRound(ctx); err != nil {
			return err
		}
	}
}

func (db *DB) gcRound(ctx context.Context) error {
	if err := db.begin(); err != nil {
		return fmt.Errorf("storage: gc: %w", err)
	}
	defer db.end()
	for ctx.Err() == nil {
		err := db.bdb.RunValueLogGC(0.5)
		switch {
		case err == nil:
			continue // a file was rewritten; try the next one
		case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected),
			errors.Is(err, badger.ErrGCInMemoryMode):
			return nil
		default:
			return fmt.Errorf("storage: gc: %w", mapWriteErr(err))
		}
	}
	return nil
}

// Badger returns the underlying Badger database, for benchmarks and tools.
// Keys written through it bypass keyspaces; Close still belongs to DB.
func (db *DB) Badger() *badger.DB { return db.bdb }

// MaxTxnBytes is about how many bytes (keys, values and per-entry
// overhead) one transaction may write before it fails with ErrTxnTooBig:
// 15% of a memtable. Callers that put many records in one transaction
// keep well under it.
func (db *DB) MaxTxnBytes() int64 { return db.maxTxn }

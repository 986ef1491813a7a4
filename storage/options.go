package storage

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Defaults for the Badger settings this package fixes. Badger's own defaults
// (64 MiB memtables ×5, 256 MiB block cache, 1 GiB value-log files) suit a
// server with one database; Peergram opens several per process and runs on
// desktops, so the budget here is a few tens of MiB per DB.
const (
	// DefaultMemTableSize is the memtable size used when Options.MemTableSize is 0.
	DefaultMemTableSize = 16 << 20 // 16 MiB

	// minMemTableSize keeps Badger's derived batch limit (15% of a memtable)
	// large enough for ordinary transactions.
	minMemTableSize = 1 << 20 // 1 MiB

	numMemtables        = 2                // one being written, one being flushed
	blockCacheSize      = 8 << 20          // 8 MiB; required by Badger with compression or encryption
	indexCacheSize      = 4 << 20          // 4 MiB; keeps table indexes (decrypted) out of the Go heap
	maxValueLogFileSize = 64 << 20         // value-log files: 4 memtables, at most 64 MiB (Badger: 1 GiB)
	valueThreshold      = 1 << 20          // Badger's default: values up to 1 MiB stay in the LSM tree
	numCompactors       = 2                // Badger's minimum above zero
	conflictRetries     = 16               // attempts of an Update's fn on badger.ErrConflict
	conflictBackoff     = time.Millisecond // per attempt, jittered
	conflictSerialAfter = 3                // attempts after which retries of different Updates take turns
	sequenceLease       = 1000             // IDs leased per Sequence transaction
)

// Options configures Open. The zero value is not usable: set Dir or InMemory.
type Options struct {
	// Dir is the database directory, created if missing. Required unless InMemory.
	Dir string

	// InMemory keeps everything in memory and writes nothing to disk. Tests only.
	InMemory bool

	// EncryptionKey enables Badger's AES encryption at rest when it is 16, 24 or
	// 32 bytes long (AES-128/192/256). nil means plaintext. A database created
	// with a key can only be opened with the same key (else ErrBadKey).
	EncryptionKey []byte

	// NoSync skips syncing commits. By default (false) a commit returns
	// only once it is on disk, and concurrent commits share one sync (group
	// commit; see groupsync.go: Badger's own SyncWrites syncs once per
	// transaction, so the store does not use it).
	NoSync bool

	// Logger receives Badger's logs: its warnings and errors at Warn and
	// Error, its informational lines at Debug (so a daemon logging at Info
	// sees no Badger noise); a message of several lines is logged as its
	// first line, the whole text following at Debug. nil discards them.
	Logger *slog.Logger

	// MemTableSize is the size in bytes of each of the two memtables; it also
	// bounds a transaction (Badger caps a commit batch at 15% of it, see
	// ErrTxnTooBig). 0 means DefaultMemTableSize (16 MiB); values below 1 MiB
	// are raised to 1 MiB. Value-log files are 4×MemTableSize (at most 64 MiB),
	// which also bounds the size of one value.
	MemTableSize int64

	// MinFreeBytes is the free space (bytes) on Dir's filesystem below which
	// writes are refused with ErrDiskFull (deletes still work), because
	// Badger crashes the process on a truly full disk. 0 means 2 value-log
	// files + 4 memtables + 16 MiB (44 MiB with the default memtable);
	// negative disables the check.
	MinFreeBytes int64

	// NoCompression turns off Badger's block compression (Snappy by
	// default). Stores that hold ciphertext, such as a relay's mailboxes,
	// set it: encrypted bytes do not compress, so compression only costs
	// CPU on every write and every block read.
	NoCompression bool

	// ValueThreshold is the size above which a value is kept in the value
	// log rather than in the LSM tree's tables; 0 means 1 MiB (Badger's
	// default), capped at 15% of a memtable. A small threshold keeps the
	// tables (and the memory Badger uses to build them) small when most
	// values are large: the tables then hold keys and value pointers.
	// Value-log space of deleted values comes back only through RunGC.
	ValueThreshold int64

	// TableSize is the size of the tables compactions write (Badger's
	// BaseTableSize); 0 means Badger's 2 MiB. Badger builds each table in
	// memory and keeps up to eight build buffers for reuse, each about
	// twice this size or a memtable's, whichever is larger: a small value
	// bounds that memory.
	TableSize int64
}

// badgerOptions translates o into Badger's options.
func (o Options) badgerOptions() (badger.Options, error) {
	if o.InMemory && o.Dir != "" {
		return badger.Options{}, fmt.Errorf("%w: both Dir and InMemory set", ErrInvalidOptions)
	}
	if !o.InMemory && o.Dir == "" {
		return badger.Options{}, fmt.Errorf("%w: Dir is required", ErrInvalidOptions)
	}
	switch len(o.EncryptionKey) {
	case 0, 16, 24, 32:
	default:
		return badger.Options{}, fmt.Errorf("%w: key length %d, want 16, 24 or 32", ErrBadKey, len(o.EncryptionKey))
	}
	if o.MemTableSize < 0 {
		return badger.Options{}, fmt.Errorf("%w: negative MemTableSize", ErrInvalidOptions)
	}
	mt := o.MemTableSize
	if mt == 0 {
		mt = DefaultMemTableSize
	}
	mt = max(mt, minMemTableSize)
	// Badger rejects a ValueThreshold above its batch limit (15% of a memtable).
	vt := int64(valueThreshold)
	if o.ValueThreshold > 0 {
		vt = o.ValueThreshold
	}
	vt = min(vt, mt*15/100)

	bo := badger.DefaultOptions(o.Dir).
		WithInMemory(o.InMemory).
		WithSyncWrites(false). // the store syncs commits itself, in groups

		WithLogger(slogAdapter{o.Logger}).
		WithMemTableSize(mt).
		WithNumMemtables(numMemtables).
		WithBlockCacheSize(blockCacheSize).
		WithIndexCacheSize(indexCacheSize).
		WithValueLogFileSize(min(4*mt, maxValueLogFileSize)).
		WithValueThreshold(vt).
		WithNumCompactors(numCompactors).
		WithMetricsEnabled(false).
		WithDetectConflicts(true)
	if o.TableSize > 0 {
		bo = bo.WithBaseTableSize(o.TableSize)
	}
	if o.NoCompression {
		bo = bo.WithCompression(options.None)
	}
	if len(o.EncryptionKey) > 0 {
		key := make([]byte, len(o.EncryptionKey))
		copy(key, o.EncryptionKey)
		bo = bo.WithEncryptionKey(key)
	}
	return bo, nil
}

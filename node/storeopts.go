package node

import (
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"github.com/peergram/peergram/storage"
)

// A desktop daemon's store. Badger's defaults suit a server: measured here
// (peergram-bench D4), a daemon that had sent 20,000 messages held ~500 MiB
// of heap, nearly all of it buffers Badger keeps (up to eight, each up to
// 400 MiB) after building tables from 16 MiB memtables. So the node keeps
// values over 512 bytes (message records, sessions, jobs, envelopes) in
// the value log, and its tables hold keys and value pointers: small
// tables, small build buffers. Memtables of 4 MiB still take a
// transaction of ~600 KiB, more than a message at the size limit writes.
// Compression is off: most of what the store holds is ciphertext or sits
// in the value log, which Badger does not compress.
const (
	storeMemTable       = 4 << 20
	storeValueThreshold = 4 << 10
	storeTableSize      = 512 << 10

	// DefaultGCInterval is how often the node garbage-collects its
	// store's value log (outbox jobs and superseded records leave garbage
	// there).
	DefaultGCInterval = 5 * time.Minute
)

func storeOptions(dir string, log *slog.Logger) storage.Options {
	return storage.Options{Dir: dir, Logger: log, MemTableSize: storeMemTable, ValueThreshold: storeValueThreshold, TableSize: storeTableSize}
}

// MemoryLimit is the soft limit on the Go runtime's memory a daemon
// process sets (runtime/debug.SetMemoryLimit) unless GOMEMLIMIT is set:
// the garbage collector works harder as the process nears it instead of
// letting the heap grow to twice what is live.
const MemoryLimit = 120 << 20

// ApplyMemoryLimit sets MemoryLimit for the process unless the GOMEMLIMIT
// environment variable already chose one. Daemon binaries call it once at
// start; the node package itself changes nothing process-wide.
func ApplyMemoryLimit() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(MemoryLimit)
	}
}

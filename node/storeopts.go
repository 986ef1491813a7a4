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
// of heap with 16 MiB memtables, nearly all of it table-build buffers
// Badger keeps for reuse (up to eight, each about a memtable or twice a
// table in size, kept up to 400 MiB). Tried on D4 (anonymous RSS after
// 100,000 messages; store bytes per message beyond the text, sender):
// 2 MiB memtables, 512 KiB tables, Snappy: 113 MiB, 979 B, but D2 at
// ~1,500 msg/s; 8 MiB, 1 MiB, no compression: 107 MiB, 1,250 B, D2
// ~3,800; 8 MiB, 1 MiB, Snappy: 186 MiB, 1,036 B; 4 MiB, 512 KiB, Snappy
// with values over 4 KiB in the value log (these): 84-107 MiB, 1,029-1,281 B,
// D2 ~2,300-2,700. Sessions (~30 KiB, rewritten once per batch) fill the
// value log with garbage its GC reclaims late; with the threshold at 64
// KiB they stay in the tables (888-1,048 B) but the tables churn: the
// node's soak test then failed 3 times in ~20 runs under load with
// messages handed over and not yet stored at the end of its wait (a
// suspected Badger L0 write stall), never with 4 KiB. Long messages go to
// the value log, so they do not fill the small memtables; its garbage is
// collected every DefaultGCInterval. A 4 MiB memtable takes a transaction of ~600 KiB
// (batches stay under half), more than a message at the size limit writes.
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

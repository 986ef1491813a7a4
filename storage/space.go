package storage

import (
	"fmt"
	"syscall"
)

// Badger maps its memtable and table files into memory. When the disk fills
// up, a write through such a mapping raises SIGBUS and kills the process —
// no error reaches the caller (seen on a full tmpfs with Badger v4.9.6). So
// the package refuses new writes while the free space of the directory's
// filesystem is below a reserve large enough for Badger's own flushes and
// compactions to finish; deletes still go through, so space can be freed.

// reserve returns the free bytes a DB with these options keeps untouched:
// two value-log files, the memtables and the tables they flush to, plus
// margin for compaction.
func (o Options) reserve(memTable int64) int64 {
	if o.MinFreeBytes != 0 {
		return max(o.MinFreeBytes, 0)
	}
	vlog := min(4*memTable, maxValueLogFileSize)
	return 2*vlog + 4*memTable + 16<<20
}

// freeBytes reports the bytes available to this process on dir's
// filesystem.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// checkSpace returns ErrDiskFull when a write would eat into the reserve.
func (db *DB) checkSpace() error {
	if db.dir == "" || db.reserve <= 0 {
		return nil
	}
	free, err := freeBytes(db.dir)
	if err != nil {
		return fmt.Errorf("storage: free space of %s: %w", db.dir, err)
	}
	if free < db.reserve {
		return fmt.Errorf("%w: %d bytes free on %s, %d kept in reserve", ErrDiskFull, free, db.dir, db.reserve)
	}
	return nil
}

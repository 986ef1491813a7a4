package blobs

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// blobFiles keeps blobs' bytes as files, one per blob, named by the hex
// of its hash under a directory of its first byte; references, tokens and
// expiry stay in Badger.
//
// Why files and not Badger's value log: Badger v4 writes and reads its
// value log through memory maps, so a store that took a 1 GB file kept
// ~1 GB of its pages resident in the process (a daemon sending a 1 GB
// file peaked at 1,075 MiB RSS, TestFileResumeAfterKill). Files written
// and read with plain I/O leave those pages to the kernel's cache,
// outside the process, and a deleted blob's space comes back at once
// instead of at the value log's next garbage collection.
//
// A blob file is written to a temporary name, synced and renamed, before
// its reference is committed; a reference is deleted before its file. A
// crash in between leaves a file no reference names: NewServer removes
// those.
type blobFiles struct{ dir string }

func (f blobFiles) path(h [32]byte) string {
	x := hex.EncodeToString(h[:])
	return filepath.Join(f.dir, x[:2], x)
}

func (f blobFiles) exists(h [32]byte) (bool, error) {
	_, err := os.Stat(f.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// write stores data as h's file, unless it is there already (written
// tells). With sync the file is synced before it gets its name;
// without, the caller calls sync before it names the file anywhere.
func (f blobFiles) write(h [32]byte, data []byte, sync bool) (written bool, err error) {
	p := f.path(h)
	if ok, err := f.exists(h); err != nil || ok {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return false, fmt.Errorf("blobs: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".new-*")
	if err != nil {
		return false, fmt.Errorf("blobs: %w", err)
	}
	_, err = tmp.Write(data)
	if err == nil && sync {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return false, fmt.Errorf("blobs: write: %w", err)
	}
	return true, nil
}

// sync makes every file written (and renamed) so far durable: one
// syncfs(2) of the store's file system for a batch, instead of one fsync
// per blob.
func (f blobFiles) sync() error {
	d, err := os.Open(f.dir)
	if err != nil {
		return fmt.Errorf("blobs: %w", err)
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("blobs: sync: %w", err)
	}
	return nil
}

// read returns length bytes (0: to the end) of h's file from offset, and
// its size.
func (f blobFiles) read(h [32]byte, offset, length uint64) ([]byte, uint64, error) {
	fh, err := os.Open(f.path(h))
	if err != nil {
		return nil, 0, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, 0, err
	}
	size := uint64(st.Size())
	if offset > size {
		return nil, size, errOffset
	}
	end := size
	if length > 0 && length < size-offset { // (no offset+length: it can overflow)
		end = offset + length
	}
	b := make([]byte, end-offset)
	if _, err := fh.ReadAt(b, int64(offset)); err != nil && !errors.Is(err, io.EOF) {
		return nil, size, err
	}
	return b, size, nil
}

var errOffset = errors.New("blobs: offset past the end")

func (f blobFiles) remove(h [32]byte) error {
	if err := os.Remove(f.path(h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blobs: %w", err)
	}
	return nil
}

// sweepOrphans removes blob files (and temporaries) no reference names.
func (f blobFiles) sweepOrphans(referenced func([32]byte) bool) (int, error) {
	n := 0
	err := filepath.WalkDir(f.dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		var h [32]byte
		raw, derr := hex.DecodeString(d.Name())
		if derr == nil && len(raw) == 32 {
			copy(h[:], raw)
			if referenced(h) {
				return nil
			}
		}
		n++
		return os.Remove(p)
	})
	return n, err
}

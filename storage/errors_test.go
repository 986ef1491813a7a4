package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// A real full disk needs a small mounted filesystem (root); these cases check
// the mapping of the errors Badger returns then, including its habit of
// flattening wrapped errors into strings (y.Wrap outside debug mode).
func TestErrorMapping(t *testing.T) {
	pathErr := &fs.PathError{Op: "write", Path: "000001.vlog", Err: syscall.ENOSPC}
	tests := []struct {
		name  string
		err   error
		write error // want from mapWriteErr
		open  error // want from classifyOpenErr
	}{
		{"enospc", pathErr, ErrDiskFull, ErrDiskFull},
		{"enospc flattened", fmt.Errorf("while writing: err: %+v", pathErr), ErrDiskFull, ErrDiskFull},
		{"txn too big", badger.ErrTxnTooBig, ErrTxnTooBig, nil},
		{"db closed", badger.ErrDBClosed, ErrClosed, nil},
		{"key mismatch", fmt.Errorf("wrapped: %w", badger.ErrEncryptionKeyMismatch), nil, ErrBadKey},
		{"lock", fmt.Errorf(`Cannot acquire directory lock on "/x".  Another process is using this Badger database. err: %v`, syscall.EWOULDBLOCK), nil, ErrLocked},
		{"bad magic", errors.New("manifest has bad magic"), nil, ErrCorrupt},
		{"permission", &fs.PathError{Op: "open", Path: "MANIFEST", Err: syscall.EACCES}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct {
				what string
				got  error
				want error
			}{
				{"mapWriteErr", mapWriteErr(tt.err), tt.write},
				{"classifyOpenErr", classifyOpenErr(tt.err), tt.open},
			} {
				for _, s := range []error{ErrDiskFull, ErrTxnTooBig, ErrClosed, ErrBadKey, ErrLocked, ErrCorrupt} {
					if is := errors.Is(c.got, s); is != (s == c.want) {
						t.Errorf("%s(%v) = %v: errors.Is(%v) = %v", c.what, tt.err, c.got, s, is)
					}
				}
			}
		})
	}
}

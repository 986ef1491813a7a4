package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/badger/v4/y"
)

// checkTables verifies the footer and index checksum of every SST in dir
// before Badger opens them. Badger opens tables in goroutines of its own and
// panics (uncatchably) on a malformed footer; a table whose index checksum
// matches was written by Badger, so the rest of its parsing is safe.
//
// Table footer (badger/v4/table/builder.go, read back by table.initIndex):
//
//	blocks | index | u32 len(index) | checksum (pb.Checksum) | u32 len(checksum)
func checkTables(dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := checkTable(f); err != nil {
			return fmt.Errorf("%w: table %s: %v", ErrCorrupt, filepath.Base(f), err)
		}
	}
	return nil
}

func checkTable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	pos := st.Size()
	readU32 := func() (int64, error) {
		if pos < 4 {
			return 0, io.ErrUnexpectedEOF
		}
		pos -= 4
		var b [4]byte
		if _, err := f.ReadAt(b[:], pos); err != nil {
			return 0, err
		}
		return int64(binary.BigEndian.Uint32(b[:])), nil
	}
	readN := func(n int64) ([]byte, error) {
		if n > pos {
			return nil, fmt.Errorf("length %d exceeds the %d bytes before it", n, pos)
		}
		pos -= n
		b := make([]byte, n)
		if _, err := f.ReadAt(b, pos); err != nil {
			return nil, err
		}
		return b, nil
	}
	chkLen, err := readU32()
	if err != nil {
		return err
	}
	chkBytes, err := readN(chkLen)
	if err != nil {
		return err
	}
	chk, err := parseChecksum(chkBytes)
	if err != nil {
		return err
	}
	idxLen, err := readU32()
	if err != nil {
		return err
	}
	idx, err := readN(idxLen)
	if err != nil {
		return err
	}
	if chk.Algo != pb.Checksum_CRC32C && chk.Algo != pb.Checksum_XXHash64 {
		return fmt.Errorf("unknown checksum algorithm %d", chk.Algo)
	}
	return y.VerifyChecksum(idx, chk)
}

// parseChecksum decodes the protobuf message pb.Checksum{Algo: 1 varint,
// Sum: 2 varint}; it is written by hand to avoid a direct protobuf dependency.
func parseChecksum(b []byte) (*pb.Checksum, error) {
	chk := &pb.Checksum{}
	for len(b) > 0 {
		tag, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, errors.New("bad checksum tag")
		}
		b = b[n:]
		if tag&7 != 0 { // only varint fields exist in pb.Checksum
			return nil, fmt.Errorf("bad checksum wire type %d", tag&7)
		}
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, errors.New("bad checksum varint")
		}
		b = b[n:]
		switch tag >> 3 {
		case 1:
			chk.Algo = pb.Checksum_Algorithm(v)
		case 2:
			chk.Sum = v
		}
	}
	return chk, nil
}

package node

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/peergram/peergram/crypto/sealed"
)

// FuzzReadFrame: the direct protocol's frame decoder never panics, never
// returns more than the bound, and round-trips what writeFrame wrote.
func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	_ = writeFrame(&buf, []byte("hello"))
	f.Add(buf.Bytes())
	f.Add(binary.AppendUvarint(nil, sealed.MaxEnvelopeSize+1))
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := readFrame(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		if len(b) > sealed.MaxEnvelopeSize {
			t.Fatalf("frame of %d bytes accepted", len(b))
		}
		if !bytes.Contains(data, b) {
			t.Fatal("frame payload not taken from the input")
		}
	})
}

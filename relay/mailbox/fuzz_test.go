package mailbox

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzDecodeFrame feeds arbitrary bytes to the frame decoder of every
// message type: it must return an error or a message that re-encodes to
// an equal message, never panic, and never consume more than it was given.
func FuzzDecodeFrame(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(appendFrame(nil, m))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, max := range []int{controlFrameMax, DefaultMaxEnvelopeSize + frameOverhead} {
			m, n, err := decodeFrame(b, max)
			if err != nil {
				continue
			}
			if n > len(b) || n < headerSize {
				t.Fatalf("consumed %d of %d", n, len(b))
			}
			if m == nil { // unknown optional frame
				if b[4] < byte(optionalFrame) {
					t.Fatalf("nil message for mandatory type 0x%02x", b[4])
				}
				continue
			}
			again, _, err := decodeFrame(appendFrame(nil, m), max+len(b))
			if err != nil {
				t.Fatalf("re-decode of %#v: %v", m, err)
			}
			if !reflect.DeepEqual(normalize(again), normalize(m)) {
				t.Fatalf("round trip: %#v != %#v", again, m)
			}
		}
	})
}

// FuzzFrameReader reads a stream of frames as a server or client does.
func FuzzFrameReader(f *testing.F) {
	var all []byte
	for _, m := range sampleMessages() {
		all = appendFrame(all, m)
	}
	f.Add(all)
	f.Add(appendFrame(appendFrame(nil, rawMsg{0x99, []byte("x")}), &drainedMsg{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := newFrameReader(bytes.NewReader(b), 512)
		for range 1000 {
			if _, err := fr.next(controlFrameMax); err != nil {
				return
			}
		}
	})
}

// normalize makes empty and nil envelope slices compare equal.
func normalize(m message) message {
	switch m := m.(type) {
	case *depositMsg:
		c := *m
		if len(c.Envelope) == 0 {
			c.Envelope = nil
		}
		return &c
	case *deliveryMsg:
		c := *m
		if len(c.Envelope) == 0 {
			c.Envelope = nil
		}
		return &c
	case *ackMsg:
		if len(m.IDs) == 0 {
			return &ackMsg{}
		}
	case *nackMsg:
		if len(m.IDs) == 0 {
			return &nackMsg{}
		}
	}
	return m
}

// TestWriteFuzzCorpus writes the committed seed corpora with -update.
func TestWriteFuzzCorpus(t *testing.T) {
	if !*update {
		// The committed corpus must exist; the fuzz targets run it as tests.
		for _, dir := range []string{"FuzzDecodeFrame", "FuzzFrameReader"} {
			ents, err := os.ReadDir(filepath.Join("testdata", "fuzz", dir))
			if err != nil || len(ents) == 0 {
				t.Fatalf("missing seed corpus testdata/fuzz/%s (run with -update): %v", dir, err)
			}
		}
		return
	}
	var seeds [][]byte
	for _, m := range sampleMessages() {
		seeds = append(seeds, appendFrame(nil, m))
	}
	seeds = append(seeds,
		[]byte{0, 0, 0, 0, 1},
		[]byte{0xff, 0xff, 0xff, 0xff, 1},
		appendFrame(nil, rawMsg{0x99, []byte("future")}),
		appendFrame(nil, rawMsg{byte(typeAck), []byte{0x04, 0x01}}),
		appendFrame(nil, rawMsg{byte(typeDeposit), append(make([]byte, 48), 0xff, 0xff, 0xff, 0xff)}),
	)
	var stream []byte
	for _, s := range seeds {
		stream = append(stream, s...)
	}
	write := func(dir string, i int, b []byte) {
		d := filepath.Join("testdata", "fuzz", dir)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("seed-%02d", i)), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range seeds {
		write("FuzzDecodeFrame", i, s)
	}
	write("FuzzFrameReader", 0, stream)
	write("FuzzFrameReader", 1, seeds[len(seeds)-3])
}

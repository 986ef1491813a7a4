package protoframe

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

func bound(t uint8) (int, bool) {
	if t == 1 {
		return 8, true
	}
	return 0, false
}

// TestRead: frames round-trip; an unknown type, an oversized body (before
// it is read), an empty or truncated frame are refused.
func TestRead(t *testing.T) {
	body := AppendVarint(AppendBytes(nil, 1, []byte("ab")), 2, 7)
	typ, got, err := Read(bytes.NewReader(Frame(1, body)), bound)
	if err != nil || typ != 1 || !bytes.Equal(got, body) {
		t.Fatalf("round trip: %d %x %v", typ, got, err)
	}
	var seen []string
	if err := Fields(got, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		seen = append(seen, string(v)+string(rune('0'+x)))
		return nil
	}); err != nil || len(seen) != 2 || seen[0] != "ab0" || seen[1] != "7" {
		t.Fatalf("fields %q %v", seen, err)
	}
	for name, c := range map[string]struct {
		b    []byte
		want error
	}{
		"unknown type": {Frame(2, nil), ErrMalformed},
		"oversized":    {Frame(1, make([]byte, 9))[:HeaderSize], ErrTooLarge},
		"empty":        {[]byte{0, 0, 0, 0, 1}, ErrMalformed},
		"truncated":    {Frame(1, []byte("abcd"))[:7], ErrMalformed},
	} {
		if _, _, err := Read(bytes.NewReader(c.b), bound); !errors.Is(err, c.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := Fields([]byte{0x0a, 0x05, 'a'}, func(protowire.Number, protowire.Type, []byte, uint64) error { return nil }); !errors.Is(err, ErrMalformed) {
		t.Errorf("a truncated field: %v", err)
	}
}

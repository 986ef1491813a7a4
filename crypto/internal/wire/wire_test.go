package wire

import (
	"bytes"
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	w := NewWriter(0)
	w.Byte(7)
	w.Uint32(1 << 30)
	w.Uint64(1 << 60)
	w.Fixed([]byte("abc"))
	w.Var([]byte("hello"))
	r := NewReader(w.Bytes())
	if r.Byte() != 7 || r.Uint32() != 1<<30 || r.Uint64() != 1<<60 {
		t.Fatal("integers differ")
	}
	if !bytes.Equal(r.Fixed(3), []byte("abc")) || !bytes.Equal(r.Var(5), []byte("hello")) {
		t.Fatal("bytes differ")
	}
	if err := r.Finish(); err != nil {
		t.Fatal(err)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		read func(r *Reader)
		want error
	}{
		{"truncated int", []byte{1, 2}, func(r *Reader) { r.Uint32() }, ErrTruncated},
		{"too long", []byte{0, 0, 0, 9, 1}, func(r *Reader) { r.Var(8) }, ErrTooLong},
		{"short var", []byte{0, 0, 0, 4, 1}, func(r *Reader) { r.Var(8) }, ErrTruncated},
		{"trailing", []byte{1, 2}, func(r *Reader) { r.Byte() }, ErrTrailing},
		{"hostile count", []byte{0, 0, 0, 200}, func(r *Reader) { r.Count(1000, 32) }, ErrTruncated},
		{"count over max", []byte{0, 0, 0, 200}, func(r *Reader) { r.Count(10, 0) }, ErrTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(tt.in)
			tt.read(r)
			if err := r.Finish(); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

package fields

import (
	"errors"
	"testing"
)

var errShort = errors.New("short")

func TestReader(t *testing.T) {
	r := NewReader([]byte{1, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 4, 'a', 'b'}, errShort)
	if r.U8() != 1 || r.U16() != 2 || r.U32() != 3 || r.U64() != 4 {
		t.Fatal("integers differ")
	}
	var two [2]byte
	r.Fixed(two[:])
	if string(two[:]) != "ab" || r.Err() != nil || r.Len() != 0 {
		t.Fatalf("fixed %q err %v len %d", two, r.Err(), r.Len())
	}
	if r.U8() != 0 || !errors.Is(r.Err(), errShort) {
		t.Fatalf("reading past the end: %v", r.Err())
	}
	r.Fail(errors.New("later"))
	if !errors.Is(r.Err(), errShort) {
		t.Fatal("the first error must stick")
	}
}

func TestTakeBounds(t *testing.T) {
	for _, n := range []int{-1, 4} {
		r := NewReader([]byte{1, 2, 3}, errShort)
		if v := r.Take(n); v != nil || !errors.Is(r.Err(), errShort) {
			t.Errorf("Take(%d) = %v, %v", n, v, r.Err())
		}
	}
	r := NewReader([]byte{1, 2, 3}, errShort)
	v := r.Take(2)
	if cap(v) != 2 {
		t.Fatalf("Take must cap the slice so appends cannot reach the rest: cap %d", cap(v))
	}
}

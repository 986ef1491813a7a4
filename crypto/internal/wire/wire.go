// Package wire is the tiny binary codec shared by Peergram's crypto
// packages: fixed-width big-endian integers and length-prefixed byte
// strings with a caller-chosen bound. It exists so that every decoder of
// untrusted bytes fails the same way (an error, never a panic, never an
// allocation larger than the input allows).
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrTruncated reports input that ended before a field was complete.
var ErrTruncated = errors.New("wire: truncated input")

// ErrTooLong reports a length prefix above the field's bound.
var ErrTooLong = errors.New("wire: field too long")

// ErrTrailing reports bytes left over after the last field.
var ErrTrailing = errors.New("wire: trailing bytes")

// Writer appends fields to a byte slice. The zero value is ready to use.
type Writer struct {
	buf []byte
}

// NewWriter returns a Writer whose buffer has room for n bytes.
func NewWriter(n int) *Writer { return &Writer{buf: make([]byte, 0, n)} }

// Bytes returns the encoded bytes.
func (w *Writer) Bytes() []byte { return w.buf }

// Byte appends one byte.
func (w *Writer) Byte(b byte) { w.buf = append(w.buf, b) }

// Uint32 appends v big-endian.
func (w *Writer) Uint32(v uint32) { w.buf = binary.BigEndian.AppendUint32(w.buf, v) }

// Uint64 appends v big-endian.
func (w *Writer) Uint64(v uint64) { w.buf = binary.BigEndian.AppendUint64(w.buf, v) }

// Fixed appends b with no length prefix; the reader must know its size.
func (w *Writer) Fixed(b []byte) { w.buf = append(w.buf, b...) }

// Var appends b with a 4-byte big-endian length prefix.
func (w *Writer) Var(b []byte) {
	w.Uint32(uint32(len(b)))
	w.buf = append(w.buf, b...)
}

// Reader consumes fields from a byte slice. The first error sticks: later
// calls return zero values and Err reports the first failure, so a decoder
// can read every field and check once at the end.
type Reader struct {
	buf []byte
	err error
}

// NewReader returns a Reader over b. It does not copy b; Fixed and Var
// return copies, so the result never aliases the input.
func NewReader(b []byte) *Reader { return &Reader{buf: b} }

// Err returns the first error met, if any.
func (r *Reader) Err() error { return r.err }

// Len returns the number of unread bytes.
func (r *Reader) Len() int { return len(r.buf) }

func (r *Reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.buf) {
		r.err = ErrTruncated
		return nil
	}
	b := r.buf[:n:n]
	r.buf = r.buf[n:]
	return b
}

// Byte reads one byte.
func (r *Reader) Byte() byte {
	b := r.take(1)
	if b == nil {
		return 0
	}
	return b[0]
}

// Uint32 reads a big-endian uint32.
func (r *Reader) Uint32() uint32 {
	b := r.take(4)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

// Uint64 reads a big-endian uint64.
func (r *Reader) Uint64() uint64 {
	b := r.take(8)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// Fixed reads exactly n bytes and returns a copy.
func (r *Reader) Fixed(n int) []byte {
	b := r.take(n)
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

// FixedInto fills dst from the input.
func (r *Reader) FixedInto(dst []byte) {
	b := r.take(len(dst))
	if b != nil {
		copy(dst, b)
	}
}

// Var reads a length-prefixed field of at most max bytes and returns a copy.
func (r *Reader) Var(max int) []byte {
	n := r.Uint32()
	if r.err != nil {
		return nil
	}
	if uint64(n) > uint64(max) {
		r.err = fmt.Errorf("%w: %d > %d", ErrTooLong, n, max)
		return nil
	}
	b := r.take(int(n))
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// Count reads a uint32 element count and checks it against max. It also
// checks that at least n*minSize bytes remain, so a hostile count cannot
// make the caller allocate more than the input could describe.
func (r *Reader) Count(max, minSize int) int {
	n := r.Uint32()
	if r.err != nil {
		return 0
	}
	if uint64(n) > uint64(max) {
		r.err = fmt.Errorf("%w: count %d > %d", ErrTooLong, n, max)
		return 0
	}
	if minSize > 0 && uint64(n)*uint64(minSize) > uint64(len(r.buf)) {
		r.err = ErrTruncated
		return 0
	}
	return int(n)
}

// Finish returns the first error, or ErrTrailing if input is left over.
func (r *Reader) Finish() error {
	if r.err != nil {
		return r.err
	}
	if len(r.buf) != 0 {
		return fmt.Errorf("%w: %d bytes", ErrTrailing, len(r.buf))
	}
	return nil
}

// Package fields reads the big-endian fields of a relay protocol frame
// body. The mailbox and directory codecs share it so that every decoder of
// untrusted bytes fails the same way: the first error sticks, nothing past
// the input is read, and a decoder can read every field and check once.
package fields

import "encoding/binary"

// Reader consumes fields from one body. Byte slices it returns alias the
// body. Not safe for concurrent use.
type Reader struct {
	b         []byte
	err       error
	truncated error
}

// NewReader returns a Reader over b; truncated is the error reported when
// a field runs past the end (each protocol wraps its own sentinel).
func NewReader(b []byte, truncated error) *Reader {
	return &Reader{b: b, truncated: truncated}
}

// Err returns the first error met, if any.
func (r *Reader) Err() error { return r.err }

// Fail records err unless an error is already recorded.
func (r *Reader) Fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// Len returns the number of unread bytes.
func (r *Reader) Len() int { return len(r.b) }

// Rest returns the unread bytes without consuming them.
func (r *Reader) Rest() []byte { return r.b }

// Take returns the next n bytes, or nil once an error is recorded.
func (r *Reader) Take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = r.truncated
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// Fixed fills dst from the body.
func (r *Reader) Fixed(dst []byte) {
	if v := r.Take(len(dst)); v != nil {
		copy(dst, v)
	}
}

// U8 reads one byte.
func (r *Reader) U8() byte {
	if v := r.Take(1); v != nil {
		return v[0]
	}
	return 0
}

// U16 reads a big-endian uint16.
func (r *Reader) U16() uint16 {
	if v := r.Take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

// U32 reads a big-endian uint32.
func (r *Reader) U32() uint32 {
	if v := r.Take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

// U64 reads a big-endian uint64.
func (r *Reader) U64() uint64 {
	if v := r.Take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

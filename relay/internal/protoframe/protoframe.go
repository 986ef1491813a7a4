// Package protoframe is the framing the relay's request/answer protocols
// share: frames `length:u32 | type:u8 | body` whose body is in protobuf
// wire format, read with a bound per type checked before the body is
// read, and bodies walked field by field with unknown fields skipped (so
// later minor versions can append fields). Each protocol keeps its own
// frame types, field numbers and bounds.
package protoframe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protowire"
)

// HeaderSize is a frame's length and type.
const HeaderSize = 5

// probe is what Read takes of a body before it allocates the rest.
const probe = 64 << 10

// ErrMalformed reports bytes that are not a valid frame or body.
var ErrMalformed = errors.New("malformed frame")

// ErrTooLarge reports a frame over its type's bound.
var ErrTooLarge = errors.New("frame too large")

// Frame returns header and body of one frame.
func Frame(t uint8, body []byte) []byte {
	out := make([]byte, HeaderSize, HeaderSize+len(body))
	binary.BigEndian.PutUint32(out, uint32(1+len(body)))
	out[4] = t
	return append(out, body...)
}

// Write writes one frame whose body is the concatenation of parts,
// without copying them into one buffer first.
func Write(w io.Writer, t uint8, parts ...[]byte) error {
	n := 1
	for _, p := range parts {
		n += len(p)
	}
	hdr := binary.BigEndian.AppendUint32(make([]byte, 0, HeaderSize), uint32(n))
	hdr = append(hdr, t)
	if len(parts) > 0 && len(parts[0]) < 64 {
		hdr, parts = append(hdr, parts[0]...), parts[1:]
	}
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// Read reads one frame whose type bound accepts (returning its bound in
// bytes and true), refusing a body over the bound before reading it.
func Read(r io.Reader, bound func(t uint8) (int, bool)) (uint8, []byte, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	t := hdr[4]
	if n < 1 {
		return 0, nil, fmt.Errorf("%w: empty frame", ErrMalformed)
	}
	max, ok := bound(t)
	if !ok {
		return 0, nil, fmt.Errorf("%w: unexpected frame type 0x%02x", ErrMalformed, t)
	}
	if int64(n-1) > int64(max) {
		return 0, nil, fmt.Errorf("%w: %d bytes (at most %d)", ErrTooLarge, n-1, max)
	}
	// Not allocated as declared before bytes come: a peer that sends a
	// header and stalls would pin the declared size (review finding: 48
	// five-byte headers pinned 48 MiB). The first probe bytes are read
	// into a small buffer; only then is the whole body allocated (one
	// allocation, no regrowth), so a staller pins at most 16 × what it
	// sent.
	size := int(n - 1)
	first := min(size, probe)
	head := make([]byte, first)
	if _, err := io.ReadFull(r, head); err != nil {
		return 0, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if size == first {
		return t, head, nil
	}
	body := make([]byte, size)
	copy(body, head)
	if _, err := io.ReadFull(r, body[first:]); err != nil {
		return 0, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return t, body, nil
}

// Fields walks a body, calling fn for each varint (x) and bytes (v)
// field; fields of other wire types are skipped.
func Fields(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %v", ErrMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("%w: %v", ErrMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.VarintType && typ != protowire.BytesType {
			continue
		}
		if err := fn(num, typ, v, x); err != nil {
			return err
		}
	}
	return nil
}

// AppendBytes appends a bytes field.
func AppendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// AppendVarint appends a varint field.
func AppendVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

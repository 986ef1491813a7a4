package ratchet

import (
	"fmt"

	"github.com/peergram/peergram/crypto/internal/wire"
)

// MessageVersion is the version byte that starts every message.
const MessageVersion = 1

// HeaderSize is the size of an encoded header: version byte, DH public key,
// PN and N.
const HeaderSize = 1 + 32 + 4 + 4

// tagSize is the AES-GCM tag size.
const tagSize = 16

// Overhead is how many bytes Encrypt adds to a plaintext: header and tag.
const Overhead = HeaderSize + tagSize

// Header is a message header (spec §3.1 HEADER): the sender's current ratchet
// public key, the length of its previous sending chain and the message
// number in the current one.
type Header struct {
	DH [32]byte
	PN uint32
	N  uint32
}

// writeHeader appends the encoded header (layout in doc.go).
func writeHeader(w *wire.Writer, h *Header) {
	w.Byte(MessageVersion)
	w.Fixed(h.DH[:])
	w.Uint32(h.PN)
	w.Uint32(h.N)
}

// ParseMessage splits a message produced by Encrypt into its header and
// ciphertext. The ciphertext aliases b. It checks only the layout; the header
// is authenticated when Decrypt opens the ciphertext.
func ParseMessage(b []byte) (Header, []byte, error) {
	var h Header
	if len(b) == 0 {
		return h, nil, fmt.Errorf("%w: empty message", ErrMalformed)
	}
	if b[0] != MessageVersion {
		return h, nil, fmt.Errorf("%w: message version %d", ErrUnknownVersion, b[0])
	}
	if len(b) < Overhead {
		return h, nil, fmt.Errorf("%w: message of %d bytes, need at least %d", ErrMalformed, len(b), Overhead)
	}
	r := wire.NewReader(b[:HeaderSize])
	r.Byte()
	r.FixedInto(h.DH[:])
	h.PN = r.Uint32()
	h.N = r.Uint32()
	if err := r.Finish(); err != nil { // unreachable: the length was checked
		return Header{}, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return h, b[HeaderSize:], nil
}

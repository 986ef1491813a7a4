package sealed

import (
	"fmt"
	"math/bits"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/internal/wire"
)

// Kind says how an envelope's body is protected. Append-only.
type Kind byte

const (
	// KindPrekey carries a sealed PQXDH initial message and ratchet message.
	KindPrekey Kind = 1
	// KindMessage carries a ratchet message of an established session.
	KindMessage Kind = 2
)

// SessionID names one direction of a session for the receiver's lookup.
type SessionID [16]byte

// MessageID names a message end to end; receivers drop repeats.
type MessageID [16]byte

// Bounds.
const (
	// MaxBodySize is the largest plaintext body a message may carry. Larger
	// content (files, media) travels as encrypted blobs referenced from a
	// message.
	MaxBodySize = 192 << 10
	// MaxEnvelopeSize bounds a whole envelope on decode: the padded
	// plaintext of the largest body (at most 12 % over it, Padmé) plus the
	// prekey layer.
	MaxEnvelopeSize = MaxBodySize + MaxBodySize/8 + 8<<10
	// MaxSeenIDs is how many recent message IDs a session remembers. The
	// ring is written with the session after every batch a device opens,
	// so it stays small (16 bytes an ID, 4 KiB in all): a caller that must
	// reject duplicates over a longer span keeps its own record (the node
	// keeps every sender and ID for 60 days).
	MaxSeenIDs = 256
	// legacySeenIDs is the ring's size before it shrank: a stored session
	// may hold this many, of which the newest MaxSeenIDs are kept.
	legacySeenIDs = 2000
	// MaxFutureSkew is how far (ms) a timestamp may run ahead of the
	// receiver's clock.
	MaxFutureSkew = 10 * 60 * 1000
	// MaxAge is how old (ms) a message may be when it arrives: the relay
	// TTL (30 days) plus margin.
	MaxAge = 45 * 24 * 3600 * 1000

	// version is the envelope and plaintext format. Version 2 added the
	// recipient to the plaintext and to the ratchet's associated data, and
	// padding; version 1 envelopes are refused.
	version = 2

	// minPadded is the smallest padded plaintext: every short text looks
	// the same size.
	minPadded = 256
)

// Envelope is the decoded outer layer: what a relay can see.
type Envelope struct {
	Kind      Kind
	Recipient identity.DeviceID
	SessionID SessionID // KindMessage only
	SealKey   [32]byte  // KindPrekey only
	Body      []byte    // KindPrekey: sealed layer; KindMessage: ratchet message
}

func (e *Envelope) header() []byte {
	w := wire.NewWriter(66)
	w.Byte(version)
	w.Byte(byte(e.Kind))
	w.Fixed(e.Recipient[:])
	if e.Kind == KindPrekey {
		w.Fixed(e.SealKey[:])
	}
	return w.Bytes()
}

// MarshalBinary encodes the envelope.
func (e *Envelope) MarshalBinary() ([]byte, error) {
	w := wire.NewWriter(2 + 32 + 32 + 4 + len(e.Body))
	w.Byte(version)
	w.Byte(byte(e.Kind))
	w.Fixed(e.Recipient[:])
	switch e.Kind {
	case KindPrekey:
		w.Fixed(e.SealKey[:])
		w.Var(e.Body)
	case KindMessage:
		w.Fixed(e.SessionID[:])
		w.Fixed(e.Body)
	default:
		return nil, fmt.Errorf("%w: kind %d", ErrMalformed, e.Kind)
	}
	return w.Bytes(), nil
}

// ParseEnvelope decodes the outer layer of an envelope. It authenticates
// nothing; Unseal and Session.Open do.
func ParseEnvelope(data []byte) (*Envelope, error) {
	if len(data) > MaxEnvelopeSize {
		return nil, fmt.Errorf("%w: envelope of %d bytes", ErrTooLarge, len(data))
	}
	r := wire.NewReader(data)
	v := r.Byte()
	if r.Err() == nil && v != version {
		return nil, fmt.Errorf("%w: envelope version %d", ErrUnknownVersion, v)
	}
	e := &Envelope{Kind: Kind(r.Byte())}
	r.FixedInto(e.Recipient[:])
	switch {
	case r.Err() != nil:
	case e.Kind == KindPrekey:
		r.FixedInto(e.SealKey[:])
		e.Body = r.Var(MaxEnvelopeSize)
	case e.Kind == KindMessage:
		r.FixedInto(e.SessionID[:])
		e.Body = r.Fixed(r.Len())
	default:
		return nil, fmt.Errorf("%w: envelope kind %d", ErrMalformed, e.Kind)
	}
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("%w: envelope: %w", ErrMalformed, err)
	}
	return e, nil
}

// Message is the plaintext of an envelope.
type Message struct {
	ID              MessageID
	Sender          identity.AccountID // filled in by Seal from the session
	Device          identity.DeviceID  // filled in by Seal from the session
	Recipient       identity.AccountID // filled in by Seal from the session
	RecipientDevice identity.DeviceID  // filled in by Seal from the session
	Timestamp       int64              // unix milliseconds, set by the sender
	Body            []byte
}

// plaintextHeader is the size of a plaintext before its body.
const plaintextHeader = 1 + 16 + 4*32 + 8 + 4

// PaddedSize is the size of the plaintext a body of n bytes travels in:
// Padmé (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files
// and Communication with PURBs", PETS 2019, §4) over the whole plaintext,
// at least minPadded. Padmé leaks O(log log L) bits of the length and adds
// at most 12 % overhead.
func PaddedSize(n int) int { return padme(max(plaintextHeader+n, minPadded)) }

func padme(l int) int {
	if l < 2 {
		return l
	}
	e := bits.Len(uint(l)) - 1 // floor(log2 l)
	s := bits.Len(uint(e))     // floor(log2 e) + 1
	mask := (1 << (e - s)) - 1 // low bits to clear
	return (l + mask) &^ mask
}

func (m *Message) marshal() []byte {
	size := PaddedSize(len(m.Body))
	w := wire.NewWriter(size)
	w.Byte(version)
	w.Fixed(m.ID[:])
	w.Fixed(m.Sender[:])
	w.Fixed(m.Device[:])
	w.Fixed(m.Recipient[:])
	w.Fixed(m.RecipientDevice[:])
	w.Uint64(uint64(m.Timestamp))
	w.Var(m.Body)
	w.Fixed(make([]byte, size-len(w.Bytes())))
	return w.Bytes()
}

func parseMessage(data []byte) (Message, error) {
	r := wire.NewReader(data)
	var m Message
	if v := r.Byte(); r.Err() == nil && v != version {
		return m, fmt.Errorf("%w: plaintext version %d", ErrUnknownVersion, v)
	}
	r.FixedInto(m.ID[:])
	r.FixedInto(m.Sender[:])
	r.FixedInto(m.Device[:])
	r.FixedInto(m.Recipient[:])
	r.FixedInto(m.RecipientDevice[:])
	m.Timestamp = int64(r.Uint64())
	m.Body = r.Var(MaxBodySize)
	pad := r.Fixed(r.Len())
	if err := r.Finish(); err != nil {
		return Message{}, fmt.Errorf("%w: plaintext: %w", ErrMalformed, err)
	}
	if len(data) != PaddedSize(len(m.Body)) || !allZero(pad) {
		return Message{}, fmt.Errorf("%w: plaintext padding", ErrMalformed)
	}
	return m, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

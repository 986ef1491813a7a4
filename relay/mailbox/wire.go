package mailbox

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/peergram/peergram/relay/internal/fields"
)

// frameType is the first byte after a frame's length. Wire enum:
// append-only, never renumber. Types at or above optionalFrame may be
// skipped by a receiver that does not know them; unknown types below it
// are a protocol error.
type frameType uint8

const (
	typeDeposit   frameType = 0x01 // C→S deposit stream
	typeResult    frameType = 0x02 // S→C deposit stream
	typeSubscribe frameType = 0x03 // C→S opens a subscribe stream
	typeChallenge frameType = 0x04 // S→C
	typeAuth      frameType = 0x05 // C→S
	typeDelivery  frameType = 0x06 // S→C
	typeAck       frameType = 0x07 // C→S
	typeNack      frameType = 0x08 // C→S
	typeDrained   frameType = 0x09 // S→C backlog sent; what follows is live
	typeError     frameType = 0x0a // S→C then the stream closes

	optionalFrame frameType = 0x80

	// Optional frames: a receiver that does not know them skips them.
	typeTokens frameType = 0x80 // C→S subscribe stream, after Auth
)

const (
	headerSize = 5 // length:u32 + type:u8

	// frameOverhead is what a frame adds around an envelope; the
	// hard frame bound is MaxEnvelopeSize + frameOverhead.
	frameOverhead = 1024

	// maxMessageLen bounds the human-readable text of Result and Error.
	maxMessageLen = 512

	// maxIDsPerAck bounds the IDs of one Ack or Nack frame.
	maxIDsPerAck = 1024

	// controlFrameMax bounds frames that never carry an envelope (the
	// client side of a subscribe stream, Results).
	controlFrameMax = headerSize + 2 + maxIDsPerAck*16 + frameOverhead

	// clientFrameCeiling bounds what a Client accepts whatever the relay
	// announces, so a hostile relay cannot make it allocate more.
	clientFrameCeiling = 64 << 20

	addressSize   = 32
	idSize        = 16
	nonceSize     = 32
	signatureSize = 64
	tokenSize     = 16

	// MaxTokens is the most delivery tokens a mailbox has registered at
	// once.
	MaxTokens = 4
)

// Deposit flags (the optional flags byte after the token). Append-only.
const (
	// flagUnordered: Results on this stream may come in any order; the
	// client matches them by envelope ID. A relay reads it from the first
	// Deposit of a stream; older relays ignore it and answer in order.
	flagUnordered uint8 = 1 << 0
)

// message is one decoded frame body.
type message interface {
	frameType() frameType
	appendBody(b []byte) []byte
}

type depositMsg struct {
	To       Address
	ID       EnvelopeID
	Envelope []byte
	Token    Token // zero: none
	Flags    uint8 // flag* bits
}

type resultMsg struct {
	ID      EnvelopeID
	Code    Code
	Message string
}

type subscribeMsg struct{}

type challengeMsg struct {
	Nonce       [nonceSize]byte
	Window      uint32
	MaxEnvelope uint32
}

type authMsg struct {
	Address   Address
	Signature [signatureSize]byte
}

type deliveryMsg struct {
	ID        EnvelopeID
	Deposited int64 // unix nanoseconds
	Envelope  []byte
}

type ackMsg struct{ IDs []EnvelopeID }

type nackMsg struct{ IDs []EnvelopeID }

type drainedMsg struct{}

// tokensMsg replaces the delivery tokens registered for the subscriber's
// mailbox (none: clear them).
type tokensMsg struct{ Tokens []Token }

type errorMsg struct {
	Code    Code
	Message string
}

func (*depositMsg) frameType() frameType   { return typeDeposit }
func (*resultMsg) frameType() frameType    { return typeResult }
func (*subscribeMsg) frameType() frameType { return typeSubscribe }
func (*challengeMsg) frameType() frameType { return typeChallenge }
func (*authMsg) frameType() frameType      { return typeAuth }
func (*deliveryMsg) frameType() frameType  { return typeDelivery }
func (*ackMsg) frameType() frameType       { return typeAck }
func (*nackMsg) frameType() frameType      { return typeNack }
func (*drainedMsg) frameType() frameType   { return typeDrained }
func (*errorMsg) frameType() frameType     { return typeError }
func (*tokensMsg) frameType() frameType    { return typeTokens }

func (m *depositMsg) appendBody(b []byte) []byte {
	b = append(b, m.To[:]...)
	b = append(b, m.ID[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Envelope)))
	b = append(b, m.Envelope...)
	if m.Token == (Token{}) && m.Flags == 0 {
		return b // the 1.0.0 layout, byte for byte
	}
	b = append(b, m.Token[:]...)
	return append(b, m.Flags)
}

func (m *resultMsg) appendBody(b []byte) []byte {
	b = append(b, m.ID[:]...)
	b = append(b, byte(m.Code))
	return appendText(b, m.Message)
}

func (*subscribeMsg) appendBody(b []byte) []byte { return b }

func (m *challengeMsg) appendBody(b []byte) []byte {
	b = append(b, m.Nonce[:]...)
	b = binary.BigEndian.AppendUint32(b, m.Window)
	return binary.BigEndian.AppendUint32(b, m.MaxEnvelope)
}

func (m *authMsg) appendBody(b []byte) []byte {
	b = append(b, m.Address[:]...)
	return append(b, m.Signature[:]...)
}

func (m *deliveryMsg) appendBody(b []byte) []byte {
	b = append(b, m.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Deposited))
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Envelope)))
	return append(b, m.Envelope...)
}

func (m *ackMsg) appendBody(b []byte) []byte  { return appendIDs(b, m.IDs) }
func (m *nackMsg) appendBody(b []byte) []byte { return appendIDs(b, m.IDs) }

func (*drainedMsg) appendBody(b []byte) []byte { return b }

func (m *tokensMsg) appendBody(b []byte) []byte {
	b = append(b, byte(len(m.Tokens)))
	for i := range m.Tokens {
		b = append(b, m.Tokens[i][:]...)
	}
	return b
}

func (m *errorMsg) appendBody(b []byte) []byte {
	b = append(b, byte(m.Code))
	return appendText(b, m.Message)
}

// appendText writes a uint16 length and at most maxMessageLen bytes of s.
func appendText(b []byte, s string) []byte {
	if len(s) > maxMessageLen {
		s = s[:maxMessageLen]
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendIDs(b []byte, ids []EnvelopeID) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(ids)))
	for i := range ids {
		b = append(b, ids[i][:]...)
	}
	return b
}

// appendFrame appends m as one length-prefixed frame.
func appendFrame(b []byte, m message) []byte {
	start := len(b)
	b = append(b, 0, 0, 0, 0, byte(m.frameType()))
	b = m.appendBody(b)
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	return b
}

// bodyReader consumes fields of one frame body (see relay/internal/fields).
// Bytes after the last known field are ignored so that a later minor
// version may append fields. Byte slices it returns alias the body.
type bodyReader struct{ *fields.Reader }

// errTruncated is made once: decoding runs for every frame.
var errTruncated = fmt.Errorf("%w: truncated body", ErrMalformed)

func newBodyReader(body []byte) *bodyReader {
	return &bodyReader{fields.NewReader(body, errTruncated)}
}

// bytes32 reads a uint32-prefixed field of at most max bytes.
func (r *bodyReader) bytes32(max int) []byte {
	n := r.U32()
	if r.Err() != nil {
		return nil
	}
	if uint64(n) > uint64(max) {
		r.Fail(fmt.Errorf("%w: field of %d bytes > %d", ErrFrameTooLarge, n, max))
		return nil
	}
	v := r.Take(int(n))
	if v == nil && r.Err() == nil {
		return []byte{}
	}
	return v
}

func (r *bodyReader) text() string {
	n := r.U16()
	if r.Err() != nil {
		return ""
	}
	if int(n) > maxMessageLen {
		r.Fail(fmt.Errorf("%w: message of %d bytes > %d", ErrMalformed, n, maxMessageLen))
		return ""
	}
	return string(r.Take(int(n)))
}

func (r *bodyReader) ids() []EnvelopeID {
	n := int(r.U16())
	if r.Err() != nil {
		return nil
	}
	if n > maxIDsPerAck {
		r.Fail(fmt.Errorf("%w: %d ids > %d", ErrMalformed, n, maxIDsPerAck))
		return nil
	}
	if n*idSize > r.Len() {
		r.Fail(fmt.Errorf("%w: truncated id list", ErrMalformed))
		return nil
	}
	ids := make([]EnvelopeID, n)
	for i := range ids {
		r.Fixed(ids[i][:])
	}
	return ids
}

// decodeBody decodes the body of a frame of type t. Envelope bytes alias
// body. An unknown optional type returns (nil, nil): skip it.
func decodeBody(t frameType, body []byte) (message, error) {
	r := newBodyReader(body)
	var m message
	switch t {
	case typeDeposit:
		d := &depositMsg{}
		r.Fixed(d.To[:])
		r.Fixed(d.ID[:])
		d.Envelope = r.bytes32(len(body))
		// Appended fields: a body that ends early just lacks them.
		if r.Err() == nil && r.Len() >= tokenSize {
			r.Fixed(d.Token[:])
			if r.Len() >= 1 {
				d.Flags = r.U8()
			}
		}
		m = d
	case typeResult:
		d := &resultMsg{}
		r.Fixed(d.ID[:])
		d.Code = Code(r.U8())
		d.Message = r.text()
		m = d
	case typeSubscribe:
		m = &subscribeMsg{}
	case typeChallenge:
		d := &challengeMsg{}
		r.Fixed(d.Nonce[:])
		d.Window = r.U32()
		d.MaxEnvelope = r.U32()
		m = d
	case typeAuth:
		d := &authMsg{}
		r.Fixed(d.Address[:])
		r.Fixed(d.Signature[:])
		m = d
	case typeDelivery:
		d := &deliveryMsg{}
		r.Fixed(d.ID[:])
		d.Deposited = int64(r.U64())
		d.Envelope = r.bytes32(len(body))
		m = d
	case typeAck:
		m = &ackMsg{IDs: r.ids()}
	case typeNack:
		m = &nackMsg{IDs: r.ids()}
	case typeDrained:
		m = &drainedMsg{}
	case typeTokens:
		d := &tokensMsg{}
		n := int(r.U8())
		if r.Err() == nil && n > MaxTokens {
			r.Fail(fmt.Errorf("%w: %d tokens > %d", ErrMalformed, n, MaxTokens))
		}
		if r.Err() == nil && n*tokenSize > r.Len() {
			r.Fail(fmt.Errorf("%w: truncated token list", ErrMalformed))
		}
		if r.Err() == nil {
			d.Tokens = make([]Token, n)
			for i := range d.Tokens {
				r.Fixed(d.Tokens[i][:])
			}
		}
		m = d
	case typeError:
		d := &errorMsg{}
		d.Code = Code(r.U8())
		d.Message = r.text()
		m = d
	default:
		if t >= optionalFrame {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: 0x%02x", ErrUnknownFrame, uint8(t))
	}
	if r.Err() != nil {
		return nil, fmt.Errorf("decode frame 0x%02x: %w", uint8(t), r.Err())
	}
	return m, nil
}

// decodeFrame decodes one whole frame from b, whose body may be at most
// max bytes, and returns the message and the bytes consumed.
func decodeFrame(b []byte, max int) (message, int, error) {
	if len(b) < headerSize {
		return nil, 0, fmt.Errorf("%w: truncated header", ErrMalformed)
	}
	t, n, err := parseHeader(b[:headerSize], max)
	if err != nil {
		return nil, 0, err
	}
	if n > len(b)-headerSize {
		return nil, 0, fmt.Errorf("%w: truncated body", ErrMalformed)
	}
	m, err := decodeBody(t, b[headerSize:headerSize+n])
	return m, headerSize + n, err
}

// parseHeader returns the type and body length of a frame header, checking
// the body against max.
func parseHeader(h []byte, max int) (frameType, int, error) {
	l := binary.BigEndian.Uint32(h)
	t := frameType(h[4])
	if l == 0 {
		return t, 0, fmt.Errorf("%w: zero length", ErrMalformed)
	}
	n := uint64(l) - 1
	if n > uint64(max) {
		return t, int(min(n, 1<<32)), fmt.Errorf("%w: %d bytes > %d", ErrFrameTooLarge, n, max)
	}
	return t, int(n), nil
}

// frameReader reads frames from a stream. It allocates one body buffer per
// frame, never more than the caller's bound.
type frameReader struct {
	r   *bufio.Reader
	hdr [headerSize]byte
}

// newFrameReader reads from r through a buffer of size bytes (bodies
// larger than the buffer are read straight into their own).
func newFrameReader(r io.Reader, size int) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, size)}
}

// grow gives the reader a buffer of size bytes, keeping what the old one
// holds: the old buffer drains first, then reads pass through it.
func (fr *frameReader) grow(size int) {
	if fr.r.Size() < size {
		fr.r = bufio.NewReaderSize(fr.r, size)
	}
}

// header reads the next frame header. On ErrFrameTooLarge it still returns
// the type and length, so the caller may discard the body.
func (fr *frameReader) header(max int) (frameType, int, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return 0, 0, err
	}
	return parseHeader(fr.hdr[:], max)
}

// body reads a body of n bytes into a fresh buffer.
func (fr *frameReader) body(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(fr.r, b); err != nil {
		return nil, unexpectedEOF(err)
	}
	return b, nil
}

// discard skips n bytes.
func (fr *frameReader) discard(n int) error {
	_, err := fr.r.Discard(n)
	return unexpectedEOF(err)
}

// next reads and decodes one frame, skipping unknown optional frames.
func (fr *frameReader) next(max int) (message, error) {
	for {
		t, n, err := fr.header(max)
		if err != nil {
			return nil, err
		}
		b, err := fr.body(n)
		if err != nil {
			return nil, err
		}
		m, err := decodeBody(t, b)
		if err != nil {
			return nil, err
		}
		if m != nil {
			return m, nil
		}
	}
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// lazyDeadline keeps a stream deadline between d/2 and d ahead of the last
// call: it sets a new one only once half of the old one has passed,
// because setting a yamux deadline costs a timer, too much to pay for
// every frame.
type lazyDeadline struct{ at time.Time }

func (l *lazyDeadline) extend(d time.Duration, set func(time.Time) error) {
	if now := time.Now(); l.at.Sub(now) < d/2 {
		l.at = now.Add(d)
		_ = set(l.at)
	}
}

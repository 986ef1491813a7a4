package directory

import (
	"bufio"
	"crypto/ed25519"
	"crypto/mlkem"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/pqxdh"
	"github.com/peergram/peergram/relay/internal/fields"
)

// frameType is the first byte after a frame's length. Wire enum:
// append-only, never renumber.
type frameType uint8

const (
	typePublish frameType = 0x01 // C→S
	typeFetch   frameType = 0x02 // C→S
	typeStatus  frameType = 0x03 // S→C answer to Publish, or refusal of anything
	typeEntries frameType = 0x04 // S→C answer to Fetch
	typeStock   frameType = 0x05 // C→S; answered by a Status carrying the counts
	typeHistory frameType = 0x06 // C→S
	typeLists   frameType = 0x07 // S→C answer to History
)

// Sizes of the objects frames carry, in bytes. They follow from the
// encodings of crypto/identity and crypto/pqxdh; TestBounds checks them
// against real maximal objects.
const (
	headerSize = 5 // length:u32 + type:u8

	// maxListSize bounds a marshalled DeviceList: 149 fixed bytes plus
	// MaxDevices certificates of at most 4+301 bytes is 19,669.
	maxListSize = 20 << 10

	oneTimeSize   = 4 + 32 + ed25519.SignatureSize                            // X25519 prekey: id | pub | sig
	oneTimePQSize = 4 + mlkem.EncapsulationKeySize768 + ed25519.SignatureSize // ML-KEM-768 prekey
	// bundleHeadSize is a bundle without one-time prekeys: version,
	// device, identity key, signed and last-resort prekeys, two counts.
	bundleHeadSize = 1 + 32 + 32 + oneTimeSize + oneTimePQSize + 4 + 4
	// maxBundleSize is a bundle with pqxdh.MaxOneTime prekeys of each
	// kind: 1,353,425 bytes.
	maxBundleSize = bundleHeadSize + pqxdh.MaxOneTime*(oneTimeSize+oneTimePQSize)
	// takenBundleSize is a bundle as Fetch hands it out (Take): at most
	// one one-time prekey of each kind.
	takenBundleSize = bundleHeadSize + oneTimeSize + oneTimePQSize

	// maxPublishBody is the largest Publish body a valid client sends.
	maxPublishBody = 4 + maxListSize + 4 + maxBundleSize + 4 + maxRecordSize

	// MaxPublishSize bounds a Publish frame body. It is 2 MiB so that any
	// valid request fits in one frame (a full list, a bundle with
	// pqxdh.MaxOneTime one-time prekeys of each kind and a record add up
	// to about 1.37 MB; 100 ML-KEM one-time prekeys alone are ~130 KB),
	// while one request stays one storage transaction (Badger caps a
	// commit at 15% of a 16 MiB memtable, ~2.4 MiB). The relay reserves
	// the body's memory with the libp2p resource manager before reading.
	MaxPublishSize = 2 << 20

	// maxEntry is one device in an Entries frame.
	maxEntry = 32 + 4 + takenBundleSize + 4 + maxRecordSize
	// maxEntriesBody is the largest Entries body a valid relay sends
	// (about 341 KB for MaxDevices devices).
	maxEntriesBody = 4 + maxListSize + 2 + identity.MaxDevices*maxEntry

	// MaxFetchResponseSize bounds the body of a Fetch answer that a
	// Client reads.
	MaxFetchResponseSize = 512 << 10

	// maxMessageLen bounds the human-readable text of a Status.
	maxMessageLen = 512

	// controlBodyMax bounds Fetch and Status bodies: small fixed fields,
	// with room for fields appended by later minor versions.
	controlBodyMax = 4 << 10

	// MaxHistoryLists is the most lists one Lists answer carries; a
	// client asks again from the next version for more.
	MaxHistoryLists = 16
	// maxListsBody bounds a Lists body.
	maxListsBody = 2 + MaxHistoryLists*(4+maxListSize)
)

// Compile-time checks that the frame bounds hold every valid message.
var (
	_ = [MaxPublishSize - maxPublishBody]struct{}{}
	_ = [MaxFetchResponseSize - maxEntriesBody]struct{}{}
	_ = [controlBodyMax - (3 + maxMessageLen)]struct{}{}
	_ = [MaxFetchResponseSize - maxListsBody]struct{}{}
)

// maxBody returns the body bound of frames of type t, and false for types
// this version does not know.
func maxBody(t frameType) (int, bool) {
	switch t {
	case typePublish:
		return MaxPublishSize, true
	case typeEntries:
		return MaxFetchResponseSize, true
	case typeLists:
		return maxListsBody, true
	case typeFetch, typeStatus, typeStock, typeHistory:
		return controlBodyMax, true
	}
	return 0, false
}

// message is one decoded frame body.
type message interface {
	frameType() frameType
	appendBody(b []byte) []byte
}

// publishMsg carries marshalled objects; empty Bundle or Record means none.
type publishMsg struct {
	List   []byte
	Bundle []byte
	Record []byte
}

type fetchMsg struct {
	Account identity.AccountID
}

// statusMsg answers a Publish or a Stock, or refuses any request. When
// HasStock is set it carries the one-time prekeys the relay holds for a
// device (fields appended in 1.0.0's minor revision: an older receiver
// ignores them, and a Status without them has HasStock false).
type statusMsg struct {
	Code     Code
	Message  string
	HasStock bool
	X25519   uint32
	MLKEM    uint32
	// HasNext (appended after the counts, a later minor revision): every
	// one-time prekey of the device with an ID below NextX25519 or
	// NextMLKEM was handed out or dropped.
	HasNext    bool
	NextX25519 uint32
	NextMLKEM  uint32
}

// stockMsg asks how many one-time prekeys the relay holds for a device.
type stockMsg struct {
	Device identity.DeviceID
}

// historyMsg asks for an account's lists with versions From..To
// (inclusive).
type historyMsg struct {
	Account  identity.AccountID
	From, To uint64
}

// listsMsg answers a History: the stored lists in the range, oldest first,
// at most MaxHistoryLists.
type listsMsg struct {
	Lists [][]byte
}

// entriesMsg answers a Fetch: the account's list and, for each listed
// device that has anything stored, its taken bundle and record (either may
// be empty).
type entriesMsg struct {
	List    []byte
	Entries []entry
}

type entry struct {
	Device identity.DeviceID
	Bundle []byte
	Record []byte
}

func (*publishMsg) frameType() frameType { return typePublish }
func (*fetchMsg) frameType() frameType   { return typeFetch }
func (*statusMsg) frameType() frameType  { return typeStatus }
func (*entriesMsg) frameType() frameType { return typeEntries }
func (*stockMsg) frameType() frameType   { return typeStock }
func (*historyMsg) frameType() frameType { return typeHistory }
func (*listsMsg) frameType() frameType   { return typeLists }

func (m *historyMsg) appendBody(b []byte) []byte {
	b = append(b, m.Account[:]...)
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(b, m.From), m.To)
}

func (m *listsMsg) appendBody(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Lists)))
	for _, l := range m.Lists {
		b = appendVar32(b, l)
	}
	return b
}

func (m *publishMsg) appendBody(b []byte) []byte {
	b = appendVar32(b, m.List)
	b = appendVar32(b, m.Bundle)
	return appendVar32(b, m.Record)
}

func (m *fetchMsg) appendBody(b []byte) []byte { return append(b, m.Account[:]...) }

func (m *statusMsg) appendBody(b []byte) []byte {
	b = append(b, byte(m.Code))
	s := m.Message
	if len(s) > maxMessageLen {
		s = s[:maxMessageLen]
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	b = append(b, s...)
	if m.HasStock {
		b = appendU32(appendU32(b, m.X25519), m.MLKEM)
		if m.HasNext {
			b = appendU32(appendU32(b, m.NextX25519), m.NextMLKEM)
		}
	}
	return b
}

func (m *stockMsg) appendBody(b []byte) []byte { return append(b, m.Device[:]...) }

func (m *entriesMsg) appendBody(b []byte) []byte {
	b = appendVar32(b, m.List)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Entries)))
	for i := range m.Entries {
		e := &m.Entries[i]
		b = append(b, e.Device[:]...)
		b = appendVar32(b, e.Bundle)
		b = appendVar32(b, e.Record)
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

// decodeBody decodes the body of a frame of type t. Byte fields alias
// body. Bytes after the last field this version knows are ignored, so a
// later minor version may append fields.
func decodeBody(t frameType, body []byte) (message, error) {
	r := newReader(body)
	var m message
	switch t {
	case typePublish:
		p := &publishMsg{}
		p.List = r.var32(maxListSize)
		p.Bundle = r.var32(maxBundleSize)
		p.Record = r.var32(maxRecordSize)
		m = p
	case typeFetch:
		f := &fetchMsg{}
		r.Fixed(f.Account[:])
		m = f
	case typeStatus:
		s := &statusMsg{}
		s.Code = Code(r.U8())
		n := int(r.U16())
		if r.Err() == nil && n > maxMessageLen {
			r.fail("status text of %d bytes > %d", n, maxMessageLen)
		}
		s.Message = string(r.Take(n))
		if r.Err() == nil && r.Len() >= 8 {
			s.HasStock = true
			s.X25519, s.MLKEM = r.U32(), r.U32()
			if r.Err() == nil && r.Len() >= 8 {
				s.HasNext = true
				s.NextX25519, s.NextMLKEM = r.U32(), r.U32()
			}
		}
		m = s
	case typeStock:
		st := &stockMsg{}
		r.Fixed(st.Device[:])
		m = st
	case typeHistory:
		h := &historyMsg{}
		r.Fixed(h.Account[:])
		h.From, h.To = r.U64(), r.U64()
		m = h
	case typeLists:
		l := &listsMsg{}
		n := int(r.U16())
		if r.Err() == nil && n > MaxHistoryLists {
			r.fail("%d lists > %d", n, MaxHistoryLists)
		}
		for i := 0; i < n && r.Err() == nil; i++ {
			l.Lists = append(l.Lists, r.var32(maxListSize))
		}
		m = l
	case typeEntries:
		e := &entriesMsg{}
		e.List = r.var32(maxListSize)
		n := int(r.U16())
		if r.Err() == nil && n > identity.MaxDevices {
			r.fail("%d entries > %d", n, identity.MaxDevices)
		}
		if r.Err() == nil && n*(32+4+4) > r.Len() {
			r.fail("truncated entries")
		}
		if r.Err() == nil && n > 0 {
			e.Entries = make([]entry, n)
		}
		for i := 0; i < n && r.Err() == nil; i++ {
			r.Fixed(e.Entries[i].Device[:])
			e.Entries[i].Bundle = r.var32(takenBundleSize)
			e.Entries[i].Record = r.var32(maxRecordSize)
		}
		m = e
	default:
		return nil, fmt.Errorf("%w: unknown frame type 0x%02x", ErrMalformed, uint8(t))
	}
	if r.Err() != nil {
		return nil, fmt.Errorf("decode frame 0x%02x: %w", uint8(t), r.Err())
	}
	return m, nil
}

// parseHeader returns the type and body length of a frame header. It
// fails with ErrMalformed for a zero length or an unknown type and with
// ErrTooLarge for a body over the type's bound.
func parseHeader(h []byte) (frameType, int, error) {
	l := binary.BigEndian.Uint32(h)
	t := frameType(h[4])
	if l == 0 {
		return t, 0, fmt.Errorf("%w: zero frame length", ErrMalformed)
	}
	max, ok := maxBody(t)
	if !ok {
		return t, 0, fmt.Errorf("%w: unknown frame type 0x%02x", ErrMalformed, uint8(t))
	}
	n := uint64(l) - 1
	if n > uint64(max) {
		return t, 0, fmt.Errorf("%w: frame 0x%02x of %d bytes > %d", ErrTooLarge, uint8(t), n, max)
	}
	return t, int(n), nil
}

// decodeFrame decodes one whole frame from b and returns the message and
// the bytes consumed.
func decodeFrame(b []byte) (message, int, error) {
	if len(b) < headerSize {
		return nil, 0, fmt.Errorf("%w: truncated frame header", ErrMalformed)
	}
	t, n, err := parseHeader(b[:headerSize])
	if err != nil {
		return nil, 0, err
	}
	if n > len(b)-headerSize {
		return nil, 0, fmt.Errorf("%w: truncated frame body", ErrMalformed)
	}
	m, err := decodeBody(t, b[headerSize:headerSize+n])
	return m, headerSize + n, err
}

// frameReader reads frames from a stream, allocating one body buffer per
// frame and never more than the type's bound.
type frameReader struct {
	r   *bufio.Reader
	hdr [headerSize]byte
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 16<<10)}
}

// header reads the next frame header. A stream that ends before a whole
// header fails with io.EOF (nothing read) or ErrMalformed.
func (fr *frameReader) header() (frameType, int, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return 0, 0, fmt.Errorf("%w: truncated frame header", ErrMalformed)
		}
		return 0, 0, err
	}
	return parseHeader(fr.hdr[:])
}

// body reads a body of n bytes into a fresh buffer.
func (fr *frameReader) body(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(fr.r, b); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("%w: truncated frame body", ErrMalformed)
		}
		return nil, err
	}
	return b, nil
}

// reader consumes big-endian fields of untrusted bytes (see
// relay/internal/fields). The first error sticks, so a decoder reads every
// field and checks once; it never allocates more than a field's bound.
type reader struct{ *fields.Reader }

func newReader(b []byte) *reader {
	return &reader{fields.NewReader(b, fmt.Errorf("%w: truncated", ErrMalformed))}
}

func (r *reader) fail(format string, args ...any) {
	r.Fail(fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...))
}

// var32 reads a uint32-length-prefixed field of at most max bytes.
func (r *reader) var32(max int) []byte {
	n := r.U32()
	if r.Err() != nil {
		return nil
	}
	if uint64(n) > uint64(max) {
		r.fail("field of %d bytes > %d", n, max)
		return nil
	}
	return r.Take(int(n))
}

// count reads a uint32 element count of at most max, each element at
// least minSize bytes, so a hostile count cannot outgrow the input.
func (r *reader) count(max, minSize int) int {
	n := r.U32()
	if r.Err() != nil {
		return 0
	}
	if uint64(n) > uint64(max) {
		r.fail("count %d > %d", n, max)
		return 0
	}
	if uint64(n)*uint64(minSize) > uint64(r.Len()) {
		r.fail("truncated")
		return 0
	}
	return int(n)
}

// finish returns the first error, or ErrMalformed if input is left over.
func (r *reader) finish() error {
	if r.Err() != nil {
		return r.Err()
	}
	if r.Len() != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, r.Len())
	}
	return nil
}

func appendU32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func appendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

func appendVar32(b, v []byte) []byte {
	b = appendU32(b, uint32(len(v)))
	return append(b, v...)
}

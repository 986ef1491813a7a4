package history

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/relay/internal/protoframe"
)

// ProtocolID is the group history protocol.
const ProtocolID = "/peergram/group-history/1.0.0"

// frameType is the first byte after a frame's length. Wire enum:
// append-only, never renumber.
type frameType uint8

const (
	typeRegister frameType = 0x01 // C→S; answered by Status
	typeQuery    frameType = 0x02 // C→S; answered by Page
	typeGet      frameType = 0x03 // C→S; answered by Page
	typeHeads    frameType = 0x04 // C→S and S→C
	typePage     frameType = 0x05 // S→C
	typeStatus   frameType = 0x06 // S→C: Register's answer, or a refusal
	typeGetLog   frameType = 0x07 // C→S; answered by Log
	typeLog      frameType = 0x08 // S→C: the group's log and lists, as a Register body without signature
	typeStore    frameType = 0x09 // C→S: a member's own envelope that gossip may not have carried; answered by Status
	typeName     frameType = 0x0a // C→S: publish a public name for a group; answered by Status
	typeLookup   frameType = 0x0b // C→S: a public name; answered by NameRecord or Status
	typeNameRec  frameType = 0x0c // S→C
)

// Bounds of frame bodies.
const (
	// MaxRegisterSize bounds a Register or Log body: one page of a
	// group's state log and the members' device lists (logBudget of
	// them, so that the fields around always fit). A larger log goes in
	// several pages; the relay stores each entry and list as its own
	// value.
	MaxRegisterSize = 2 << 20
	logBudget       = MaxRegisterSize - 4<<10
	// MaxRegisterPages bounds the pages of one registration (256 MiB,
	// about 800,000 entries).
	MaxRegisterPages = 128
	// MaxPageSize bounds a Page body; the relay fills a page up to
	// pageBudget, so one envelope of groupmsg.MaxSize always fits.
	MaxPageSize = 4 << 20
	pageBudget  = 2 << 20
	// controlMax bounds every other body.
	controlMax = 64 << 10

	// maxStoreBody bounds a Store body: a group ID and one envelope.
	maxStoreBody = groupmsg.MaxSize + 1024

	// MaxPageItems is the most items a Page carries.
	MaxPageItems = 1000
	// MaxHeads is the most groups one Heads names.
	MaxHeads = 1000
	// maxText bounds a Status text.
	maxText = 512
)

// ErrMalformed reports bytes that are not a valid frame of this protocol.
var ErrMalformed = errors.New("history: malformed frame")

// ErrTooLarge reports a frame over its type's bound.
var ErrTooLarge = errors.New("history: frame too large")

func maxBody(t frameType) (int, bool) {
	switch t {
	case typeRegister, typeLog:
		return MaxRegisterSize, true
	case typePage:
		return MaxPageSize, true
	case typeQuery, typeGet, typeHeads, typeStatus, typeGetLog:
		return controlMax, true
	case typeStore:
		return maxStoreBody, true
	case typeName, typeLookup, typeNameRec:
		return controlMax, true
	}
	return 0, false
}

// Code is a Status code. Wire enum: append-only.
type Code uint8

const (
	CodeOK          Code = 0
	CodeMalformed   Code = 1 // the request did not decode
	CodeInvalid     Code = 2 // a log or device list did not verify
	CodeUnknown     Code = 3 // the relay keeps no history of that group
	CodeRateLimited Code = 4
	CodeFull        Code = 5 // the relay keeps no more groups (or no more for this peer)
	CodeUnavailable Code = 6 // storage failed; try again
)

func (c Code) String() string {
	switch c {
	case CodeOK:
		return "ok"
	case CodeMalformed:
		return "malformed"
	case CodeInvalid:
		return "invalid"
	case CodeUnknown:
		return "unknown group"
	case CodeRateLimited:
		return "rate limited"
	case CodeFull:
		return "full"
	case CodeUnavailable:
		return "unavailable"
	}
	return fmt.Sprintf("code %d", uint8(c))
}

// registerMsg asks the relay to keep a group's history: the group's
// state log, oldest first, and members' signed device lists; Device
// signs (RegisterLabel, relay peer ID, group, Time) to show the request
// comes from a member's device.
//
// A log too large for one frame goes in pages, one Register frame each
// on the same stream, every one but the last with More set; the relay
// answers once, after the last, whose signature counts. The first page
// starts at the group's creation (From 0) or continues a log the relay
// holds (From the sequence number of its first entry, or the relay's
// length with no entries: lists only, or a renewal); each next page
// starts where the last ended. As the relay's Log answer, the same body
// carries a page of the relay's log: From, Total (the log's length),
// ListsFrom and ListsTotal (its lists, by account).
type registerMsg struct {
	Group   [32]byte
	Entries [][]byte
	Lists   [][]byte
	Time    int64 // Unix ms
	Device  [32]byte
	Sig     []byte

	From                  uint64
	More                  bool   // Register: another page follows on the stream
	Total                 uint64 // Log only
	ListsFrom, ListsTotal uint64 // Log only
}

// RegisterLabel is the domain-separation label of a Register's signature.
const RegisterLabel = "peergram/history/register/v1"

// registerSigned is what a Register's device signs.
func registerSigned(relay string, group [32]byte, timeMs int64) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(relay)))
	b = append(b, relay...)
	b = append(b, group[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(timeMs))
}

// storeMsg hands the relay an envelope to keep, signed by the
// envelope's own device over (StoreLabel, the relay's peer ID, the
// envelope's ID, Time): only that device hands its envelopes over, so no
// one replays what it saw.
type storeMsg struct {
	Group    [32]byte
	Envelope []byte
	Time     int64
	Sig      []byte
}

// StoreLabel is the domain-separation label of a Store's signature.
const StoreLabel = "peergram/history/store/v1"

func storeSigned(relay string, envelopeID string, timeMs int64) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(relay)))
	b = append(b, relay...)
	b = append(b, envelopeID...)
	return binary.BigEndian.AppendUint64(b, uint64(timeMs))
}

const (
	fStoreTime = 7
	fStoreSig  = 8
)

func (m *storeMsg) appendBody(b []byte) []byte {
	b = appendBytes(b, fGroup, m.Group[:])
	b = appendBytes(b, fItemEnv, m.Envelope)
	b = appendVarint(b, fStoreTime, uint64(m.Time))
	return appendBytes(b, fStoreSig, m.Sig)
}

func decodeStore(b []byte) (*storeMsg, error) {
	m := &storeMsg{}
	var seen bool
	err := fieldsOf(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == fGroup && typ == protowire.BytesType:
			return group32(&m.Group, v, &seen)
		case num == fItemEnv && typ == protowire.BytesType:
			m.Envelope = v
		case num == fStoreTime && typ == protowire.VarintType:
			m.Time = int64(min(x, 1<<62))
		case num == fStoreSig && typ == protowire.BytesType:
			m.Sig = v
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if m.Envelope == nil {
		return nil, fmt.Errorf("%w: no envelope", ErrMalformed)
	}
	return m, needGroup(seen)
}

// nameMsg binds a public name to a group and its public invite link,
// signed by a device of one of the group's admins (over NameLabel, the
// relay's peer ID, name, group, link and time). A Lookup carries the name
// only; a NameRecord the name, group and link.
type nameMsg struct {
	Name   string
	Group  [32]byte
	Link   string
	Time   int64
	Device [32]byte
	Sig    []byte
}

// NameLabel is the domain-separation label of a name's signature.
const NameLabel = "peergram/history/name/v1"

func nameSigned(relay string, m *nameMsg) []byte {
	var b []byte
	for _, f := range []string{relay, m.Name, m.Link} {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	b = append(b, m.Group[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(m.Time))
}

const (
	fName     = 1
	fNameGrp  = 2
	fNameLink = 3
)

func (m *nameMsg) appendBody(b []byte) []byte {
	b = appendBytes(b, fName, []byte(m.Name))
	if m.Group != ([32]byte{}) {
		b = appendBytes(b, fNameGrp, m.Group[:])
	}
	if m.Link != "" {
		b = appendBytes(b, fNameLink, []byte(m.Link))
	}
	if m.Sig != nil {
		b = appendVarint(b, fRegTime, uint64(m.Time))
		b = appendBytes(b, fRegDev, m.Device[:])
		b = appendBytes(b, fRegSig, m.Sig)
	}
	return b
}

func decodeName(b []byte) (*nameMsg, error) {
	m := &nameMsg{}
	err := fieldsOf(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == fName && typ == protowire.BytesType:
			m.Name = string(v)
		case num == fNameGrp && typ == protowire.BytesType:
			var seen bool
			return group32(&m.Group, v, &seen)
		case num == fNameLink && typ == protowire.BytesType:
			m.Link = string(v)
		case num == fRegTime && typ == protowire.VarintType:
			m.Time = int64(min(x, 1<<62))
		case num == fRegDev && typ == protowire.BytesType:
			if len(v) != 32 {
				return fmt.Errorf("%w: a device of %d bytes", ErrMalformed, len(v))
			}
			copy(m.Device[:], v)
		case num == fRegSig && typ == protowire.BytesType:
			m.Sig = v
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !ValidName(m.Name) {
		return nil, fmt.Errorf("%w: %q is not a public name (5 to 32 of a-z, 0-9, _)", ErrMalformed, m.Name)
	}
	if len(m.Link) > 1024 {
		return nil, fmt.Errorf("%w: a link of %d bytes", ErrMalformed, len(m.Link))
	}
	return m, nil
}

// ValidName reports whether s is a public name: 5 to 32 of a-z, 0-9 and
// _, starting with a letter (Telegram's usernames, lower case).
func ValidName(s string) bool {
	if len(s) < 5 || len(s) > 32 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// queryMsg asks for what the relay holds of a group after a cursor.
type queryMsg struct {
	Group   [32]byte
	After   uint64
	Limit   uint32
	IDsOnly bool
	// ListsAt is GetLog's cursor in the relay's lists (After, in its
	// log: the entries the client holds).
	ListsAt uint64
}

// getMsg asks for items by their sequence numbers.
type getMsg struct {
	Group [32]byte
	Seqs  []uint64
}

// Head is a group and a sequence number: in a request the last one the
// client holds, in the answer the relay's newest.
type Head struct {
	Group [32]byte
	Seq   uint64
	// Unknown is a relay's answer for a group it keeps no history of (its
	// registration expired, or its store was lost): register it again.
	Unknown bool
	// Store names the relay's store in an answer (random, drawn when the
	// store was made): another one means the store was lost or replaced
	// and its numbering started again (0: not said).
	Store uint64
}

// headsMsg: the client's cursors and how long the relay may wait for one
// of them to be passed; the relay answers with the heads that moved (or
// all of them once the wait is over).
type headsMsg struct {
	Heads  []Head
	WaitMS uint32
}

// Item is one stored envelope of a group.
type Item struct {
	Seq      uint64
	ID       [32]byte // SHA-256 of the envelope (groupmsg.ID)
	Stored   int64    // when the relay stored it, Unix ms
	Envelope []byte   // nil in an IDs-only page
}

// Page answers a Query or a Get.
type Page struct {
	Items []Item
	// First is the oldest sequence number the relay still holds (older
	// ones expired or were trimmed by the group's quota); Head the
	// newest. A client whose cursor is below First-1 has lost messages.
	First, Head uint64
	// More: a Query's page stopped before Head.
	More bool
}

type statusMsg struct {
	Code Code
	Text string
}

// Field numbers.
const (
	fGroup   = 1
	fEntry   = 2
	fList    = 3
	fAfter   = 2
	fLimit   = 3
	fIDsOnly = 4
	fSeq     = 2
	fHead    = 1
	fWait    = 2
	// fHeadUnknown (in a Head of a Heads answer): the relay keeps no
	// history of the group.
	fHeadUnknown = 3
	// fHeadStore (in a Head of a Heads answer): the relay store's ID.
	fHeadStore = 4
	fItem      = 1
	fFirst     = 2
	fHeadSeq   = 3
	fMore      = 4
	fCode      = 1
	fText      = 2
	fRegTime   = 4
	fRegDev    = 5
	fRegSig    = 6
	// Register and Log pages; GetLog's lists cursor.
	fFrom       = 7
	fTotal      = 8
	fListsFrom  = 9
	fListsTotal = 10
	fRegMore    = 11
	fGetListsAt = 5

	fItemSeq = 1
	fItemID  = 2
	fItemAt  = 3
	fItemEnv = 4
)

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	return protoframe.AppendBytes(b, num, v)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	return protoframe.AppendVarint(b, num, v)
}

func (m *registerMsg) appendBody(b []byte) []byte {
	b = appendBytes(b, fGroup, m.Group[:])
	for _, e := range m.Entries {
		b = appendBytes(b, fEntry, e)
	}
	for _, l := range m.Lists {
		b = appendBytes(b, fList, l)
	}
	if m.Sig != nil {
		b = appendVarint(b, fRegTime, uint64(m.Time))
		b = appendBytes(b, fRegDev, m.Device[:])
		b = appendBytes(b, fRegSig, m.Sig)
	}
	for _, f := range []struct {
		num protowire.Number
		v   uint64
	}{{fFrom, m.From}, {fTotal, m.Total}, {fListsFrom, m.ListsFrom}, {fListsTotal, m.ListsTotal}} {
		if f.v != 0 {
			b = appendVarint(b, f.num, f.v)
		}
	}
	if m.More {
		b = appendVarint(b, fRegMore, 1)
	}
	return b
}

func (m *queryMsg) appendBody(b []byte) []byte {
	b = appendBytes(b, fGroup, m.Group[:])
	b = appendVarint(b, fAfter, m.After)
	b = appendVarint(b, fLimit, uint64(m.Limit))
	if m.IDsOnly {
		b = appendVarint(b, fIDsOnly, 1)
	}
	if m.ListsAt != 0 {
		b = appendVarint(b, fGetListsAt, m.ListsAt)
	}
	return b
}

func (m *getMsg) appendBody(b []byte) []byte {
	b = appendBytes(b, fGroup, m.Group[:])
	for _, s := range m.Seqs {
		b = appendVarint(b, fSeq, s)
	}
	return b
}

func appendHead(b []byte, h Head) []byte {
	var in []byte
	in = appendBytes(in, fGroup, h.Group[:])
	in = appendVarint(in, fSeq, h.Seq)
	if h.Unknown {
		in = appendVarint(in, fHeadUnknown, 1)
	}
	if h.Store != 0 {
		in = appendVarint(in, fHeadStore, h.Store)
	}
	return appendBytes(b, fHead, in)
}

func (m *headsMsg) appendBody(b []byte) []byte {
	for _, h := range m.Heads {
		b = appendHead(b, h)
	}
	return appendVarint(b, fWait, uint64(m.WaitMS))
}

func appendItem(b []byte, it *Item) []byte {
	var in []byte
	in = appendVarint(in, fItemSeq, it.Seq)
	in = appendBytes(in, fItemID, it.ID[:])
	in = appendVarint(in, fItemAt, uint64(it.Stored))
	if it.Envelope != nil {
		in = appendBytes(in, fItemEnv, it.Envelope)
	}
	return appendBytes(b, fItem, in)
}

func (p *Page) appendBody(b []byte) []byte {
	for i := range p.Items {
		b = appendItem(b, &p.Items[i])
	}
	b = appendVarint(b, fFirst, p.First)
	b = appendVarint(b, fHeadSeq, p.Head)
	if p.More {
		b = appendVarint(b, fMore, 1)
	}
	return b
}

func (m *statusMsg) appendBody(b []byte) []byte {
	b = appendVarint(b, fCode, uint64(m.Code))
	if m.Text != "" {
		t := m.Text
		if len(t) > maxText {
			t = t[:maxText]
		}
		b = appendBytes(b, fText, []byte(t))
	}
	return b
}

// frame returns header and body of one frame.
func frame(t frameType, body []byte) []byte { return protoframe.Frame(uint8(t), body) }

// readFrame reads one frame whose type is in want, refusing a body over
// its type's bound before reading it.
func readFrame(r io.Reader, want ...frameType) (frameType, []byte, error) {
	t, body, err := protoframe.Read(r, func(t uint8) (int, bool) {
		if !contains(want, frameType(t)) {
			return 0, false
		}
		return maxBody(frameType(t))
	})
	return frameType(t), body, ourErr(err)
}

// ourErr gives protoframe's errors this package's names.
func ourErr(err error) error {
	switch {
	case errors.Is(err, protoframe.ErrTooLarge):
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	case errors.Is(err, protoframe.ErrMalformed):
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return err
}

func contains(ts []frameType, t frameType) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

// fieldsOf walks a protowire body, calling fn for each field; unknown
// fields are skipped (later minor versions append fields).
func fieldsOf(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	return ourErr(protoframe.Fields(b, fn))
}

func group32(dst *[32]byte, v []byte, seen *bool) error {
	if len(v) != 32 {
		return fmt.Errorf("%w: a group ID of %d bytes", ErrMalformed, len(v))
	}
	copy(dst[:], v)
	*seen = true
	return nil
}

func needGroup(seen bool) error {
	if !seen {
		return fmt.Errorf("%w: no group", ErrMalformed)
	}
	return nil
}

func decodeRegister(b []byte) (*registerMsg, error) {
	m := &registerMsg{}
	var seen bool
	err := fieldsOf(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		if typ == protowire.VarintType {
			switch num {
			case fRegTime:
				m.Time = int64(min(x, 1<<62))
			case fFrom:
				m.From = x
			case fTotal:
				m.Total = x
			case fListsFrom:
				m.ListsFrom = x
			case fListsTotal:
				m.ListsTotal = x
			case fRegMore:
				m.More = x != 0
			}
			return nil
		}
		switch num {
		case fGroup:
			return group32(&m.Group, v, &seen)
		case fEntry:
			m.Entries = append(m.Entries, v)
		case fList:
			m.Lists = append(m.Lists, v)
		case fRegDev:
			if len(v) != 32 {
				return fmt.Errorf("%w: a device of %d bytes", ErrMalformed, len(v))
			}
			copy(m.Device[:], v)
		case fRegSig:
			m.Sig = v
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, needGroup(seen)
}

func decodeQuery(b []byte) (*queryMsg, error) {
	m := &queryMsg{}
	var seen bool
	err := fieldsOf(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == fGroup && typ == protowire.BytesType:
			return group32(&m.Group, v, &seen)
		case num == fAfter && typ == protowire.VarintType:
			m.After = x
		case num == fLimit && typ == protowire.VarintType:
			m.Limit = uint32(min(x, MaxPageItems))
		case num == fIDsOnly && typ == protowire.VarintType:
			m.IDsOnly = x != 0
		case num == fGetListsAt && typ == protowire.VarintType:
			m.ListsAt = x
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, needGroup(seen)
}

func decodeGet(b []byte) (*getMsg, error) {
	m := &getMsg{}
	var seen bool
	err := fieldsOf(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == fGroup && typ == protowire.BytesType:
			return group32(&m.Group, v, &seen)
		case num == fSeq && typ == protowire.VarintType:
			if len(m.Seqs) >= MaxPageItems {
				return fmt.Errorf("%w: more than %d sequence numbers", ErrMalformed, MaxPageItems)
			}
			m.Seqs = append(m.Seqs, x)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, needGroup(seen)
}

func decodeHead(b []byte) (Head, error) {
	var h Head
	var seen bool
	err := fieldsOf(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == fGroup && typ == protowire.BytesType:
			return group32(&h.Group, v, &seen)
		case num == fSeq && typ == protowire.VarintType:
			h.Seq = x
		case num == fHeadUnknown && typ == protowire.VarintType:
			h.Unknown = x != 0
		case num == fHeadStore && typ == protowire.VarintType:
			h.Store = x
		}
		return nil
	})
	if err != nil {
		return h, err
	}
	return h, needGroup(seen)
}

func decodeHeads(b []byte) (*headsMsg, error) {
	m := &headsMsg{}
	err := fieldsOf(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == fHead && typ == protowire.BytesType:
			if len(m.Heads) >= MaxHeads {
				return fmt.Errorf("%w: more than %d heads", ErrMalformed, MaxHeads)
			}
			h, err := decodeHead(v)
			if err != nil {
				return err
			}
			m.Heads = append(m.Heads, h)
		case num == fWait && typ == protowire.VarintType:
			m.WaitMS = uint32(min(x, 1<<31))
		}
		return nil
	})
	return m, err
}

func decodeItem(b []byte) (Item, error) {
	var it Item
	var hasID bool
	err := fieldsOf(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == fItemSeq && typ == protowire.VarintType:
			it.Seq = x
		case num == fItemID && typ == protowire.BytesType:
			if len(v) != 32 {
				return fmt.Errorf("%w: an item ID of %d bytes", ErrMalformed, len(v))
			}
			copy(it.ID[:], v)
			hasID = true
		case num == fItemAt && typ == protowire.VarintType:
			it.Stored = int64(x)
		case num == fItemEnv && typ == protowire.BytesType:
			it.Envelope = append([]byte{}, v...)
		}
		return nil
	})
	if err == nil && !hasID {
		err = fmt.Errorf("%w: an item without ID", ErrMalformed)
	}
	return it, err
}

func decodePage(b []byte) (*Page, error) {
	p := &Page{}
	err := fieldsOf(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == fItem && typ == protowire.BytesType:
			if len(p.Items) >= MaxPageItems {
				return fmt.Errorf("%w: more than %d items", ErrMalformed, MaxPageItems)
			}
			it, err := decodeItem(v)
			if err != nil {
				return err
			}
			p.Items = append(p.Items, it)
		case num == fFirst && typ == protowire.VarintType:
			p.First = x
		case num == fHeadSeq && typ == protowire.VarintType:
			p.Head = x
		case num == fMore && typ == protowire.VarintType:
			p.More = x != 0
		}
		return nil
	})
	return p, err
}

func decodeStatus(b []byte) (*statusMsg, error) {
	m := &statusMsg{}
	err := fieldsOf(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == fCode && typ == protowire.VarintType:
			m.Code = Code(min(x, 255))
		case num == fText && typ == protowire.BytesType:
			if len(v) > maxText {
				v = v[:maxText]
			}
			m.Text = string(v)
		}
		return nil
	})
	return m, err
}

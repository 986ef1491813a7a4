package history

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/crypto/identity"
)

// ErrUnknownGroup is a relay's answer for a group it keeps no history of.
var ErrUnknownGroup = errors.New("history: the relay keeps no history of this group")

// StatusError is a relay's refusal.
type StatusError struct {
	Code Code
	Text string
}

func (e *StatusError) Error() string {
	if e.Text == "" {
		return "history: relay answered " + e.Code.String()
	}
	return "history: relay answered " + e.Code.String() + ": " + e.Text
}

// Is makes errors.Is(err, ErrUnknownGroup) hold for CodeUnknown.
func (e *StatusError) Is(target error) bool {
	return target == ErrUnknownGroup && e.Code == CodeUnknown
}

// Client asks relays for group history. Safe for concurrent use.
type Client struct {
	h host.Host
	// pageBudget bounds a Register page's entries and lists (logBudget;
	// tests make it small to page small logs).
	pageBudget int
	// MaxLogBytes bounds the entries and lists Log takes from a relay (0:
	// only the bound on pages, 512 MiB).
	MaxLogBytes int
}

// NewClient returns a Client on h.
func NewClient(h host.Host) *Client { return &Client{h: h, pageBudget: logBudget} }

// Register asks relay to keep group's history: entries is the group's
// state log, oldest first; lists the members' signed device lists, dev's
// among them (dev signs the request: the relay keeps groups for their
// members only). A log or lists too large for one frame go in pages.
func (c *Client) Register(ctx context.Context, relay peer.ID, group [32]byte, entries, lists [][]byte, dev *identity.DeviceKey) error {
	return c.RegisterFrom(ctx, relay, group, 0, entries, lists, dev)
}

// RegisterFrom is Register for a log the relay holds already up to
// entry from-1 (from 0: the whole log): entries are the log from
// sequence number from on (none: a renewal, or lists only). A relay that
// holds no such log answers an error (ErrUnknownGroup, or a StatusError
// with CodeInvalid for a log that does not reach from); register the
// whole log then. The pages go on one stream; the relay answers after
// the last.
func (c *Client) RegisterFrom(ctx context.Context, relay peer.ID, group [32]byte, from uint64, entries, lists [][]byte, dev *identity.DeviceKey) error {
	var frames [][]byte
	for first := true; first || len(entries) > 0 || len(lists) > 0; first = false {
		m := &registerMsg{Group: group, From: from}
		size := 0
		for len(entries) > 0 && size+len(entries[0])+8 <= c.pageBudget {
			size += len(entries[0]) + 8
			m.Entries, entries = append(m.Entries, entries[0]), entries[1:]
		}
		for len(entries) == 0 && len(lists) > 0 && size+len(lists[0])+8 <= c.pageBudget {
			size += len(lists[0]) + 8
			m.Lists, lists = append(m.Lists, lists[0]), lists[1:]
		}
		if len(m.Entries) == 0 && len(m.Lists) == 0 && !first {
			return fmt.Errorf("%w: an entry or list of over %d bytes", ErrTooLarge, c.pageBudget)
		}
		m.More = len(entries) > 0 || len(lists) > 0
		m.Time, m.Device = time.Now().UnixMilli(), dev.ID()
		m.Sig = dev.Sign(RegisterLabel, registerSigned(string(relay), group, m.Time))
		frames = append(frames, frame(typeRegister, m.appendBody(nil)))
		from += uint64(len(m.Entries))
	}
	if len(frames) > MaxRegisterPages {
		return fmt.Errorf("%w: a registration of %d pages", ErrTooLarge, len(frames))
	}
	_, ans, err := c.exchange(ctx, relay, frames, typeStatus)
	if err != nil {
		return err
	}
	return expectOK(ans)
}

// Store hands relay one of dev's own envelopes of group, one that gossip
// may not have carried (posted offline); dev signs the request. The relay
// checks it as its validators would, with a time window of its
// retention, and keeps it once.
func (c *Client) Store(ctx context.Context, relay peer.ID, group [32]byte, envelope []byte, dev *identity.DeviceKey) error {
	m := &storeMsg{Group: group, Envelope: envelope, Time: time.Now().UnixMilli()}
	m.Sig = dev.Sign(StoreLabel, storeSigned(string(relay), groupmsg.ID(envelope), m.Time))
	body := m.appendBody(nil)
	_, ans, err := c.roundTrip(ctx, relay, typeStore, body, typeStatus)
	if err != nil {
		return err
	}
	return expectOK(ans)
}

// PublishName binds a public name to group at relay, with the group's
// public invite link; dev must be a device of one of the group's admins.
func (c *Client) PublishName(ctx context.Context, relay peer.ID, name string, group [32]byte, link string, dev *identity.DeviceKey) error {
	m := &nameMsg{Name: name, Group: group, Link: link, Time: time.Now().UnixMilli(), Device: dev.ID()}
	m.Sig = dev.Sign(NameLabel, nameSigned(string(relay), m))
	_, ans, err := c.roundTrip(ctx, relay, typeName, m.appendBody(nil), typeStatus)
	if err != nil {
		return err
	}
	return expectOK(ans)
}

// NameRecord is a public name as a relay answers it: the group, its
// public invite link, and the signature of an admin's device (over the
// relay's ID, name, link, group and time), which the client checks
// against the group's log before it trusts the record (CheckSigner).
type NameRecord struct {
	Name   string
	Group  [32]byte
	Link   string
	Time   int64
	Device identity.DeviceID
	sig    []byte
	relay  peer.ID
}

// SignatureValid reports whether the record's signature is its device's.
func (r *NameRecord) SignatureValid() bool {
	m := &nameMsg{Name: r.Name, Group: r.Group, Link: r.Link, Time: r.Time}
	return identity.Verify(r.Device.PublicKey(), NameLabel, nameSigned(string(r.relay), m), r.sig)
}

// LookupName returns the record a relay holds for a public name
// (ErrUnknownGroup if none), its signature checked; whether the signer is
// an admin of the group is the caller's check, against the group's log.
func (c *Client) LookupName(ctx context.Context, relay peer.ID, name string) (*NameRecord, error) {
	t, ans, err := c.roundTrip(ctx, relay, typeLookup, (&nameMsg{Name: name}).appendBody(nil), typeNameRec, typeStatus)
	if err != nil {
		return nil, err
	}
	if t == typeStatus {
		return nil, statusErr(ans)
	}
	m, err := decodeName(ans)
	if err != nil {
		return nil, err
	}
	if m.Name != name {
		return nil, fmt.Errorf("%w: the record of another name", ErrMalformed)
	}
	r := &NameRecord{Name: m.Name, Group: m.Group, Link: m.Link, Time: m.Time, Device: identity.DeviceID(m.Device), sig: m.Sig, relay: relay}
	if !r.SignatureValid() {
		return nil, fmt.Errorf("%w: the name's record is not signed by its device", ErrMalformed)
	}
	return r, nil
}

// Log returns the group's state log (oldest first) and the members'
// device lists as the relay holds them, for a device that joins by an
// invite link, page by page. Nothing is verified here but that the pages
// join up: the caller replays the log.
func (c *Client) Log(ctx context.Context, relay peer.ID, group [32]byte) (entries, lists [][]byte, err error) {
	return c.log(ctx, relay, group, 0, true)
}

// LogFrom returns the group's state log from entry from on, without the
// device lists: what a member that holds the entries before from lacks.
// Nothing is verified here but that the pages join up.
func (c *Client) LogFrom(ctx context.Context, relay peer.ID, group [32]byte, from uint64) ([][]byte, error) {
	entries, _, err := c.log(ctx, relay, group, from, false)
	return entries, err
}

// noLists is the lists cursor that asks for none (past any relay's).
const noLists = math.MaxUint64

func (c *Client) log(ctx context.Context, relay peer.ID, group [32]byte, from uint64, withLists bool) (entries, lists [][]byte, err error) {
	size := 0
	listsAt := func() uint64 { return uint64(len(lists)) }
	if !withLists {
		listsAt = func() uint64 { return noLists }
	}
	for pages := 1; ; pages++ {
		if pages > 2*MaxRegisterPages {
			return nil, nil, fmt.Errorf("%w: a log of over %d pages", ErrTooLarge, 2*MaxRegisterPages)
		}
		q := &queryMsg{Group: group, After: from + uint64(len(entries)), ListsAt: listsAt()}
		t, ans, err := c.roundTrip(ctx, relay, typeGetLog, q.appendBody(nil), typeLog, typeStatus)
		if err != nil {
			return nil, nil, err
		}
		if t == typeStatus {
			return nil, nil, statusErr(ans)
		}
		m, err := decodeRegister(ans)
		if err != nil {
			return nil, nil, err // (before m is read: an outside review had a bad page panic the node)
		}
		listsDone := !withLists || uint64(len(lists)+len(m.Lists)) >= m.ListsTotal
		switch {
		case m.Group != group:
			return nil, nil, fmt.Errorf("%w: the log of another group", ErrMalformed)
		case m.From != q.After || m.ListsFrom != q.ListsAt:
			return nil, nil, fmt.Errorf("%w: a page of the log that does not follow the last", ErrMalformed)
		case !withLists && len(m.Lists) > 0:
			return nil, nil, fmt.Errorf("%w: device lists not asked for", ErrMalformed)
		case len(m.Entries) == 0 && len(m.Lists) == 0 && (m.Total > q.After || !listsDone):
			return nil, nil, fmt.Errorf("%w: an empty page of the log before its end", ErrMalformed)
		}
		entries, lists = append(entries, m.Entries...), append(lists, m.Lists...)
		for _, b := range m.Entries {
			size += len(b)
		}
		for _, b := range m.Lists {
			size += len(b)
		}
		if c.MaxLogBytes > 0 && size > c.MaxLogBytes {
			return nil, nil, fmt.Errorf("%w: a log of over %d bytes", ErrTooLarge, c.MaxLogBytes)
		}
		if from+uint64(len(entries)) >= m.Total && listsDone {
			return entries, lists, nil
		}
	}
}

// Query returns the items of group after the cursor after, at most limit
// (0: the relay's maximum), with their envelopes unless idsOnly.
func (c *Client) Query(ctx context.Context, relay peer.ID, group [32]byte, after uint64, limit int, idsOnly bool) (*Page, error) {
	body := (&queryMsg{Group: group, After: after, Limit: uint32(max(0, min(limit, MaxPageItems))), IDsOnly: idsOnly}).appendBody(nil)
	p, err := c.page(ctx, relay, typeQuery, body)
	if err != nil {
		return nil, err
	}
	if p.More && len(p.Items) == 0 {
		// A relay's page that says more follows holds at least one item:
		// an empty one would have its client ask again forever.
		return nil, fmt.Errorf("%w: an empty page that says more follows", ErrMalformed)
	}
	last := after
	for _, it := range p.Items {
		if it.Seq <= last {
			return nil, fmt.Errorf("%w: items out of order", ErrMalformed)
		}
		last = it.Seq
		if !idsOnly {
			if err := checkItem(&it); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// Get returns the items of group with the given sequence numbers that
// the relay still holds, with their envelopes.
func (c *Client) Get(ctx context.Context, relay peer.ID, group [32]byte, seqs []uint64) (*Page, error) {
	if len(seqs) > MaxPageItems {
		return nil, fmt.Errorf("history: at most %d items per Get", MaxPageItems)
	}
	body := (&getMsg{Group: group, Seqs: seqs}).appendBody(nil)
	p, err := c.page(ctx, relay, typeGet, body)
	if err != nil {
		return nil, err
	}
	if p.More && len(p.Items) == 0 {
		return nil, fmt.Errorf("%w: an empty page that says more follows", ErrMalformed)
	}
	asked := make(map[uint64]bool, len(seqs))
	for _, s := range seqs {
		asked[s] = true
	}
	for _, it := range p.Items {
		if !asked[it.Seq] {
			return nil, fmt.Errorf("%w: an item not asked for", ErrMalformed)
		}
		delete(asked, it.Seq)
		if err := checkItem(&it); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// checkItem checks that an item's envelope is the one its ID names: a
// relay cannot substitute one (the node still verifies its signature).
func checkItem(it *Item) error {
	if it.Envelope == nil || groupmsg.ID(it.Envelope) != string(it.ID[:]) {
		return fmt.Errorf("%w: an item whose envelope is not its ID's", ErrMalformed)
	}
	return nil
}

// Heads sends the client's cursors and returns the heads that passed them
// within wait (or all known ones once it ends).
func (c *Client) Heads(ctx context.Context, relay peer.ID, heads []Head, wait time.Duration) ([]Head, error) {
	if len(heads) > MaxHeads {
		heads = heads[:MaxHeads]
	}
	body := (&headsMsg{Heads: heads, WaitMS: uint32(wait / time.Millisecond)}).appendBody(nil)
	t, ans, err := c.roundTrip(ctx, relay, typeHeads, body, typeHeads, typeStatus)
	if err != nil {
		return nil, err
	}
	if t == typeStatus {
		return nil, statusErr(ans)
	}
	m, err := decodeHeads(ans)
	if err != nil {
		return nil, err
	}
	return m.Heads, nil
}

func (c *Client) page(ctx context.Context, relay peer.ID, t frameType, body []byte) (*Page, error) {
	at, ans, err := c.roundTrip(ctx, relay, t, body, typePage, typeStatus)
	if err != nil {
		return nil, err
	}
	if at == typeStatus {
		return nil, statusErr(ans)
	}
	return decodePage(ans)
}

// expectOK reads a Status that answers a request expecting one: nil for
// CodeOK, else the refusal.
func expectOK(b []byte) error {
	st, err := decodeStatus(b)
	if err != nil {
		return err
	}
	if st.Code != CodeOK {
		return &StatusError{st.Code, st.Text}
	}
	return nil
}

// statusErr reads a Status that answers a request expecting something
// else: an error whatever its code.
func statusErr(b []byte) error {
	st, err := decodeStatus(b)
	if err != nil {
		return err
	}
	return &StatusError{st.Code, st.Text}
}

// roundTrip sends one request on a new stream and reads the answer.
func (c *Client) roundTrip(ctx context.Context, relay peer.ID, t frameType, body []byte, want ...frameType) (frameType, []byte, error) {
	return c.exchange(ctx, relay, [][]byte{frame(t, body)}, want...)
}

// exchange sends frames on a new stream and reads the one answer. A
// relay that refuses early answers before it read them all: its answer
// is what is returned, not the failed write.
func (c *Client) exchange(ctx context.Context, relay peer.ID, frames [][]byte, want ...frameType) (frameType, []byte, error) {
	str, err := c.h.NewStream(ctx, relay, ProtocolID)
	if err != nil {
		return 0, nil, fmt.Errorf("history: open stream: %w", err)
	}
	defer str.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = str.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = str.Reset() })
	defer stop()
	var sendErr error
	for _, f := range frames {
		if _, sendErr = str.Write(f); sendErr != nil {
			break
		}
	}
	if sendErr == nil {
		sendErr = str.CloseWrite()
	}
	at, ans, err := readFrame(str, want...)
	if sendErr != nil && err != nil {
		return 0, nil, fmt.Errorf("history: send: %w", sendErr)
	}
	if errors.Is(err, io.EOF) {
		return 0, nil, fmt.Errorf("history: relay closed the stream without answering: %w", io.ErrUnexpectedEOF)
	}
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil, ctx.Err()
		}
		return 0, nil, fmt.Errorf("history: answer: %w", err)
	}
	return at, ans, nil
}

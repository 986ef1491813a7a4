package history

import (
	"context"
	"errors"
	"fmt"
	"io"
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
}

// NewClient returns a Client on h.
func NewClient(h host.Host) *Client { return &Client{h: h} }

// Register asks relay to keep group's history: entries is the group's
// state log, oldest first; lists the members' signed device lists, dev's
// among them (dev signs the request: the relay keeps groups for their
// members only).
func (c *Client) Register(ctx context.Context, relay peer.ID, group [32]byte, entries, lists [][]byte, dev *identity.DeviceKey) error {
	m := &registerMsg{Group: group, Entries: entries, Lists: lists, Time: time.Now().UnixMilli(), Device: dev.ID()}
	m.Sig = dev.Sign(RegisterLabel, registerSigned(string(relay), group, m.Time))
	body := m.appendBody(nil)
	if len(body) > MaxRegisterSize {
		return fmt.Errorf("%w: a registration of %d bytes", ErrTooLarge, len(body))
	}
	_, ans, err := c.roundTrip(ctx, relay, typeRegister, body, typeStatus)
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
// invite link. Nothing is verified here: the caller replays the log.
func (c *Client) Log(ctx context.Context, relay peer.ID, group [32]byte) (entries, lists [][]byte, err error) {
	body := (&queryMsg{Group: group}).appendBody(nil)
	t, ans, err := c.roundTrip(ctx, relay, typeGetLog, body, typeLog, typeStatus)
	if err != nil {
		return nil, nil, err
	}
	if t == typeStatus {
		return nil, nil, statusErr(ans)
	}
	m, err := decodeRegister(ans)
	if err != nil {
		return nil, nil, err
	}
	if m.Group != group {
		return nil, nil, fmt.Errorf("%w: the log of another group", ErrMalformed)
	}
	return m.Entries, m.Lists, nil
}

// Query returns the items of group after the cursor after, at most limit
// (0: the relay's maximum), with their envelopes unless idsOnly.
func (c *Client) Query(ctx context.Context, relay peer.ID, group [32]byte, after uint64, limit int, idsOnly bool) (*Page, error) {
	body := (&queryMsg{Group: group, After: after, Limit: uint32(max(0, min(limit, MaxPageItems))), IDsOnly: idsOnly}).appendBody(nil)
	p, err := c.page(ctx, relay, typeQuery, body)
	if err != nil {
		return nil, err
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
	if _, err := str.Write(frame(t, body)); err != nil {
		return 0, nil, fmt.Errorf("history: send: %w", err)
	}
	if err := str.CloseWrite(); err != nil {
		return 0, nil, fmt.Errorf("history: send: %w", err)
	}
	at, ans, err := readFrame(str, want...)
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

package directory

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/pqxdh"
)

// requestTimeout bounds a request whose context has no deadline.
const requestTimeout = time.Minute

// Client is the device side of the directory protocol: one stream per
// request, nothing kept between requests. It trusts no relay: everything
// Fetch returns has been verified. It is safe for concurrent use.
type Client struct {
	h host.Host
}

// NewClient returns a Client that opens streams from h. It starts nothing.
func NewClient(h host.Host) *Client { return &Client{h: h} }

// Result is what Fetch returns, all of it verified.
type Result struct {
	// List is the account's device list, signed by the account.
	List *identity.DeviceList
	// Devices has one entry per device on List, in List order.
	Devices []DeviceEntry
}

// DeviceEntry is one listed device as the relay knows it.
type DeviceEntry struct {
	Cert *identity.DeviceCert
	// Bundle is the device's prekey bundle with at most one one-time
	// prekey of each kind, verified against Cert; nil if the relay has
	// none.
	Bundle *pqxdh.Bundle
	// Record is the device's signed record; nil if the relay has none.
	Record *Record
}

// Publish stores list, and optionally a device's bundle and record, on
// relay. bundle and rec may be nil; each must belong to a device on list.
// Publishing the list the relay already holds is accepted; a relay that
// holds an older list needs each version in between published in turn
// (ErrGap otherwise). A refusal is a *RefusalError that matches ErrRollback,
// ErrFork, ErrGap, ErrBadSignature, ErrUnlisted, ErrMalformed, ErrTooLarge,
// ErrRateLimited, ... with errors.Is. The relay stores at most its
// maximum of one-time prekeys per device and within its per-account
// quota; PublishStock tells how many it holds.
func (c *Client) Publish(ctx context.Context, relay peer.ID, list *identity.DeviceList, bundle *pqxdh.Bundle, rec *Record) error {
	_, err := c.publish(ctx, relay, list, bundle, rec)
	return err
}

// PublishStock is Publish that also returns how many one-time prekeys of
// each kind the relay holds for the bundle's device once the publish is
// stored, as Stock would. It returns -1, -1 (and no error) when the relay
// does not say: no bundle was published, this peer is not the one the
// device's record names, or the relay predates stock counts.
func (c *Client) PublishStock(ctx context.Context, relay peer.ID, list *identity.DeviceList, bundle *pqxdh.Bundle, rec *Record) (x25519, mlkem int, err error) {
	st, err := c.publish(ctx, relay, list, bundle, rec)
	if err != nil {
		return -1, -1, err
	}
	if !st.HasStock {
		return -1, -1, nil
	}
	return int(st.X25519), int(st.MLKEM), nil
}

// Stock returns how many one-time prekeys of each kind relay holds for
// device. Only the device may ask: the relay answers the peer that the
// device's stored Record names (this Client's host must be that peer) and
// refuses others with ErrForbidden; a device the relay holds no bundle or
// record of is ErrNotFound. A device whose count runs low refills: it
// makes new prekeys (pqxdh.PrekeySet.Refill) and publishes its bundle.
// Stock shares the relay's per-peer rate of fetches (ErrRateLimited).
func (c *Client) Stock(ctx context.Context, relay peer.ID, device identity.DeviceID) (x25519, mlkem int, err error) {
	info, err := c.StockInfo(ctx, relay, device)
	return info.X25519, info.MLKEM, err
}

// StockInfo is what the relay says of a device's one-time prekeys.
type StockInfo struct {
	// X25519 and MLKEM count the one-time prekeys the relay holds.
	X25519, MLKEM int
	// Every one-time prekey with an ID below NextX25519 (NextMLKEM) was
	// handed out or dropped by the relay; zero if the relay does not say.
	NextX25519, NextMLKEM uint32
}

// StockInfo is Stock with the relay's hand-out cursor, which tells the
// device which of its one-time prekeys the relay has handed out (the
// device may retire those no initial message can still use).
func (c *Client) StockInfo(ctx context.Context, relay peer.ID, device identity.DeviceID) (StockInfo, error) {
	ans, err := c.roundTrip(ctx, relay, appendFrame(nil, &stockMsg{Device: device}))
	if err != nil {
		return StockInfo{}, fmt.Errorf("directory: stock: %w", err)
	}
	st, ok := ans.(*statusMsg)
	switch {
	case !ok:
		return StockInfo{}, fmt.Errorf("directory: stock: %w: answer of type 0x%02x", ErrMalformed, uint8(ans.frameType()))
	case st.Code != CodeOK:
		return StockInfo{}, fmt.Errorf("directory: stock: %w", &RefusalError{Code: st.Code, Message: st.Message})
	case !st.HasStock:
		return StockInfo{}, fmt.Errorf("directory: stock: %w: answer without counts", ErrMalformed)
	case st.X25519 > pqxdh.MaxOneTime || st.MLKEM > pqxdh.MaxOneTime:
		return StockInfo{}, fmt.Errorf("directory: stock: %w: %d+%d one-time prekeys > %d", ErrMalformed, st.X25519, st.MLKEM, pqxdh.MaxOneTime)
	}
	return StockInfo{X25519: int(st.X25519), MLKEM: int(st.MLKEM), NextX25519: st.NextX25519, NextMLKEM: st.NextMLKEM}, nil
}

func (c *Client) publish(ctx context.Context, relay peer.ID, list *identity.DeviceList, bundle *pqxdh.Bundle, rec *Record) (*statusMsg, error) {
	if list == nil {
		return nil, fmt.Errorf("directory: publish: %w: nil device list", ErrMalformed)
	}
	m := &publishMsg{}
	var err error
	if m.List, err = list.MarshalBinary(); err != nil {
		return nil, fmt.Errorf("directory: publish: %w", foreign(err))
	}
	if bundle != nil {
		if m.Bundle, err = bundle.MarshalBinary(); err != nil {
			return nil, fmt.Errorf("directory: publish: %w", foreign(err))
		}
	}
	if rec != nil {
		if m.Record, err = rec.MarshalBinary(); err != nil {
			return nil, fmt.Errorf("directory: publish: %w", err)
		}
	}
	frame := appendFrame(nil, m)
	if n := len(frame) - headerSize; n > MaxPublishSize {
		return nil, fmt.Errorf("directory: publish: %w: %d bytes > %d", ErrTooLarge, n, MaxPublishSize)
	}
	ans, err := c.roundTrip(ctx, relay, frame)
	if err != nil {
		return nil, fmt.Errorf("directory: publish: %w", err)
	}
	st, ok := ans.(*statusMsg)
	if !ok {
		return nil, fmt.Errorf("directory: publish: %w: answer of type 0x%02x", ErrMalformed, uint8(ans.frameType()))
	}
	if st.Code != CodeOK {
		return nil, fmt.Errorf("directory: publish: %w", &RefusalError{Code: st.Code, Message: st.Message})
	}
	if st.HasStock && (st.X25519 > pqxdh.MaxOneTime || st.MLKEM > pqxdh.MaxOneTime) {
		return nil, fmt.Errorf("directory: publish: %w: stock %d+%d > %d", ErrMalformed, st.X25519, st.MLKEM, pqxdh.MaxOneTime)
	}
	return st, nil
}

// Fetch returns account's device list and, for each listed device, a
// bundle (taking one one-time prekey of each kind from the relay's pool)
// and record. It verifies the list against account, each bundle against
// its device certificate and each record's signature, and fails with
// ErrBadSignature, ErrUnlisted or ErrMalformed if the relay sent anything
// else. An account the relay does not know fails with ErrNotFound; a peer
// over the relay's rate of fetches with ErrRateLimited. A bundle may come
// without one-time prekeys (the relay has none left, or its rate of
// handing them out was reached); its signed and last-resort prekeys start
// a session all the same.
//
// Fetch trusts the first list it sees for account; a caller that already
// knows a list uses FetchSince.
func (c *Client) Fetch(ctx context.Context, relay peer.ID, account identity.AccountID) (*Result, error) {
	return c.FetchSince(ctx, relay, account, nil)
}

// FetchSince is Fetch that also checks the relay's list against known,
// the newest list of account the caller has accepted (nil if none): a
// relay serving an older list fails with ErrRollback, a contradicting one
// with ErrFork, and one more than a version ahead with ErrGap (the caller
// must then obtain the versions in between).
func (c *Client) FetchSince(ctx context.Context, relay peer.ID, account identity.AccountID, known *identity.DeviceList) (*Result, error) {
	if known != nil && known.Account != account {
		return nil, fmt.Errorf("directory: fetch: known list is of %s, not %s", known.Account, account)
	}
	ans, err := c.roundTrip(ctx, relay, appendFrame(nil, &fetchMsg{Account: account}))
	if err != nil {
		return nil, fmt.Errorf("directory: fetch: %w", err)
	}
	res, err := readAnswer(ans, account, known)
	if err != nil {
		return nil, fmt.Errorf("directory: fetch %s: %w", account, err)
	}
	return res, nil
}

// History returns account's lists with versions from..to (inclusive),
// oldest first, each verified under account and the versions consecutive
// from from. It asks as many times as the relay's answers need
// (MaxHistoryLists per answer). A relay that no longer keeps a version
// in the range (or never had it) makes History fail with ErrGap; one that
// sends anything else, with ErrBadSignature or ErrMalformed.
func (c *Client) History(ctx context.Context, relay peer.ID, account identity.AccountID, from, to uint64) ([]*identity.DeviceList, error) {
	if from == 0 || to < from || to-from >= maxHistory {
		return nil, fmt.Errorf("directory: history: %w: range %d..%d", ErrMalformed, from, to)
	}
	var out []*identity.DeviceList
	for next := from; next <= to; {
		ans, err := c.roundTrip(ctx, relay, appendFrame(nil, &historyMsg{Account: account, From: next, To: to}))
		if err != nil {
			return nil, fmt.Errorf("directory: history: %w", err)
		}
		var m *listsMsg
		switch a := ans.(type) {
		case *statusMsg:
			return nil, fmt.Errorf("directory: history: %w", &RefusalError{Code: a.Code, Message: a.Message})
		case *listsMsg:
			m = a
		default:
			return nil, fmt.Errorf("directory: history: %w: answer of type 0x%02x", ErrMalformed, uint8(ans.frameType()))
		}
		if len(m.Lists) == 0 {
			return nil, fmt.Errorf("directory: history of %s: %w: the relay keeps no v%d", account, ErrGap, next)
		}
		for _, raw := range m.Lists {
			l, err := identity.ParseDeviceList(raw)
			if err != nil {
				return nil, fmt.Errorf("directory: history: %w", foreign(err))
			}
			if err := l.Verify(account); err != nil {
				return nil, fmt.Errorf("directory: history: %w", foreign(err))
			}
			if l.Version != next {
				return nil, fmt.Errorf("directory: history of %s: %w: v%d where v%d belongs", account, ErrGap, l.Version, next)
			}
			out = append(out, l)
			next++
			if next > to {
				break
			}
		}
	}
	return out, nil
}

// readAnswer checks a relay's answer to a Fetch for account.
func readAnswer(ans message, account identity.AccountID, known *identity.DeviceList) (*Result, error) {
	switch m := ans.(type) {
	case *statusMsg:
		if m.Code == CodeOK {
			return nil, fmt.Errorf("%w: status OK without entries", ErrMalformed)
		}
		return nil, &RefusalError{Code: m.Code, Message: m.Message}
	case *entriesMsg:
		return verifyEntries(m, account, known)
	}
	return nil, fmt.Errorf("%w: answer of type 0x%02x", ErrMalformed, uint8(ans.frameType()))
}

// verifyEntries turns an Entries frame into a Result, verifying all of it.
func verifyEntries(m *entriesMsg, account identity.AccountID, known *identity.DeviceList) (*Result, error) {
	list, err := identity.ParseDeviceList(m.List)
	if err != nil {
		return nil, foreign(err)
	}
	if err := list.Verify(account); err != nil {
		return nil, foreign(err)
	}
	if known != nil {
		if err := list.CheckUpdate(known); err != nil {
			return nil, foreign(err)
		}
	}
	res := &Result{List: list, Devices: make([]DeviceEntry, len(list.Devices))}
	for i := range list.Devices {
		cert := list.Devices[i]
		res.Devices[i].Cert = &cert
	}
	seen := make(map[identity.DeviceID]bool, len(m.Entries))
	for i := range m.Entries {
		e := &m.Entries[i]
		if seen[e.Device] {
			return nil, fmt.Errorf("%w: device %s answered twice", ErrMalformed, e.Device)
		}
		seen[e.Device] = true
		var de *DeviceEntry
		for j := range res.Devices {
			if res.Devices[j].Cert.Device == e.Device {
				de = &res.Devices[j]
			}
		}
		if de == nil {
			return nil, fmt.Errorf("%w: entry for %s", ErrUnlisted, e.Device)
		}
		if len(e.Bundle) > 0 {
			b, err := pqxdh.ParseBundle(e.Bundle)
			if err != nil {
				return nil, foreign(err)
			}
			if len(b.OneTime) > 1 || len(b.OneTimePQ) > 1 {
				return nil, fmt.Errorf("%w: bundle of %s carries %d+%d one-time prekeys", ErrMalformed, e.Device, len(b.OneTime), len(b.OneTimePQ))
			}
			if err := b.Verify(de.Cert); err != nil {
				return nil, fmt.Errorf("bundle of %s: %w", e.Device, foreign(err))
			}
			de.Bundle = b
		}
		if len(e.Record) > 0 {
			r, err := ParseRecord(e.Record)
			if err != nil {
				return nil, err
			}
			if r.Device != e.Device {
				return nil, fmt.Errorf("%w: record of %s in the entry of %s", ErrUnlisted, r.Device, e.Device)
			}
			if err := r.Verify(); err != nil {
				return nil, err
			}
			de.Record = r
		}
	}
	return res, nil
}

// roundTrip sends one request frame on a new stream and reads the answer.
func (c *Client) roundTrip(ctx context.Context, relay peer.ID, frame []byte) (message, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, requestTimeout)
		defer cancel()
	}
	str, err := c.h.NewStream(ctx, relay, ProtocolID)
	if err != nil {
		return nil, err
	}
	// Cancelling ctx ends a blocked read or write at once.
	stop := context.AfterFunc(ctx, func() { _ = str.Reset() })
	defer stop()
	deadline, _ := ctx.Deadline()
	_ = str.SetDeadline(deadline)
	m, err := exchange(str, frame)
	if err != nil {
		_ = str.Reset()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, err
	}
	_ = str.Close()
	return m, nil
}

func exchange(str network.Stream, frame []byte) (message, error) {
	if _, err := str.Write(frame); err != nil {
		return nil, err
	}
	if err := str.CloseWrite(); err != nil {
		return nil, err
	}
	fr := newFrameReader(str)
	t, n, err := fr.header()
	if err == io.EOF {
		return nil, fmt.Errorf("relay closed the stream without answering: %w", io.ErrUnexpectedEOF)
	}
	if err != nil {
		return nil, err
	}
	if t != typeStatus && t != typeEntries && t != typeLists {
		return nil, fmt.Errorf("%w: answer of type 0x%02x", ErrMalformed, uint8(t))
	}
	body, err := fr.body(n)
	if err != nil {
		return nil, err
	}
	return decodeBody(t, body)
}

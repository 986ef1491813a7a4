package blobs

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/relay/internal/protoframe"
)

// StatusError is a relay's refusal.
type StatusError struct {
	Code Code
	Text string
}

func (e *StatusError) Error() string {
	if e.Text == "" {
		return "blobs: " + e.Code.String()
	}
	return fmt.Sprintf("blobs: %s: %s", e.Code, e.Text)
}

// ErrNotFound is what a Get answers for a blob the token does not read
// (absent, expired, or another's: the relay does not tell them apart).
var ErrNotFound = errors.New("blobs: not found")

// Is makes errors.Is(err, ErrNotFound) hold for CodeNotFound.
func (e *StatusError) Is(target error) bool { return target == ErrNotFound && e.Code == CodeNotFound }

// Client is the node side. Safe for concurrent use.
type Client struct {
	h     host.Host
	proto protocol.ID
}

// NewClient returns a client of relays' blob stores that opens streams
// from h.
func NewClient(h host.Host) *Client { return &Client{h: h, proto: ProtocolID} }

// NewClientFor is NewClient for a store served on another protocol (a
// node's own files).
func NewClientFor(h host.Host, proto protocol.ID) *Client { return &Client{h: h, proto: proto} }

// NewToken draws a read capability.
func NewToken(rand interface{ Read([]byte) (int, error) }) (Token, error) {
	var t Token
	if _, err := rand.Read(t[:]); err != nil {
		return Token{}, fmt.Errorf("blobs: %w", err)
	}
	return t, nil
}

func (c *Client) roundTrip(ctx context.Context, relay peer.ID, t uint8, body []byte, want uint8) ([]byte, error) {
	str, err := c.h.NewStream(network.WithAllowLimitedConn(ctx, "peergram-blobs"), relay, c.proto)
	if err != nil {
		return nil, fmt.Errorf("blobs: %w", err)
	}
	defer str.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = str.SetDeadline(dl)
	} else {
		_ = str.SetDeadline(time.Now().Add(2 * time.Minute))
	}
	if _, err := str.Write(protoframe.Frame(t, body)); err != nil {
		str.Reset()
		return nil, fmt.Errorf("blobs: %w", err)
	}
	_ = str.CloseWrite()
	got, b, err := protoframe.Read(str, func(ft uint8) (int, bool) {
		if ft == want || ft == typeStatus {
			return bound(ft)
		}
		return 0, false
	})
	if err != nil {
		str.Reset()
		return nil, fmt.Errorf("blobs: %w", err)
	}
	if got == typeStatus {
		st, err := decodeStatus(b)
		if err != nil {
			return nil, fmt.Errorf("blobs: %w", err)
		}
		if st.Code == CodeOK && want == typeStatus {
			return nil, nil
		}
		return nil, &StatusError{Code: st.Code, Text: st.Text}
	}
	return b, nil
}

// Put uploads data (a chunk's ciphertext) to relay, readable with token,
// charged to the account of dev's certificate.
func (c *Client) Put(ctx context.Context, relay peer.ID, dev *identity.DeviceKey, cert *identity.DeviceCert, token Token, data []byte) error {
	rawCert, err := cert.MarshalBinary()
	if err != nil {
		return fmt.Errorf("blobs: %w", err)
	}
	m := &putMsg{Hash: sha256.Sum256(data), TokenHash: token.hash(), Cert: rawCert, Time: time.Now().UnixMilli(), Data: data}
	m.Sig = dev.Sign(PutLabel, putSigned(string(relay), m.Hash, m.TokenHash, m.Time))
	_, err = c.roundTrip(ctx, relay, typePut, m.appendBody(nil), typeStatus)
	return err
}

// Get reads length bytes (0: to the end) of blob hash from offset; it
// returns them and the blob's whole size. ErrNotFound: the token reads
// no such blob.
func (c *Client) Get(ctx context.Context, relay peer.ID, token Token, hash [32]byte, offset, length uint64) ([]byte, uint64, error) {
	b, err := c.roundTrip(ctx, relay, typeGet, (&getMsg{Hash: hash, Token: token, Offset: offset, Length: length}).appendBody(nil), typeData)
	if err != nil {
		return nil, 0, err
	}
	d, err := decodeData(b)
	if err != nil {
		return nil, 0, fmt.Errorf("blobs: %w", err)
	}
	if uint64(len(d.Data)) > d.Size || (length > 0 && uint64(len(d.Data)) > length) {
		return nil, 0, fmt.Errorf("blobs: %w: %d bytes for a range of %d", protoframe.ErrMalformed, len(d.Data), length)
	}
	return d.Data, d.Size, nil
}

// Has returns, for each of hashes, whether the relay holds it for token.
func (c *Client) Has(ctx context.Context, relay peer.ID, token Token, hashes [][32]byte) ([]bool, error) {
	if len(hashes) > MaxHashes {
		return nil, fmt.Errorf("blobs: %d hashes in one request (at most %d)", len(hashes), MaxHashes)
	}
	b, err := c.roundTrip(ctx, relay, typeHas, (&hasMsg{Token: token, Hashes: hashes}).appendBody(nil), typeHave)
	if err != nil {
		return nil, err
	}
	h, err := decodeHave(b, len(hashes))
	if err != nil {
		return nil, fmt.Errorf("blobs: %w", err)
	}
	out := make([]bool, len(hashes))
	for _, i := range h.Index {
		out[i] = true
	}
	return out, nil
}

// Delete drops the references of dev's account to hashes; a blob goes
// once no account references it.
func (c *Client) Delete(ctx context.Context, relay peer.ID, dev *identity.DeviceKey, cert *identity.DeviceCert, hashes [][32]byte) error {
	if len(hashes) > MaxHashes {
		return fmt.Errorf("blobs: %d hashes in one request (at most %d)", len(hashes), MaxHashes)
	}
	rawCert, err := cert.MarshalBinary()
	if err != nil {
		return fmt.Errorf("blobs: %w", err)
	}
	m := &deleteMsg{Hashes: hashes, Cert: rawCert, Time: time.Now().UnixMilli()}
	m.Sig = dev.Sign(DeleteLabel, deleteSigned(string(relay), m.Time, hashes))
	_, err = c.roundTrip(ctx, relay, typeDelete, m.appendBody(nil), typeStatus)
	return err
}

// GetMany reads whole blobs hashes (at most MaxHashes) with token over one
// stream, in order, handing each to fn as it arrives (fn gets a nil
// blob and the error for one the relay refuses); it stops at fn's first
// error. One stream for many blobs keeps its flow-control window open
// between them.
func (c *Client) GetMany(ctx context.Context, relay peer.ID, token Token, hashes [][32]byte, fn func(i int, data []byte, err error) error) error {
	if len(hashes) > MaxHashes {
		return fmt.Errorf("blobs: %d hashes in one request (at most %d)", len(hashes), MaxHashes)
	}
	str, err := c.h.NewStream(network.WithAllowLimitedConn(ctx, "peergram-blobs"), relay, c.proto)
	if err != nil {
		return fmt.Errorf("blobs: %w", err)
	}
	defer str.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = str.SetDeadline(dl)
	} else {
		_ = str.SetDeadline(time.Now().Add(10 * time.Minute))
	}
	werr := make(chan error, 1)
	go func() {
		var buf []byte
		for _, h := range hashes {
			buf = append(buf, protoframe.Frame(typeGet, (&getMsg{Hash: h, Token: token}).appendBody(nil))...)
		}
		_, err := str.Write(buf)
		if err == nil {
			err = str.CloseWrite()
		}
		werr <- err
	}()
	for i := range hashes {
		t, b, err := protoframe.Read(str, func(ft uint8) (int, bool) {
			if ft == typeData || ft == typeStatus {
				return bound(ft)
			}
			return 0, false
		})
		if err != nil {
			str.Reset()
			return fmt.Errorf("blobs: %w", err)
		}
		var data []byte
		var ferr error
		if t == typeStatus {
			st, err := decodeStatus(b)
			if err != nil {
				str.Reset()
				return fmt.Errorf("blobs: %w", err)
			}
			ferr = &StatusError{Code: st.Code, Text: st.Text}
			if st.Code == CodeMalformed || st.Code == CodeRateLimited {
				// The relay ends the stream after these.
				_ = fn(i, nil, ferr)
				return ferr
			}
		} else {
			d, err := decodeData(b)
			if err != nil || uint64(len(d.Data)) != d.Size {
				str.Reset()
				return fmt.Errorf("blobs: %w: a blob of %d bytes said to be %d", protoframe.ErrMalformed, len(d.Data), d.Size)
			}
			data = d.Data
		}
		if err := fn(i, data, ferr); err != nil {
			str.Reset()
			return err
		}
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("blobs: %w", err)
	}
	return nil
}

// PutMany uploads n blobs (data(i) gives blob i) over one stream, as Put
// does each, and hands each answer to fn in order (nil for stored); it
// stops at fn's first error. Frames go out while answers come back, so
// the relay's writes overlap the transfer.
func (c *Client) PutMany(ctx context.Context, relay peer.ID, dev *identity.DeviceKey, cert *identity.DeviceCert, token Token, n int, data func(i int) ([]byte, error), fn func(i int, err error) error) error {
	if n > MaxHashes {
		return fmt.Errorf("blobs: %d blobs in one request (at most %d)", n, MaxHashes)
	}
	rawCert, err := cert.MarshalBinary()
	if err != nil {
		return fmt.Errorf("blobs: %w", err)
	}
	str, err := c.h.NewStream(network.WithAllowLimitedConn(ctx, "peergram-blobs"), relay, c.proto)
	if err != nil {
		return fmt.Errorf("blobs: %w", err)
	}
	defer str.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = str.SetDeadline(dl)
	} else {
		_ = str.SetDeadline(time.Now().Add(10 * time.Minute))
	}
	werr := make(chan error, 1)
	go func() {
		for i := range n {
			b, err := data(i)
			if err != nil {
				werr <- err
				str.Reset()
				return
			}
			m := &putMsg{Hash: sha256.Sum256(b), TokenHash: token.hash(), Cert: rawCert, Time: time.Now().UnixMilli(), Data: b}
			m.Sig = dev.Sign(PutLabel, putSigned(string(relay), m.Hash, m.TokenHash, m.Time))
			if _, err := str.Write(protoframe.Frame(typePut, m.appendBody(nil))); err != nil {
				werr <- err
				return
			}
		}
		werr <- str.CloseWrite()
	}()
	for i := range n {
		_, b, err := protoframe.Read(str, func(ft uint8) (int, bool) {
			if ft == typeStatus {
				return bound(ft)
			}
			return 0, false
		})
		if err != nil {
			str.Reset()
			if werr := <-werr; werr != nil {
				return fmt.Errorf("blobs: %w", werr)
			}
			return fmt.Errorf("blobs: %w", err)
		}
		st, err := decodeStatus(b)
		if err != nil {
			str.Reset()
			return fmt.Errorf("blobs: %w", err)
		}
		var ferr error
		if st.Code != CodeOK {
			ferr = &StatusError{Code: st.Code, Text: st.Text}
		}
		if err := fn(i, ferr); err != nil {
			str.Reset()
			return err
		}
		if ferr != nil && (st.Code == CodeMalformed || st.Code == CodeRateLimited) {
			str.Reset()
			return ferr // the relay ends the stream after these
		}
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("blobs: %w", err)
	}
	return nil
}

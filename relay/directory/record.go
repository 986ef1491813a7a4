package directory

import (
	"crypto/ed25519"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/peergram/peergram/crypto/identity"
)

const (
	// recordLabel separates record signatures from every other use of a
	// device key (see crypto/identity, "Domain separation").
	recordLabel = "peergram/directory/record/v1"

	recordV1 = 0x01

	// MaxRelays is the most home relays a Record names.
	MaxRelays = 8
	// MaxRelayLen is the longest relay multiaddr of a Record, in bytes.
	MaxRelayLen = 256
	// maxPeerIDLen bounds a record's peer ID: libp2p inlines keys of up to
	// 42 bytes (identity multihash) and hashes larger ones (34 bytes).
	maxPeerIDLen = 64

	// maxRecordSize is the largest encoded Record.
	maxRecordSize = 1 + 32 + 8 + 4 + maxPeerIDLen + 4 + MaxRelays*(4+MaxRelayLen) + ed25519.SignatureSize
)

// Record tells others how to reach a device: its libp2p peer ID (the
// transport key, separate from its end-to-end keys) and its home relays.
// The device signs it, so a relay cannot redirect a device's traffic. A
// newer Issued replaces an older record; an older one is refused.
type Record struct {
	Device identity.DeviceID
	PeerID peer.ID  // the device's libp2p peer ID
	Relays []string // home relay multiaddrs ending in /p2p/<relay ID>; at most MaxRelays of MaxRelayLen bytes
	Issued int64    // Unix seconds
	Sig    []byte   // Ed25519 by Device, label "peergram/directory/record/v1"
}

// SignRecord returns r signed by dev: Device is set to dev's ID and each
// relay address is rewritten in its canonical multiaddr form. It fails
// with ErrMalformed if a field is out of bounds.
func SignRecord(dev *identity.DeviceKey, r Record) (*Record, error) {
	out := &Record{Device: dev.ID(), PeerID: r.PeerID, Issued: r.Issued}
	if len(r.Relays) > MaxRelays {
		return nil, fmt.Errorf("directory: sign record: %w: %d relays > %d", ErrMalformed, len(r.Relays), MaxRelays)
	}
	for _, s := range r.Relays {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("directory: sign record: %w: relay %q: %v", ErrMalformed, s, err)
		}
		out.Relays = append(out.Relays, a.String())
	}
	if err := out.check(); err != nil {
		return nil, fmt.Errorf("directory: sign record: %w", err)
	}
	out.Sig = dev.Sign(recordLabel, out.signedBytes())
	return out, nil
}

// Verify checks that r is well formed and signed by r.Device. It says
// nothing about whether the device is on its account's list: the caller
// checks that (the Server and Client do).
func (r *Record) Verify() error {
	if err := r.check(); err != nil {
		return fmt.Errorf("directory: verify record: %w", err)
	}
	if len(r.Sig) != ed25519.SignatureSize {
		return fmt.Errorf("directory: verify record: %w: signature of %d bytes", ErrMalformed, len(r.Sig))
	}
	if !identity.Verify(r.Device.PublicKey(), recordLabel, r.signedBytes(), r.Sig) {
		return fmt.Errorf("directory: verify record of %s: %w", r.Device, ErrBadSignature)
	}
	return nil
}

// MarshalBinary encodes r. It fails if a field is out of bounds; it does
// not check the signature.
func (r *Record) MarshalBinary() ([]byte, error) {
	if err := r.check(); err != nil {
		return nil, fmt.Errorf("directory: marshal record: %w", err)
	}
	if len(r.Sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("directory: marshal record: %w: signature of %d bytes", ErrMalformed, len(r.Sig))
	}
	b := r.appendSigned(make([]byte, 0, r.encodedLen()))
	return append(b, r.Sig...), nil
}

// ParseRecord decodes a record. The encoding is canonical: MarshalBinary
// of the result returns b. It checks bounds, not the signature: call
// Verify.
func ParseRecord(b []byte) (*Record, error) {
	rd := newReader(b)
	if v := rd.U8(); rd.Err() == nil && v != recordV1 {
		return nil, fmt.Errorf("directory: parse record: %w: %#x", ErrUnknownVersion, v)
	}
	r := &Record{}
	rd.Fixed(r.Device[:])
	r.Issued = int64(rd.U64())
	r.PeerID = peer.ID(rd.var32(maxPeerIDLen))
	n := rd.count(MaxRelays, 4)
	for range n {
		r.Relays = append(r.Relays, string(rd.var32(MaxRelayLen)))
	}
	r.Sig = slices.Clone(rd.Take(ed25519.SignatureSize))
	if err := rd.finish(); err != nil {
		return nil, fmt.Errorf("directory: parse record: %w", err)
	}
	if err := r.check(); err != nil {
		return nil, fmt.Errorf("directory: parse record: %w", err)
	}
	return r, nil
}

// check enforces the bounds and forms that Marshal, Parse and Verify share.
func (r *Record) check() error {
	if len(r.PeerID) == 0 || len(r.PeerID) > maxPeerIDLen {
		return fmt.Errorf("%w: peer ID of %d bytes", ErrMalformed, len(r.PeerID))
	}
	if _, err := peer.IDFromBytes([]byte(r.PeerID)); err != nil {
		return fmt.Errorf("%w: peer ID: %v", ErrMalformed, err)
	}
	if len(r.Relays) > MaxRelays {
		return fmt.Errorf("%w: %d relays > %d", ErrMalformed, len(r.Relays), MaxRelays)
	}
	for i, s := range r.Relays {
		if err := checkRelay(s); err != nil {
			return fmt.Errorf("%w: relay %d: %v", ErrMalformed, i, err)
		}
	}
	return nil
}

// checkRelay accepts a canonical multiaddr that names the relay's peer ID
// last, the form peer.AddrInfoFromP2pAddr needs.
func checkRelay(s string) error {
	if len(s) == 0 || len(s) > MaxRelayLen {
		return fmt.Errorf("%d bytes, want 1..%d", len(s), MaxRelayLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("not UTF-8")
	}
	a, err := ma.NewMultiaddr(s)
	if err != nil {
		return err
	}
	if a.String() != s {
		return fmt.Errorf("%q is not canonical (%q)", s, a.String())
	}
	if _, err := peer.IDFromP2PAddr(a); err != nil {
		return fmt.Errorf("%q does not end in /p2p/<peer ID>", s)
	}
	return nil
}

// signedBytes is the encoding without the signature.
func (r *Record) signedBytes() []byte {
	return r.appendSigned(make([]byte, 0, r.encodedLen()))
}

func (r *Record) appendSigned(b []byte) []byte {
	b = append(b, recordV1)
	b = append(b, r.Device[:]...)
	b = appendU64(b, uint64(r.Issued))
	b = appendVar32(b, []byte(r.PeerID))
	b = appendU32(b, uint32(len(r.Relays)))
	for _, s := range r.Relays {
		b = appendVar32(b, []byte(s))
	}
	return b
}

func (r *Record) encodedLen() int {
	n := 1 + 32 + 8 + 4 + len(r.PeerID) + 4 + ed25519.SignatureSize
	for _, s := range r.Relays {
		n += 4 + len(s)
	}
	return n
}

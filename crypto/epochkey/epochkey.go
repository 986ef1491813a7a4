// Package epochkey is the encryption tier of large groups and channels: an
// admin draws a random key for an epoch, wraps it for every member device
// with HPKE (RFC 9180, crypto/hpke: DHKEM(X25519), HKDF-SHA256,
// AES-256-GCM) to the device's certified X25519 key, and signs the wrapped
// copies; members encrypt group messages under the epoch key and sign them
// with their device keys.
//
// Why a second tier: Sender Keys (package senderkey) give every message
// its own key and forward secrecy, but every member must hand its chain
// to every other member over pairwise sessions — n² distributions, which
// stops scaling around a thousand members. An epoch key costs one wrap per
// member device per epoch, made by one admin. What it gives up: within an
// epoch there is no forward secrecy (whoever obtains the epoch key reads
// the whole epoch), and every member can decrypt every message of the
// epoch from the moment it receives the key. What it keeps: nobody outside
// the group (relays included) reads anything; a member removed or banned
// gets no copy of the next epoch's key, so it cannot read what is sent
// after the rotation; a member cannot write in another's name (messages
// travel in envelopes signed by device keys, and a message opens only as
// one of the device that signed its envelope).
//
// # Encodings (crypto/internal/wire)
//
//	Grants (one page of wrapped copies, signed by the admin's device):
//	  version(1)=1 || group[32] || epoch u64 || cert Var || count u32 ||
//	  count × (device[32] || wrapped Var) || sig[64]
//	  wrapped = HPKE single-shot Seal of the 32-byte key, info =
//	  "peergram/epoch/wrap/v1" || group || epoch || device.
//	Message: version(1)=1 || epoch u64 || nonce[12] || ciphertext
//	  key = HKDF-SHA256(epoch key, info "peergram/epoch/msg/v1" || sender
//	  device), AES-256-GCM, associated data "peergram/epoch/ad/v1" ||
//	  group || sender device || header. Not signed: the group envelope
//	  around it is (crypto/groupmsg).
package epochkey

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/internal/wire"
)

const (
	version    = 1
	labelWrap  = "peergram/epoch/wrap/v1"
	labelMsg   = "peergram/epoch/msg/v1"
	labelAD    = "peergram/epoch/ad/v1"
	labelGrant = "peergram/epoch/grants/v1"

	// PageGrants is the most wrapped copies in one Grants (116 bytes
	// each), so that a page fits one group envelope (groupmsg.MaxPayload,
	// 257 KiB): 300,000 devices take 150 pages.
	PageGrants = 2000
	// MaxPlaintext bounds a message's plaintext.
	MaxPlaintext = 256 << 10
	wrappedSize  = 32 + 32 + 16 // X25519 enc, key, tag
	headerSize   = 1 + 8 + 12
	maxCert      = 512
)

// Errors.
var (
	ErrMalformed = errors.New("epochkey: malformed")
	ErrAuth      = errors.New("epochkey: authentication failed")
	ErrNoGrant   = errors.New("epochkey: no copy of the key for this device")
	ErrWrongKey  = errors.New("epochkey: message of another epoch")
)

// Key is an epoch's key.
type Key struct {
	Group  [32]byte
	Epoch  uint64
	Secret [32]byte
}

// NewKey draws the key of epoch for group.
func NewKey(rand io.Reader, group [32]byte, epoch uint64) (Key, error) {
	k := Key{Group: group, Epoch: epoch}
	if _, err := io.ReadFull(rand, k.Secret[:]); err != nil {
		return Key{}, fmt.Errorf("epochkey: %w", err)
	}
	return k, nil
}

// Grant is one device's wrapped copy of an epoch key.
type Grant struct {
	Device  identity.DeviceID
	Wrapped []byte
}

// Grants is a page of wrapped copies of one epoch key, signed by the
// device (Cert) of the admin that made it. Whether that admin may
// distribute keys is the group log's business (package groupstate).
type Grants struct {
	Group  [32]byte
	Epoch  uint64
	Cert   identity.DeviceCert
	Grants []Grant
	Sig    []byte
}

// Wrap wraps k for every device of members (certificates the caller has
// verified against the members' device lists), signed by the admin's
// device, in pages of at most PageGrants. A device whose key cannot be
// wrapped for (a low-order X25519 point, which a certificate does not
// exclude) is left out, so that one bad device cannot stop a group's
// rotation; the pages say who got a copy.
func Wrap(admin *identity.DeviceKey, cert *identity.DeviceCert, k Key, members []identity.DeviceCert) ([]*Grants, error) {
	if cert.Device != admin.ID() {
		return nil, fmt.Errorf("%w: certificate of another device", ErrAuth)
	}
	var pages []*Grants
	for start := 0; start < len(members) || start == 0; start += PageGrants {
		g := &Grants{Group: k.Group, Epoch: k.Epoch, Cert: *cert}
		for _, m := range members[start:min(start+PageGrants, len(members))] {
			pub, err := ecdh.X25519().NewPublicKey(m.DH[:])
			if err != nil {
				continue
			}
			pk, err := hpke.NewDHKEMPublicKey(pub)
			if err != nil {
				continue
			}
			ct, err := hpke.Seal(pk, hpke.HKDFSHA256(), hpke.AES256GCM(), wrapInfo(k.Group, k.Epoch, m.Device), k.Secret[:])
			if err != nil {
				continue // a low-order point
			}
			g.Grants = append(g.Grants, Grant{Device: m.Device, Wrapped: ct})
		}
		body, err := g.signedBytes()
		if err != nil {
			return nil, err
		}
		g.Sig = admin.Sign(labelGrant, body)
		pages = append(pages, g)
		if len(members) == 0 {
			break
		}
	}
	return pages, nil
}

func wrapInfo(group [32]byte, epoch uint64, dev identity.DeviceID) []byte {
	w := wire.NewWriter(len(labelWrap) + 32 + 8 + 32)
	w.Fixed([]byte(labelWrap))
	w.Fixed(group[:])
	w.Uint64(epoch)
	w.Fixed(dev[:])
	return w.Bytes()
}

func (g *Grants) signedBytes() ([]byte, error) {
	cert, err := g.Cert.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	w := wire.NewWriter(64 + len(cert) + len(g.Grants)*(32+4+wrappedSize))
	w.Byte(version)
	w.Fixed(g.Group[:])
	w.Uint64(g.Epoch)
	w.Var(cert)
	w.Uint32(uint32(len(g.Grants)))
	for _, gr := range g.Grants {
		w.Fixed(gr.Device[:])
		w.Var(gr.Wrapped)
	}
	return w.Bytes(), nil
}

// MarshalBinary encodes a page of grants.
func (g *Grants) MarshalBinary() ([]byte, error) {
	body, err := g.signedBytes()
	if err != nil {
		return nil, err
	}
	return append(body, g.Sig...), nil
}

// ParseGrants decodes a page and checks the admin's certificate and
// signature.
func ParseGrants(b []byte) (*Grants, error) {
	r := wire.NewReader(b)
	if v := r.Byte(); r.Err() == nil && v != version {
		return nil, fmt.Errorf("%w: version %d", ErrMalformed, v)
	}
	g := &Grants{}
	r.FixedInto(g.Group[:])
	g.Epoch = r.Uint64()
	certRaw := r.Var(maxCert)
	n := r.Count(PageGrants, 32+4+wrappedSize)
	for range n {
		var gr Grant
		r.FixedInto(gr.Device[:])
		gr.Wrapped = r.Var(wrappedSize)
		g.Grants = append(g.Grants, gr)
	}
	g.Sig = r.Fixed(ed25519.SignatureSize)
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	cert, err := identity.ParseDeviceCert(certRaw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := cert.Verify(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAuth, err)
	}
	g.Cert = *cert
	if !identity.Verify(cert.Device.PublicKey(), labelGrant, b[:len(b)-ed25519.SignatureSize], g.Sig) {
		return nil, ErrAuth
	}
	return g, nil
}

// Unwrap returns the epoch key from the copy for dev.
func (g *Grants) Unwrap(dev *identity.DeviceKey) (Key, error) {
	for _, gr := range g.Grants {
		if gr.Device != dev.ID() {
			continue
		}
		sk, err := hpke.NewDHKEMPrivateKey(dev.DH())
		if err != nil {
			return Key{}, fmt.Errorf("epochkey: %w", err)
		}
		pt, err := hpke.Open(sk, hpke.HKDFSHA256(), hpke.AES256GCM(), wrapInfo(g.Group, g.Epoch, gr.Device), gr.Wrapped)
		if err != nil || len(pt) != 32 {
			return Key{}, fmt.Errorf("%w: the copy for this device does not open", ErrAuth)
		}
		k := Key{Group: g.Group, Epoch: g.Epoch}
		copy(k.Secret[:], pt)
		return k, nil
	}
	return Key{}, ErrNoGrant
}

// Header is a message's clear part.
type Header struct {
	Epoch uint64
}

// Seal encrypts plaintext under k as a message of device sender. It is
// not signed: it travels in a group envelope (crypto/groupmsg) signed by
// the sender's device, and the receiver opens it as a message of the
// device that signed the envelope (a member that encrypts under the
// epoch key as another device makes a message that does not open as its
// own).
func Seal(rand io.Reader, k Key, sender identity.DeviceID, plaintext []byte) ([]byte, error) {
	if len(plaintext) > MaxPlaintext {
		return nil, fmt.Errorf("%w: %d bytes of plaintext", ErrMalformed, len(plaintext))
	}
	aead, err := messageCipher(k, sender)
	if err != nil {
		return nil, err
	}
	hdr := make([]byte, headerSize, headerSize+len(plaintext)+aead.Overhead())
	hdr[0] = version
	binary.BigEndian.PutUint64(hdr[1:9], k.Epoch)
	if _, err := io.ReadFull(rand, hdr[9:headerSize]); err != nil {
		return nil, fmt.Errorf("epochkey: %w", err)
	}
	return aead.Seal(hdr, hdr[9:headerSize], plaintext, ad(k.Group, sender, hdr)), nil
}

func ad(group [32]byte, sender identity.DeviceID, hdr []byte) []byte {
	b := make([]byte, 0, len(labelAD)+64+len(hdr))
	b = append(b, labelAD...)
	b = append(b, group[:]...)
	b = append(b, sender[:]...)
	return append(b, hdr...)
}

// PeekHeader returns a message's header (unauthenticated), to pick the
// epoch's key.
func PeekHeader(msg []byte) (Header, error) {
	if len(msg) < headerSize+16 {
		return Header{}, fmt.Errorf("%w: %d bytes", ErrMalformed, len(msg))
	}
	if msg[0] != version {
		return Header{}, fmt.Errorf("%w: version %d", ErrMalformed, msg[0])
	}
	return Header{Epoch: binary.BigEndian.Uint64(msg[1:9])}, nil
}

// Open decrypts msg, a message of device sender (as its envelope says),
// with k.
func Open(k Key, sender identity.DeviceID, msg []byte) ([]byte, error) {
	h, err := PeekHeader(msg)
	if err != nil {
		return nil, err
	}
	if len(msg) > headerSize+MaxPlaintext+16 {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(msg))
	}
	if h.Epoch != k.Epoch {
		return nil, ErrWrongKey
	}
	aead, err := messageCipher(k, sender)
	if err != nil {
		return nil, err
	}
	hdr := msg[:headerSize]
	pt, err := aead.Open(nil, hdr[9:], msg[headerSize:], ad(k.Group, sender, hdr))
	if err != nil {
		return nil, ErrAuth
	}
	return pt, nil
}

func messageCipher(k Key, sender identity.DeviceID) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, k.Secret[:], nil, labelMsg+string(sender[:]), 32)
	if err != nil {
		return nil, fmt.Errorf("epochkey: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("epochkey: %w", err)
	}
	return cipher.NewGCM(block)
}

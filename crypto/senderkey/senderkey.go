// Package senderkey is Signal's Sender Keys for groups: each member device
// has its own sending chain in a group, hands the chain's current state
// (a Distribution) to every other member device over their pairwise
// end-to-end sessions, and then encrypts each group message once for all.
//
// Why: a group of n devices would otherwise cost n pairwise encryptions
// per message; with Sender Keys a message is sealed once and spread by
// gossip, and every member holding the sender's distribution opens it.
// Each message key comes from a hash chain (forward secrecy: a member that
// learns the chain state later cannot read earlier messages) and is used
// once (replays are refused). Removing a member means every remaining
// sender starts a new chain (a new KeyID) and distributes it to the
// remaining members only: the removed member cannot read what follows.
//
// Who sent a message is not this package's to prove. Every member holds
// every sender's chain, so a chain key proves nothing about its author;
// libsignal therefore signs each message with a per-chain key. Peergram's
// messages travel inside a group envelope signed by the sender's device
// (package crypto/groupmsg), which every node checks before forwarding; a
// second signature would double the cost and the size. So a message here
// binds its group and sending device as associated data (not sent: the
// envelope carries them), and the caller must open it only with the
// Receiver of the device that signed the envelope. A member that encrypts
// under another's chain then signs the envelope as itself, and the
// message does not open under its own chain.
//
// # Construction
//
//   - Chain: message key = HMAC-SHA-256(ck, 0x01), next chain key =
//     HMAC-SHA-256(ck, 0x02); iteration counts the keys used.
//   - Encryption: HKDF-SHA-256(IKM = message key, info
//     "peergram/senderkey/msg/v1") → AES-256 key ‖ 12-byte nonce, then
//     AES-256-GCM; associated data "peergram/senderkey/ad/v1" ‖ group[32]
//     ‖ device[32] ‖ header.
//   - Message: version(1)=1 ‖ keyID u32 ‖ iteration u32 ‖ ciphertext
//     (the rest). Header = the first 9 bytes.
//   - Bounds: a message may skip at most MaxSkip keys; at most
//     MaxSkippedKeys skipped keys are kept per chain (oldest dropped).
//
// The package is pure (no I/O, no clock); randomness is passed in.
package senderkey

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/internal/wire"
)

const (
	version    = 1
	labelMsg   = "peergram/senderkey/msg/v1"
	labelAD    = "peergram/senderkey/ad/v1"
	headerSize = 1 + 4 + 4
	tagSize    = 16

	// MaxSkip is the most keys one message may skip.
	MaxSkip = 2000
	// MaxSkippedKeys is the most skipped keys a Receiver keeps.
	MaxSkippedKeys = 2000
	// MaxPlaintext bounds a message's plaintext.
	MaxPlaintext = 256 << 10
)

// Errors.
var (
	ErrMalformed = errors.New("senderkey: malformed")
	ErrAuth      = errors.New("senderkey: authentication failed")
	ErrDuplicate = errors.New("senderkey: duplicate or replayed message")
	ErrTooFar    = errors.New("senderkey: message too far ahead")
	ErrWrongKey  = errors.New("senderkey: message of another chain")
	ErrExhausted = errors.New("senderkey: chain exhausted")
)

// Header names the chain and the key of a message (its group and device
// come from the envelope around it).
type Header struct {
	KeyID     uint32
	Iteration uint32
}

// Distribution is a chain's state as handed to another member: from it the
// member opens the chain's messages from Iteration on.
type Distribution struct {
	Group     [32]byte
	Device    identity.DeviceID
	KeyID     uint32
	Iteration uint32
	Chain     [32]byte
}

// Sender is a device's sending chain in a group.
type Sender struct {
	d Distribution // the current state
}

// NewSender starts a chain for device in group.
func NewSender(rand io.Reader, group [32]byte, device identity.DeviceID, keyID uint32) (*Sender, error) {
	s := &Sender{d: Distribution{Group: group, Device: device, KeyID: keyID}}
	if _, err := io.ReadFull(rand, s.d.Chain[:]); err != nil {
		return nil, fmt.Errorf("senderkey: %w", err)
	}
	return s, nil
}

// Distribution returns the chain's current state for other members: they
// open what is sent from now on, nothing before.
func (s *Sender) Distribution() Distribution { return s.d }

// KeyID is the chain's ID.
func (s *Sender) KeyID() uint32 { return s.d.KeyID }

// Seal encrypts plaintext with the chain's next key.
func (s *Sender) Seal(plaintext []byte) ([]byte, error) {
	if len(plaintext) > MaxPlaintext {
		return nil, fmt.Errorf("%w: %d bytes of plaintext", ErrMalformed, len(plaintext))
	}
	if s.d.Iteration == math.MaxUint32 {
		return nil, ErrExhausted
	}
	mk, next := step(&s.d.Chain)
	hdr := Header{KeyID: s.d.KeyID, Iteration: s.d.Iteration}.encode()
	aead, nonce, err := messageCipher(&mk)
	if err != nil {
		return nil, err
	}
	out := aead.Seal(hdr, nonce, plaintext, ad(&s.d, hdr))
	s.d.Chain, s.d.Iteration = next, s.d.Iteration+1
	return out, nil
}

// ad is a message's associated data: its group, device and header.
func ad(d *Distribution, hdr []byte) []byte {
	b := make([]byte, 0, len(labelAD)+64+len(hdr))
	b = append(b, labelAD...)
	b = append(b, d.Group[:]...)
	b = append(b, d.Device[:]...)
	return append(b, hdr...)
}

// PeekHeader returns a message's header (unauthenticated) so the caller
// can find the Receiver for it.
func PeekHeader(msg []byte) (Header, error) {
	var h Header
	if len(msg) < headerSize+tagSize {
		return h, fmt.Errorf("%w: %d bytes", ErrMalformed, len(msg))
	}
	if msg[0] != version {
		return h, fmt.Errorf("%w: version %d", ErrMalformed, msg[0])
	}
	r := wire.NewReader(msg[1:headerSize])
	h.KeyID = r.Uint32()
	h.Iteration = r.Uint32()
	return h, r.Finish()
}

func (h Header) encode() []byte {
	w := wire.NewWriter(headerSize)
	w.Byte(version)
	w.Uint32(h.KeyID)
	w.Uint32(h.Iteration)
	return w.Bytes()
}

type skippedKey struct {
	iter uint32
	mk   [32]byte
}

// Receiver opens one sender chain's messages.
type Receiver struct {
	d       Distribution
	skipped []skippedKey // oldest first
}

// NewReceiver starts reading a chain from its distribution.
func NewReceiver(d Distribution) (*Receiver, error) {
	return &Receiver{d: d}, nil
}

// KeyID is the chain's ID.
func (r *Receiver) KeyID() uint32 { return r.d.KeyID }

// Open decrypts msg, a message of this chain's group and device (as the
// envelope around it says). The Receiver changes only if it succeeds.
func (r *Receiver) Open(msg []byte) ([]byte, error) {
	h, err := PeekHeader(msg)
	if err != nil {
		return nil, err
	}
	if len(msg) > headerSize+MaxPlaintext+tagSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(msg))
	}
	if h.KeyID != r.d.KeyID {
		return nil, ErrWrongKey
	}
	hdr, ct := msg[:headerSize], msg[headerSize:]
	aad := ad(&r.d, hdr)
	// A skipped key?
	if h.Iteration < r.d.Iteration {
		for i, s := range r.skipped {
			if s.iter == h.Iteration {
				pt, err := open(&s.mk, ct, aad)
				if err != nil {
					return nil, err
				}
				r.skipped = append(r.skipped[:i:i], r.skipped[i+1:]...)
				return pt, nil
			}
		}
		return nil, ErrDuplicate
	}
	if h.Iteration-r.d.Iteration > MaxSkip {
		return nil, fmt.Errorf("%w: %d keys ahead", ErrTooFar, h.Iteration-r.d.Iteration)
	}
	// Walk a copy of the chain; keep it only if the message opens.
	chain := r.d.Chain
	var skipped []skippedKey
	for it := r.d.Iteration; it < h.Iteration; it++ {
		mk, next := step(&chain)
		skipped = append(skipped, skippedKey{iter: it, mk: mk})
		chain = next
	}
	mk, next := step(&chain)
	pt, err := open(&mk, ct, aad)
	if err != nil {
		return nil, err
	}
	r.skipped = append(r.skipped, skipped...)
	if over := len(r.skipped) - MaxSkippedKeys; over > 0 {
		r.skipped = append([]skippedKey(nil), r.skipped[over:]...)
	}
	r.d.Chain, r.d.Iteration = next, h.Iteration+1
	return pt, nil
}

func step(ck *[32]byte) (mk, next [32]byte) {
	m := hmac.New(sha256.New, ck[:])
	m.Write([]byte{1})
	m.Sum(mk[:0])
	m.Reset()
	m.Write([]byte{2})
	m.Sum(next[:0])
	return mk, next
}

func messageCipher(mk *[32]byte) (cipher.AEAD, []byte, error) {
	km, err := hkdf.Key(sha256.New, mk[:], nil, labelMsg, 32+12)
	if err != nil {
		return nil, nil, fmt.Errorf("senderkey: %w", err)
	}
	block, err := aes.NewCipher(km[:32])
	if err != nil {
		return nil, nil, fmt.Errorf("senderkey: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, fmt.Errorf("senderkey: %w", err)
	}
	return aead, km[32:], nil
}

func open(mk *[32]byte, ct, aad []byte) ([]byte, error) {
	aead, nonce, err := messageCipher(mk)
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, nonce, ct, aad)
	if err != nil {
		return nil, ErrAuth
	}
	return pt, nil
}

const (
	distV1     = 1
	senderV1   = 1
	receiverV1 = 1
	distSize   = 1 + 32 + 32 + 4 + 4 + 32
)

// MarshalBinary encodes a distribution (to send it over a pairwise
// session). It holds the chain key: never send it in the clear.
func (d Distribution) MarshalBinary() ([]byte, error) {
	w := wire.NewWriter(distSize)
	d.writeTo(w)
	return w.Bytes(), nil
}

func (d *Distribution) writeTo(w *wire.Writer) {
	w.Byte(distV1)
	w.Fixed(d.Group[:])
	w.Fixed(d.Device[:])
	w.Uint32(d.KeyID)
	w.Uint32(d.Iteration)
	w.Fixed(d.Chain[:])
}

func (d *Distribution) readFrom(r *wire.Reader) error {
	if v := r.Byte(); r.Err() == nil && v != distV1 {
		return fmt.Errorf("%w: distribution version %d", ErrMalformed, v)
	}
	r.FixedInto(d.Group[:])
	r.FixedInto(d.Device[:])
	d.KeyID = r.Uint32()
	d.Iteration = r.Uint32()
	r.FixedInto(d.Chain[:])
	return nil
}

// ParseDistribution decodes a distribution.
func ParseDistribution(b []byte) (Distribution, error) {
	var d Distribution
	r := wire.NewReader(b)
	if err := d.readFrom(r); err != nil {
		return Distribution{}, err
	}
	if err := r.Finish(); err != nil {
		return Distribution{}, fmt.Errorf("%w: distribution: %w", ErrMalformed, err)
	}
	return d, nil
}

// MarshalBinary encodes the sender's state (secret: store it only in the
// device's own store).
func (s *Sender) MarshalBinary() ([]byte, error) {
	w := wire.NewWriter(1 + distSize)
	w.Byte(senderV1)
	s.d.writeTo(w)
	return w.Bytes(), nil
}

// ParseSender decodes a sender's state.
func ParseSender(b []byte) (*Sender, error) {
	r := wire.NewReader(b)
	if v := r.Byte(); r.Err() == nil && v != senderV1 {
		return nil, fmt.Errorf("%w: sender version %d", ErrMalformed, v)
	}
	s := &Sender{}
	if err := s.d.readFrom(r); err != nil {
		return nil, err
	}
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("%w: sender: %w", ErrMalformed, err)
	}
	return s, nil
}

// MarshalBinary encodes the receiver's state (secret, like the sender's).
func (r *Receiver) MarshalBinary() ([]byte, error) {
	w := wire.NewWriter(1 + distSize + 4 + len(r.skipped)*36)
	w.Byte(receiverV1)
	r.d.writeTo(w)
	w.Uint32(uint32(len(r.skipped)))
	for _, s := range r.skipped {
		w.Uint32(s.iter)
		w.Fixed(s.mk[:])
	}
	return w.Bytes(), nil
}

// ParseReceiver decodes a receiver's state.
func ParseReceiver(b []byte) (*Receiver, error) {
	rd := wire.NewReader(b)
	if v := rd.Byte(); rd.Err() == nil && v != receiverV1 {
		return nil, fmt.Errorf("%w: receiver version %d", ErrMalformed, v)
	}
	r := &Receiver{}
	if err := r.d.readFrom(rd); err != nil {
		return nil, err
	}
	n := rd.Count(MaxSkippedKeys, 36)
	for range n {
		var s skippedKey
		s.iter = rd.Uint32()
		rd.FixedInto(s.mk[:])
		if s.iter >= r.d.Iteration {
			return nil, fmt.Errorf("%w: receiver: skipped key %d not behind the chain (%d)", ErrMalformed, s.iter, r.d.Iteration)
		}
		r.skipped = append(r.skipped, s)
	}
	if err := rd.Finish(); err != nil {
		return nil, fmt.Errorf("%w: receiver: %w", ErrMalformed, err)
	}
	return r, nil
}

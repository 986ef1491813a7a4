// Package sframe is SFrame (RFC 9605) with the AES_128_GCM_SHA256_128
// cipher suite: end-to-end encryption of media frames that a Selective
// Forwarding Unit forwards without being able to read.
//
// Why SFrame: in a group call through the relay's SFU, DTLS-SRTP ends at
// the SFU, which must read RTP headers to route and adapt. SFrame seals
// each frame's payload again, under keys only the call's members hold
// (derived from the group's keys), so the SFU sees a header (key ID and
// counter) and ciphertext. A frame is header || AEAD(key, salt XOR
// counter, header || metadata, payload): the header and any metadata
// the SFU may rely on are authenticated, not hidden.
//
// Keys: for a base key and a key ID (KID), sframe_key =
// HKDF-Expand(HKDF-Extract("", base_key), "SFrame 1.0 Secret key " ||
// KID (u64) || suite (u16), 16) and sframe_salt the same with
// "SFrame 1.0 Secret salt " and 12 bytes (§4.4.2). A sender never
// repeats a counter under a key; a Receiver refuses a counter it has
// taken already or one older than its replay window.
package sframe

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// Suite is the cipher suite this package implements:
// AES_128_GCM_SHA256_128 (0x0004).
const Suite uint16 = 0x0004

const (
	keySize   = 16
	nonceSize = 12
	// Overhead is the GCM tag added to every payload.
	Overhead = 16
	// MaxHeader is the longest header: a config byte, 8 KID and 8 CTR
	// bytes.
	MaxHeader = 17
	// ReplayWindow is how many counters behind the highest one seen a
	// Receiver still takes (once each).
	ReplayWindow = 128
)

// Errors.
var (
	ErrMalformed  = errors.New("sframe: malformed frame")
	ErrUnknownKey = errors.New("sframe: unknown key ID")
	ErrAuth       = errors.New("sframe: authentication failed")
	ErrReplay     = errors.New("sframe: counter seen already or too old")
	ErrExhausted  = errors.New("sframe: counter exhausted")
)

// Key seals and opens frames under one key ID.
type Key struct {
	kid  uint64
	aead cipher.AEAD
	salt [nonceSize]byte
}

// NewKey derives the key for kid from baseKey (at least 16 bytes).
func NewKey(baseKey []byte, kid uint64) (*Key, error) {
	if len(baseKey) < keySize {
		return nil, fmt.Errorf("sframe: a base key of %d bytes", len(baseKey))
	}
	prk, err := hkdf.Extract(sha256.New, baseKey, nil)
	if err != nil {
		return nil, err
	}
	var suffix [10]byte
	binary.BigEndian.PutUint64(suffix[:8], kid)
	binary.BigEndian.PutUint16(suffix[8:], Suite)
	key, err := hkdf.Expand(sha256.New, prk, "SFrame 1.0 Secret key "+string(suffix[:]), keySize)
	if err != nil {
		return nil, err
	}
	salt, err := hkdf.Expand(sha256.New, prk, "SFrame 1.0 Secret salt "+string(suffix[:]), nonceSize)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	k := &Key{kid: kid, aead: aead}
	copy(k.salt[:], salt)
	return k, nil
}

// KID is the key's ID.
func (k *Key) KID() uint64 { return k.kid }

func (k *Key) nonce(ctr uint64) []byte {
	n := k.salt
	var c [8]byte
	binary.BigEndian.PutUint64(c[:], ctr)
	for i := range c {
		n[nonceSize-8+i] ^= c[i]
	}
	return n[:]
}

// Seal appends to dst the frame of payload with counter ctr: header,
// then the payload sealed with header || metadata as associated data.
// The caller never uses a counter twice under one key (a Sender does it).
func (k *Key) Seal(dst []byte, ctr uint64, metadata, payload []byte) []byte {
	start := len(dst)
	dst = AppendHeader(dst, k.kid, ctr)
	header := dst[start:]
	aad := append(append(make([]byte, 0, len(header)+len(metadata)), header...), metadata...)
	return k.aead.Seal(dst, k.nonce(ctr), payload, aad)
}

// open checks and decrypts frame, whose header (of n bytes, counter
// ctr) is parsed already.
func (k *Key) open(dst, metadata, frame []byte, n int, ctr uint64) ([]byte, error) {
	if len(frame)-n < Overhead {
		return nil, fmt.Errorf("%w: %d bytes after the header", ErrMalformed, len(frame)-n)
	}
	aad := append(append(make([]byte, 0, n+len(metadata)), frame[:n]...), metadata...)
	pt, err := k.aead.Open(dst, k.nonce(ctr), frame[n:], aad)
	if err != nil {
		return nil, ErrAuth
	}
	return pt, nil
}

// AppendHeader appends the shortest header for kid and ctr (§4.3): a
// config byte X|KKK|Y|CCC — a value below 8 in its three bits, else
// its length minus one and its big-endian bytes after — then the KID
// bytes, then the counter bytes.
func AppendHeader(dst []byte, kid, ctr uint64) []byte {
	var config byte
	var kb, cb []byte
	if kid < 8 {
		config = byte(kid) << 4
	} else {
		kb = minimal(kid)
		config = 0x80 | byte(len(kb)-1)<<4
	}
	if ctr < 8 {
		config |= byte(ctr)
	} else {
		cb = minimal(ctr)
		config |= 0x08 | byte(len(cb)-1)
	}
	dst = append(dst, config)
	dst = append(dst, kb...)
	return append(dst, cb...)
}

func minimal(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	i := 0
	for i < 7 && b[i] == 0 {
		i++
	}
	return b[i:]
}

// ParseHeader reads a frame's header: its key ID, counter and length.
func ParseHeader(frame []byte) (kid, ctr uint64, n int, err error) {
	if len(frame) < 1 {
		return 0, 0, 0, fmt.Errorf("%w: empty", ErrMalformed)
	}
	config := frame[0]
	n = 1
	read := func(length int) (uint64, error) {
		if len(frame) < n+length {
			return 0, fmt.Errorf("%w: header cut short", ErrMalformed)
		}
		var v uint64
		for _, b := range frame[n : n+length] {
			v = v<<8 | uint64(b)
		}
		n += length
		return v, nil
	}
	if config&0x80 == 0 {
		kid = uint64(config>>4) & 7
	} else if kid, err = read(int(config>>4&7) + 1); err != nil {
		return 0, 0, 0, err
	}
	if config&0x08 == 0 {
		ctr = uint64(config & 7)
	} else if ctr, err = read(int(config&7) + 1); err != nil {
		return 0, 0, 0, err
	}
	return kid, ctr, n, nil
}

// Sender seals a sender's frames under its current key with counters
// that never repeat. Safe for concurrent use.
type Sender struct {
	mu  sync.Mutex
	key *Key
	ctr uint64
}

// NewSender seals under key from counter 0.
func NewSender(key *Key) *Sender { return &Sender{key: key} }

// Rekey seals from now on under key (a new KID, counters from 0).
func (s *Sender) Rekey(key *Key) {
	s.mu.Lock()
	s.key, s.ctr = key, 0
	s.mu.Unlock()
}

// Seal appends payload's frame to dst.
func (s *Sender) Seal(dst, metadata, payload []byte) ([]byte, error) {
	s.mu.Lock()
	k, ctr := s.key, s.ctr
	if ctr == ^uint64(0) {
		s.mu.Unlock()
		return nil, ErrExhausted
	}
	s.ctr++
	s.mu.Unlock()
	return k.Seal(dst, ctr, metadata, payload), nil
}

// Receiver opens the frames of the keys it holds, once each. Safe for
// concurrent use.
type Receiver struct {
	mu   sync.Mutex
	keys map[uint64]*window
}

type window struct {
	key  *Key
	top  uint64 // highest counter taken
	any  bool
	seen [ReplayWindow / 64]uint64
}

// NewReceiver holds no keys yet.
func NewReceiver() *Receiver { return &Receiver{keys: map[uint64]*window{}} }

// Add takes frames under key from now on; Remove forgets a key ID (a
// member who left: its frames open no more).
func (r *Receiver) Add(key *Key) {
	r.mu.Lock()
	if _, ok := r.keys[key.kid]; !ok {
		r.keys[key.kid] = &window{key: key}
	}
	r.mu.Unlock()
}

// Remove forgets kid.
func (r *Receiver) Remove(kid uint64) {
	r.mu.Lock()
	delete(r.keys, kid)
	r.mu.Unlock()
}

// Open checks frame and appends its payload to dst, returning the key
// ID it came under. A frame under an unknown key, one that fails
// authentication, or a counter taken before (or older than the window)
// is refused.
func (r *Receiver) Open(dst, metadata, frame []byte) ([]byte, uint64, error) {
	kid, ctr, n, err := ParseHeader(frame)
	if err != nil {
		return nil, 0, err
	}
	r.mu.Lock()
	w := r.keys[kid]
	r.mu.Unlock()
	if w == nil {
		return nil, kid, fmt.Errorf("%w: %d", ErrUnknownKey, kid)
	}
	pt, err := w.key.open(dst, metadata, frame, n, ctr)
	if err != nil {
		return nil, kid, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !w.take(ctr) {
		return nil, kid, ErrReplay
	}
	return pt, kid, nil
}

// take records ctr, false if it was taken already or is too old.
func (w *window) take(ctr uint64) bool {
	if !w.any || ctr > w.top {
		shift := ctr - w.top
		if !w.any || shift >= ReplayWindow {
			w.seen = [ReplayWindow / 64]uint64{}
		} else {
			for range shift {
				w.shiftOne()
			}
		}
		w.top, w.any = ctr, true
		w.seen[0] |= 1
		return true
	}
	back := w.top - ctr
	if back >= ReplayWindow {
		return false
	}
	word, bit := back/64, back%64
	if w.seen[word]&(1<<bit) != 0 {
		return false
	}
	w.seen[word] |= 1 << bit
	return true
}

// shiftOne moves the window one counter up: bit i (counter top-i)
// becomes bit i+1.
func (w *window) shiftOne() {
	carry := uint64(0)
	for i := range w.seen {
		next := w.seen[i] >> 63
		w.seen[i] = w.seen[i]<<1 | carry
		carry = next
	}
}

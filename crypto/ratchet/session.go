package ratchet

import (
	"crypto/ecdh"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/peergram/peergram/crypto/internal/wire"
)

// Bounds on what a session holds and does for one message (libsignal's
// limits, https://github.com/signalapp/libsignal/blob/main/rust/protocol/src/consts.rs).
const (
	// MaxSkip is the most message keys one message may skip in one chain
	// (spec §3.5 MAX_SKIP; libsignal MAX_FORWARD_JUMPS).
	MaxSkip = 25000
	// MaxSkippedKeys is the most skipped message keys a session holds in
	// total; the oldest are evicted first (libsignal MAX_MESSAGE_KEYS, which
	// libsignal applies per chain).
	MaxSkippedKeys = 2000
	// MaxOldChains is how many receiving chains, the current one included,
	// a session remembers: their skipped keys and, for replay detection,
	// their public keys and lengths (libsignal MAX_RECEIVER_CHAINS). Keys of
	// older chains are deleted (spec §6.5).
	MaxOldChains = 5
)

// Session is one side of a Double Ratchet session (spec §3.2 state
// variables). Not safe for concurrent use.
type Session struct {
	dhs    *ecdh.PrivateKey // DHs: own ratchet key pair
	dhsPub [keySize]byte    // DHs public key, cached for headers
	dhr    [keySize]byte    // DHr: remote ratchet public key, valid if hasDHr
	rk     [keySize]byte    // RK
	cks    [keySize]byte    // CKs, valid if hasCKs
	ckr    [keySize]byte    // CKr, valid if hasCKr

	hasDHr, hasCKs, hasCKr bool

	ns, nr, pn uint32 // Ns, Nr, PN

	// old lists previous receiving chains, oldest first, at most
	// MaxOldChains-1 of them.
	old []oldChain
	// skipped is MKSKIPPED in insertion order, oldest first, at most
	// MaxSkippedKeys entries. Every entry belongs to the current receiving
	// chain (with n < nr) or to a chain in old (with n < end).
	skipped []skippedKey
}

// oldChain is a previous receiving chain: its ratchet public key and how
// many message keys were derived from it.
type oldChain struct {
	dh  [keySize]byte
	end uint32
}

// skippedKey is one entry of MKSKIPPED, keyed by (ratchet public key, n).
type skippedKey struct {
	dh [keySize]byte
	n  uint32
	mk [keySize]byte
}

// NewInitiator starts the session of the party that ran PQXDH as initiator
// (spec §3.3 RatchetInitAlice). sharedKey is PQXDH's 32-byte SK and remote is
// the responder's signed prekey, which is the responder's first ratchet key.
// It reads 32 bytes from rand for the first ratchet key.
func NewInitiator(rand io.Reader, sharedKey []byte, remote *ecdh.PublicKey) (*Session, error) {
	if len(sharedKey) != keySize {
		return nil, fmt.Errorf("ratchet: new initiator: %w: shared key of %d bytes", ErrInvalidKey, len(sharedKey))
	}
	if remote == nil || remote.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("ratchet: new initiator: %w: remote key is not X25519", ErrInvalidKey)
	}
	s := &Session{hasDHr: true, hasCKs: true}
	copy(s.dhr[:], remote.Bytes())
	var err error
	if s.dhs, err = newKeyPair(rand); err != nil {
		return nil, fmt.Errorf("ratchet: new initiator: %w", err)
	}
	copy(s.dhsPub[:], s.dhs.PublicKey().Bytes())
	out, err := dh(s.dhs, &s.dhr)
	if err != nil {
		return nil, fmt.Errorf("ratchet: new initiator: %w", err)
	}
	copy(s.rk[:], sharedKey)
	if s.rk, s.cks, err = kdfRK(&s.rk, out); err != nil {
		return nil, fmt.Errorf("ratchet: new initiator: %w", err)
	}
	return s, nil
}

// NewResponder starts the session of the party that ran PQXDH as responder
// (spec §3.3 RatchetInitBob). own is the signed prekey the initiator used.
// The responder can send only after it has decrypted a first message.
func NewResponder(sharedKey []byte, own *ecdh.PrivateKey) (*Session, error) {
	if len(sharedKey) != keySize {
		return nil, fmt.Errorf("ratchet: new responder: %w: shared key of %d bytes", ErrInvalidKey, len(sharedKey))
	}
	if own == nil || own.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("ratchet: new responder: %w: own key is not X25519", ErrInvalidKey)
	}
	s := &Session{dhs: own}
	copy(s.dhsPub[:], own.PublicKey().Bytes())
	copy(s.rk[:], sharedKey)
	return s, nil
}

// Encrypt encrypts plaintext as the next message of the sending chain (spec
// §3.4 RatchetEncrypt) and returns header || ciphertext. ad is the session's
// associated data (for the first message, PQXDH's AD). Encryption is
// deterministic given the state: this version does not read rand, which may
// be nil.
func (s *Session) Encrypt(rand io.Reader, plaintext, ad []byte) ([]byte, error) {
	if !s.hasCKs {
		return nil, fmt.Errorf("ratchet: encrypt: %w", ErrNoSendingChain)
	}
	if s.ns == math.MaxUint32 {
		return nil, fmt.Errorf("ratchet: encrypt: %w", ErrChainExhausted)
	}
	mk, ck := kdfCK(&s.cks)
	defer clear(mk[:])
	h := Header{DH: s.dhsPub, PN: s.pn, N: s.ns}
	w := wire.NewWriter(HeaderSize + len(plaintext) + tagSize)
	writeHeader(w, &h)
	header := w.Bytes()
	out, err := seal(header, &mk, plaintext, ad, header)
	if err != nil {
		return nil, fmt.Errorf("ratchet: encrypt: %w", err)
	}
	s.cks = ck
	s.ns++
	return out, nil
}

// Decrypt authenticates and decrypts a message from the peer (spec §3.5
// RatchetDecrypt) with the same ad the sender used. It may read 32 bytes
// from rand for a DH ratchet step.
//
// Decrypt is transactional: on any error the session is exactly as it was
// before the call (only what was read from rand is gone). Messages may come
// out of order within the bounds MaxSkip, MaxSkippedKeys and MaxOldChains;
// a message already decrypted reports ErrDuplicate.
func (s *Session) Decrypt(rand io.Reader, message, ad []byte) ([]byte, error) {
	h, ciphertext, err := ParseMessage(message)
	if err != nil {
		return nil, fmt.Errorf("ratchet: decrypt: %w", err)
	}
	if h.N == math.MaxUint32 { // Encrypt never sends it; Nr would overflow
		return nil, fmt.Errorf("ratchet: decrypt: %w: message number %d", ErrMalformed, h.N)
	}
	header := message[:HeaderSize]
	var pt []byte
	switch {
	case s.hasCKr && h.DH == s.dhr:
		pt, err = s.decryptCurrent(&h, ciphertext, ad, header)
	case s.isOldChain(&h.DH):
		pt, err = s.decryptSkipped(&h, ciphertext, ad, header)
	default:
		pt, err = s.decryptNewChain(rand, &h, ciphertext, ad, header)
	}
	if err != nil {
		return nil, fmt.Errorf("ratchet: decrypt: %w", err)
	}
	return pt, nil
}

// decryptCurrent handles a message on the current receiving chain.
func (s *Session) decryptCurrent(h *Header, ciphertext, ad, header []byte) ([]byte, error) {
	if h.N < s.nr {
		return s.decryptSkipped(h, ciphertext, ad, header)
	}
	if uint64(h.N) > uint64(s.nr)+MaxSkip {
		return nil, fmt.Errorf("%w: message %d, next expected %d", ErrTooFarAhead, h.N, s.nr)
	}
	ck := s.ckr
	st := newStaging(uint64(h.N - s.nr))
	defer st.discard() // after commit s.skipped holds copies
	// SkipMessageKeys(state, header.n)
	for n := s.nr; n < h.N; n++ {
		var mk [keySize]byte
		mk, ck = kdfCK(&ck)
		st.add(&s.dhr, n, &mk)
	}
	mk, ck := kdfCK(&ck)
	defer clear(mk[:])
	pt, err := open(&mk, ciphertext, ad, header)
	if err != nil {
		return nil, err
	}
	s.ckr = ck
	s.nr = h.N + 1
	s.addSkipped(st.keys)
	return pt, nil
}

// decryptSkipped handles a message on a known chain whose key must be in the
// skipped store (spec §3.5 TrySkippedMessageKeys).
func (s *Session) decryptSkipped(h *Header, ciphertext, ad, header []byte) ([]byte, error) {
	i := s.findSkipped(&h.DH, h.N)
	if i < 0 {
		return nil, fmt.Errorf("%w: message %d", ErrDuplicate, h.N)
	}
	pt, err := open(&s.skipped[i].mk, ciphertext, ad, header)
	if err != nil {
		return nil, err
	}
	s.removeSkipped(i)
	return pt, nil
}

// decryptNewChain handles a message under a new remote ratchet key: it skips
// the rest of the current receiving chain up to h.PN, takes a DH ratchet
// step (spec §3.5 DHRatchet) and skips in the new chain up to h.N, all on
// staged copies committed only when the message opens.
func (s *Session) decryptNewChain(rand io.Reader, h *Header, ciphertext, ad, header []byte) ([]byte, error) {
	var skipOld uint64
	if s.hasCKr && h.PN > s.nr {
		skipOld = uint64(h.PN - s.nr)
	}
	if skipOld > MaxSkip {
		return nil, fmt.Errorf("%w: previous chain length %d, next expected %d", ErrTooFarAhead, h.PN, s.nr)
	}
	if h.N > MaxSkip {
		return nil, fmt.Errorf("%w: message %d of a new chain", ErrTooFarAhead, h.N)
	}
	st := newStaging(skipOld + uint64(h.N))
	defer st.discard() // after commit s.skipped holds copies
	ck := s.ckr
	for n := s.nr; uint64(n-s.nr) < skipOld; n++ {
		var mk [keySize]byte
		mk, ck = kdfCK(&ck)
		st.add(&s.dhr, n, &mk)
	}

	out, err := dh(s.dhs, &h.DH)
	if err != nil {
		return nil, err
	}
	rk, ckr, err := kdfRK(&s.rk, out)
	clear(out)
	if err != nil {
		return nil, err
	}
	dhs, err := newKeyPair(rand)
	if err != nil {
		return nil, err
	}
	out, err = dh(dhs, &h.DH)
	if err != nil {
		return nil, err
	}
	rk, cks, err := kdfRK(&rk, out)
	clear(out)
	if err != nil {
		return nil, err
	}

	ck = ckr
	for n := range h.N {
		var mk [keySize]byte
		mk, ck = kdfCK(&ck)
		st.add(&h.DH, n, &mk)
	}
	mk, ck := kdfCK(&ck)
	defer clear(mk[:])
	pt, err := open(&mk, ciphertext, ad, header)
	if err != nil {
		return nil, err
	}

	// Commit.
	if s.hasCKr {
		s.pushOld(s.dhr, max(s.nr, h.PN))
	}
	s.addSkipped(st.keys)
	s.pn, s.ns = s.ns, 0
	s.dhr, s.hasDHr = h.DH, true
	s.rk = rk
	s.ckr, s.hasCKr, s.nr = ck, true, h.N+1
	s.dhs = dhs
	copy(s.dhsPub[:], dhs.PublicKey().Bytes())
	s.cks, s.hasCKs = cks, true
	return pt, nil
}

func (s *Session) isOldChain(dh *[keySize]byte) bool {
	for i := range s.old {
		if s.old[i].dh == *dh {
			return true
		}
	}
	return false
}

// findSkipped returns the index of the skipped key (dh, n), or -1.
func (s *Session) findSkipped(dh *[keySize]byte, n uint32) int {
	for i := len(s.skipped) - 1; i >= 0; i-- {
		if s.skipped[i].n == n && s.skipped[i].dh == *dh {
			return i
		}
	}
	return -1
}

// removeSkipped deletes a used skipped key (spec §6.5).
func (s *Session) removeSkipped(i int) {
	clear(s.skipped[i].mk[:])
	s.skipped = slices.Delete(s.skipped, i, i+1)
}

// addSkipped appends keys and evicts the oldest beyond MaxSkippedKeys.
func (s *Session) addSkipped(keys []skippedKey) {
	if len(keys) == 0 {
		return
	}
	s.skipped = append(s.skipped, keys...)
	if over := len(s.skipped) - MaxSkippedKeys; over > 0 {
		s.skipped = slices.Delete(s.skipped, 0, over)
	}
}

// pushOld records the receiving chain being replaced and forgets the oldest
// one, with its skipped keys, beyond MaxOldChains.
func (s *Session) pushOld(dh [keySize]byte, end uint32) {
	s.old = append(s.old, oldChain{dh: dh, end: end})
	if len(s.old) < MaxOldChains {
		return
	}
	drop := s.old[0].dh
	s.old = slices.Delete(s.old, 0, 1)
	s.skipped = slices.DeleteFunc(s.skipped, func(k skippedKey) bool { return k.dh == drop })
}

// staging collects the skipped keys one message derives. Only the newest
// MaxSkippedKeys can survive eviction, so older ones are not kept at all.
type staging struct {
	keys []skippedKey
	drop uint64 // how many of the next adds to discard
}

func newStaging(total uint64) staging {
	keep := min(total, MaxSkippedKeys)
	st := staging{drop: total - keep}
	if keep > 0 {
		st.keys = make([]skippedKey, 0, keep)
	}
	return st
}

func (st *staging) add(dh *[keySize]byte, n uint32, mk *[keySize]byte) {
	if st.drop > 0 {
		st.drop--
		clear(mk[:])
		return
	}
	st.keys = append(st.keys, skippedKey{dh: *dh, n: n, mk: *mk})
	clear(mk[:])
}

// discard wipes staged keys that were not (or are no longer) needed.
func (st *staging) discard() {
	for i := range st.keys {
		clear(st.keys[i].mk[:])
	}
}

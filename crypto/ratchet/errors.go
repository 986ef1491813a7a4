package ratchet

import "errors"

// ErrMalformed reports bytes that do not decode as a message or a session
// state: too short, trailing bytes, bad flags, out-of-bound counts or an
// inconsistent state.
var ErrMalformed = errors.New("ratchet: malformed input")

// ErrUnknownVersion reports a message or state whose version byte this code
// does not know.
var ErrUnknownVersion = errors.New("ratchet: unknown version")

// ErrAuth reports a message whose AEAD did not open: forged, corrupted,
// encrypted for another session or under a key this session no longer has.
var ErrAuth = errors.New("ratchet: message authentication failed")

// ErrDuplicate reports a message on a receiving chain this session knows
// whose number has already been consumed there and for which no skipped key
// is held: a replay or duplicate delivery. Keys evicted by MaxSkippedKeys
// are indistinguishable from consumed ones (telling them apart would mean
// keeping a record of every message) and also report ErrDuplicate.
var ErrDuplicate = errors.New("ratchet: duplicate or replayed message")

// ErrTooFarAhead reports a message that would skip more than MaxSkip message
// keys in one chain.
var ErrTooFarAhead = errors.New("ratchet: message too far ahead")

// ErrInvalidKey reports a key of the wrong size or an X25519 exchange that
// fails (a low-order public key).
var ErrInvalidKey = errors.New("ratchet: invalid key")

// ErrNoSendingChain reports Encrypt on a responder session that has not yet
// received a message: the responder's first sending chain comes from the
// initiator's first ratchet key (spec §3.3).
var ErrNoSendingChain = errors.New("ratchet: no sending chain yet")

// ErrChainExhausted reports a sending chain whose message number would
// overflow 32 bits; the peer must reply (a DH ratchet step) first.
var ErrChainExhausted = errors.New("ratchet: sending chain exhausted")

package sealed

import "errors"

// ErrMalformed reports bytes that do not decode as an envelope, plaintext or
// session state.
var ErrMalformed = errors.New("sealed: malformed input")

// ErrUnknownVersion reports an encoding version this code does not know.
var ErrUnknownVersion = errors.New("sealed: unknown version")

// ErrAuth reports an envelope that failed authentication: tampered, forged,
// or encrypted for another device or session.
var ErrAuth = errors.New("sealed: authentication failed")

// ErrDuplicate reports a message already received: a replayed envelope or
// a message ID seen before.
var ErrDuplicate = errors.New("sealed: duplicate message")

// ErrTimestamp reports a message whose timestamp is too far in the future or
// the past.
var ErrTimestamp = errors.New("sealed: timestamp out of bounds")

// ErrSender reports a message whose claimed sender differs from the
// session's authenticated peer, or a sender certificate that does not match
// the key agreement.
var ErrSender = errors.New("sealed: sender does not match session")

// ErrTooLarge reports a body larger than MaxBodySize.
var ErrTooLarge = errors.New("sealed: body too large")

// ErrWrongRecipient reports an envelope addressed to another device.
var ErrWrongRecipient = errors.New("sealed: envelope for another device")

// ErrWrongKind reports an envelope handed to the function for the other
// kind.
var ErrWrongKind = errors.New("sealed: wrong envelope kind")

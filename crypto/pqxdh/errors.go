package pqxdh

import "errors"

// ErrMalformed reports bytes that do not decode as a bundle, prekey set or
// initial message.
var ErrMalformed = errors.New("pqxdh: malformed input")

// ErrUnknownVersion reports an encoding version this code does not know.
var ErrUnknownVersion = errors.New("pqxdh: unknown version")

// ErrBadSignature reports a prekey whose signature does not verify under the
// device's certified signing key.
var ErrBadSignature = errors.New("pqxdh: bad prekey signature")

// ErrDeviceMismatch reports a bundle whose device or identity key differs
// from the certificate it is checked against.
var ErrDeviceMismatch = errors.New("pqxdh: bundle does not match device certificate")

// ErrUnknownPrekey reports an initial message that names a prekey this
// device does not hold: never issued, rotated away, or a one-time prekey
// already consumed.
var ErrUnknownPrekey = errors.New("pqxdh: unknown or consumed prekey")

// ErrReplay reports an initial message whose ephemeral key was already seen.
var ErrReplay = errors.New("pqxdh: replayed initial message")

// ErrKey reports an invalid public key or a Diffie-Hellman failure (such as
// a low-order point).
var ErrKey = errors.New("pqxdh: invalid key")

// ErrPrekeyFull reports an initial message for a signed prekey that has
// already accepted MaxSeenEphemeral sessions: the owner must rotate it.
var ErrPrekeyFull = errors.New("pqxdh: signed prekey accepts no more sessions")

package directory

import (
	"errors"
	"fmt"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/pqxdh"
)

// ErrNotFound reports an account the relay holds no device list for.
var ErrNotFound = errors.New("directory: account not found")

// ErrRollback reports something older than what is already known: a device
// list of a lower version, a record with an older Issued time, or a signed
// or last-resort prekey with a lower ID than the stored one.
var ErrRollback = errors.New("directory: rollback")

// ErrFork reports a device list that contradicts the known history (same
// version, different list; or a successor that does not chain). Both lists
// carry the account's signature, so a fork is evidence of a compromised or
// misused account key.
var ErrFork = errors.New("directory: device list fork")

// ErrGap reports a device list more than one version ahead of the known
// one; publish (or fetch and check) the versions in between first.
var ErrGap = errors.New("directory: device list gap")

// ErrBadSignature reports a device list, prekey or record whose signature
// does not verify, or a bundle that does not match its device certificate.
var ErrBadSignature = errors.New("directory: bad signature")

// ErrUnlisted reports a bundle or record for a device that is not on the
// account's device list.
var ErrUnlisted = errors.New("directory: device not on the device list")

// ErrMalformed reports bytes that do not decode as a frame, device list,
// bundle or record, or a relay's refusal of a request it could not decode.
var ErrMalformed = errors.New("directory: malformed")

// ErrUnknownVersion reports a Record whose format version byte this
// package does not know.
var ErrUnknownVersion = errors.New("directory: unknown record version")

// ErrTooLarge reports a frame over the bound of its type (see
// MaxPublishSize), on either side.
var ErrTooLarge = errors.New("directory: frame too large")

// ErrInternal reports a relay-side failure (storage) it did not describe
// further.
var ErrInternal = errors.New("directory: relay internal error")

// ErrUnavailable reports a relay that cannot serve now (out of stream
// memory); retrying later or elsewhere may succeed.
var ErrUnavailable = errors.New("directory: relay unavailable")

// ErrForbidden reports a Stock request from a peer other than the one the
// device's record names: only the device itself learns how many of its
// one-time prekeys are left, since the count tells how many sessions are
// being started with it.
var ErrForbidden = errors.New("directory: only the device's own peer may ask")

// ErrRateLimited reports a peer that sent more publishes or fetches than
// the relay's per-peer rate allows; retry after the time the relay says.
var ErrRateLimited = errors.New("directory: rate limited")

// ErrRefused reports a refusal code this version does not know.
var ErrRefused = errors.New("directory: refused")

// ErrClosed reports use of a Server after Close.
var ErrClosed = errors.New("directory: closed")

// ErrInvalidConfig reports a Config that NewServer cannot use.
var ErrInvalidConfig = errors.New("directory: invalid config")

// Code is the status a relay sends in a Status frame. Wire enum:
// append-only, never renumber.
type Code uint8

// Status codes.
const (
	CodeOK           Code = 0  // accepted (or already stored)
	CodeNotFound     Code = 1  // no device list for the account
	CodeRollback     Code = 2  // older than what the relay holds
	CodeFork         Code = 3  // device list contradicts the stored one
	CodeGap          Code = 4  // device list skips versions
	CodeBadSignature Code = 5  // a signature does not verify
	CodeUnlisted     Code = 6  // bundle or record of a device not on the list
	CodeMalformed    Code = 7  // frame or object did not decode
	CodeTooLarge     Code = 8  // frame over its bound
	CodeInternal     Code = 9  // storage failure
	CodeUnavailable  Code = 10 // busy; try later
	CodeForbidden    Code = 11 // Stock from a peer that is not the device's
	CodeRateLimited  Code = 12 // too many requests from this peer; try later
)

// codeErrors maps codes to sentinels: the one place where errors and wire
// codes meet (in both directions, see Err and codeOf).
var codeErrors = [...]error{
	CodeNotFound:     ErrNotFound,
	CodeRollback:     ErrRollback,
	CodeFork:         ErrFork,
	CodeGap:          ErrGap,
	CodeBadSignature: ErrBadSignature,
	CodeUnlisted:     ErrUnlisted,
	CodeMalformed:    ErrMalformed,
	CodeTooLarge:     ErrTooLarge,
	CodeInternal:     ErrInternal,
	CodeUnavailable:  ErrUnavailable,
	CodeForbidden:    ErrForbidden,
	CodeRateLimited:  ErrRateLimited,
}

var codeNames = [...]string{
	CodeOK:           "ok",
	CodeNotFound:     "not_found",
	CodeRollback:     "rollback",
	CodeFork:         "fork",
	CodeGap:          "gap",
	CodeBadSignature: "bad_signature",
	CodeUnlisted:     "unlisted",
	CodeMalformed:    "malformed",
	CodeTooLarge:     "too_large",
	CodeInternal:     "internal",
	CodeUnavailable:  "unavailable",
	CodeForbidden:    "forbidden",
	CodeRateLimited:  "rate_limited",
}

// Err returns the sentinel for c, nil for CodeOK and ErrRefused for codes
// this version does not know.
func (c Code) Err() error {
	if c == CodeOK {
		return nil
	}
	if int(c) < len(codeErrors) && codeErrors[c] != nil {
		return codeErrors[c]
	}
	return ErrRefused
}

// String returns the code's name, as used in metrics labels.
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("code_%d", uint8(c))
}

// codeOf returns the code that reports err to a client: the code of the
// first sentinel err wraps, CodeInternal if none.
func codeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	if errors.Is(err, ErrUnknownVersion) {
		return CodeMalformed
	}
	for c, sentinel := range codeErrors {
		if sentinel != nil && errors.Is(err, sentinel) {
			return Code(c)
		}
	}
	return CodeInternal
}

// RefusalError is a relay's refusal as received by a Client: the code and
// the relay's human-readable reason. errors.Is matches the code's sentinel
// (ErrRollback, ErrNotFound, ...).
type RefusalError struct {
	Code    Code
	Message string
}

func (e *RefusalError) Error() string {
	return fmt.Sprintf("%v (relay says %q)", e.Code.Err(), e.Message)
}

// Unwrap returns the code's sentinel.
func (e *RefusalError) Unwrap() error { return e.Code.Err() }

// foreign maps the sentinels of crypto/identity and crypto/pqxdh to this
// package's, so that the server can pick a code and a client can test
// with errors.Is against one set of sentinels. The result wraps both.
func foreign(err error) error {
	var own error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, identity.ErrRollback):
		own = ErrRollback
	case errors.Is(err, identity.ErrFork):
		own = ErrFork
	case errors.Is(err, identity.ErrGap):
		own = ErrGap
	case errors.Is(err, identity.ErrUnlistedDevice):
		own = ErrUnlisted
	case errors.Is(err, identity.ErrBadSignature),
		errors.Is(err, pqxdh.ErrBadSignature),
		errors.Is(err, pqxdh.ErrDeviceMismatch):
		own = ErrBadSignature
	case errors.Is(err, identity.ErrMalformed), errors.Is(err, identity.ErrUnknownVersion),
		errors.Is(err, pqxdh.ErrMalformed), errors.Is(err, pqxdh.ErrUnknownVersion):
		own = ErrMalformed
	default:
		return err
	}
	return fmt.Errorf("%w: %w", own, err)
}

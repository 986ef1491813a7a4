package mailbox

import (
	"errors"
	"fmt"
)

// ErrMalformed reports bytes that do not decode as a mailbox frame, or a
// relay's refusal of a frame it could not decode.
var ErrMalformed = errors.New("mailbox: malformed frame")

// ErrFrameTooLarge reports a frame whose length prefix exceeds the bound of
// the stream it arrived on.
var ErrFrameTooLarge = errors.New("mailbox: frame too large")

// ErrUnknownFrame reports a frame type this version does not know and that
// is not marked optional (types below 0x80).
var ErrUnknownFrame = errors.New("mailbox: unknown frame type")

// ErrUnexpectedFrame reports a well-formed frame that is not allowed at
// this point of the conversation (for example a Delivery on a deposit
// stream, or a Result that names another envelope than the one awaited).
var ErrUnexpectedFrame = errors.New("mailbox: unexpected frame")

// ErrTooLarge reports an envelope larger than the relay accepts.
var ErrTooLarge = errors.New("mailbox: envelope too large")

// ErrQuotaExceeded reports that the recipient's mailbox is full, by count
// or by bytes.
var ErrQuotaExceeded = errors.New("mailbox: mailbox quota exceeded")

// ErrStrangerQuota reports that the part of the recipient's mailbox open
// to deposits without a valid delivery token is full; a deposit with a
// token the recipient registered may still succeed.
var ErrStrangerQuota = errors.New("mailbox: quota for deposits without a delivery token exceeded")

// ErrRelayFull reports a relay whose storage cap for all mailboxes is
// reached; it still serves subscriptions and acks. Retry later or deposit
// elsewhere.
var ErrRelayFull = errors.New("mailbox: relay full")

// ErrRateLimited reports a depositor (peer or IP address) over its deposit
// budget; retry after a while.
var ErrRateLimited = errors.New("mailbox: rate limited")

// ErrUnauthorized reports a subscription whose signature did not verify.
var ErrUnauthorized = errors.New("mailbox: unauthorized")

// ErrUnavailable reports a relay that cannot serve now (shutting down, disk
// full); retrying later or elsewhere may succeed.
var ErrUnavailable = errors.New("mailbox: relay unavailable")

// ErrInternal reports a relay-side failure it did not describe further.
var ErrInternal = errors.New("mailbox: relay internal error")

// ErrRefused reports a refusal code this version does not know.
var ErrRefused = errors.New("mailbox: refused")

// ErrClosed reports use of a Client or Server after Close.
var ErrClosed = errors.New("mailbox: closed")

// ErrTooManyTokens reports more than MaxTokens delivery tokens.
var ErrTooManyTokens = errors.New("mailbox: too many delivery tokens")

// ErrBadKey reports a private key of the wrong length.
var ErrBadKey = errors.New("mailbox: bad ed25519 private key")

// Code is the status a relay sends in Result and Error frames. Wire enum:
// append-only, never renumber.
type Code uint8

// Result and refusal codes.
const (
	CodeOK            Code = 0 // stored (or already stored)
	CodeMalformed     Code = 1 // frame did not decode
	CodeTooLarge      Code = 2 // envelope or frame over the relay's limit
	CodeQuotaExceeded Code = 3 // mailbox full
	CodeUnauthorized  Code = 4 // subscription signature did not verify
	CodeUnavailable   Code = 5 // shutting down or out of disk
	CodeInternal      Code = 6 // anything else
	CodeRelayFull     Code = 7 // the relay's cap for all mailboxes is reached
	CodeRateLimited   Code = 8 // the depositor is over its budget
	CodeStrangerQuota Code = 9 // the mailbox's share for deposits without a token is full
)

// codeErrors maps codes to sentinels in one place (style: map errors to
// status codes in one place).
var codeErrors = [...]error{
	CodeMalformed:     ErrMalformed,
	CodeTooLarge:      ErrTooLarge,
	CodeQuotaExceeded: ErrQuotaExceeded,
	CodeUnauthorized:  ErrUnauthorized,
	CodeUnavailable:   ErrUnavailable,
	CodeInternal:      ErrInternal,
	CodeRelayFull:     ErrRelayFull,
	CodeRateLimited:   ErrRateLimited,
	CodeStrangerQuota: ErrStrangerQuota,
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

// String returns the code's name.
func (c Code) String() string {
	switch c {
	case CodeOK:
		return "ok"
	case CodeMalformed:
		return "malformed"
	case CodeTooLarge:
		return "too_large"
	case CodeQuotaExceeded:
		return "quota_exceeded"
	case CodeUnauthorized:
		return "unauthorized"
	case CodeUnavailable:
		return "unavailable"
	case CodeInternal:
		return "internal"
	case CodeRelayFull:
		return "relay_full"
	case CodeRateLimited:
		return "rate_limited"
	case CodeStrangerQuota:
		return "stranger_quota"
	}
	return fmt.Sprintf("code_%d", uint8(c))
}

// RefusalError is a relay's refusal as received by a Client: the code and
// the relay's human-readable reason. errors.Is matches the code's
// sentinel (ErrTooLarge, ErrQuotaExceeded, ...).
type RefusalError struct {
	Code    Code
	Message string
}

func (e *RefusalError) Error() string {
	return fmt.Sprintf("%v (relay says %q)", e.Code.Err(), e.Message)
}

// Unwrap returns the code's sentinel.
func (e *RefusalError) Unwrap() error { return e.Code.Err() }

// ErrInvalidConfig reports a Config that NewServer cannot use.
var ErrInvalidConfig = errors.New("mailbox: invalid config")

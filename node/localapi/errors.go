package localapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/peergram/peergram/node/chat"
)

// ErrNotLoopback reports an address or listener that is not on the loopback
// interface; the API never serves beyond the machine.
var ErrNotLoopback = errors.New("localapi: not a loopback address")

// ErrConfig reports an invalid Config (no Backend, token too short, bad
// origin).
var ErrConfig = errors.New("localapi: invalid config")

// ErrUnauthorized reports a request without the right bearer token (HTTP 401).
var ErrUnauthorized = errors.New("unauthorized")

// ErrForbidden reports a browser request from an origin that is not allowed
// (HTTP 403).
var ErrForbidden = errors.New("forbidden")

// ErrNotFound reports a request for a route that does not exist (HTTP 404).
// A missing contact is chat.ErrUnknownContact instead.
var ErrNotFound = errors.New("not found")

// ErrInternal reports a failure of the daemon itself (HTTP 500); the daemon
// logs the cause.
var ErrInternal = errors.New("internal error")

// ErrNotImplemented reports a route the backend does not serve (HTTP
// 501): calls, for a backend without them.
var ErrNotImplemented = errors.New("not implemented")

// Error codes of the JSON error body. Append-only: clients switch on them.
const (
	CodeUnknownContact = "unknown_contact"
	CodeInvalid        = "invalid"
	CodeTooLarge       = "too_large"
	CodeUnavailable    = "unavailable"
	CodeUnauthorized   = "unauthorized"
	CodeForbidden      = "forbidden"
	CodeNotFound       = "not_found"
	CodeInternal       = "internal"
	CodeExists         = "exists"
	CodeUnknownGroup   = "unknown_group"
	CodeUnknownCall    = "unknown_call"
	CodeNotImplemented = "not_implemented"
)

// errorCodes is the single mapping between errors, HTTP status codes and
// error codes. The Server picks the first entry whose err matches
// (errors.Is); the Client maps a code back to its err.
var errorCodes = [...]struct {
	err    error
	status int
	code   string
}{
	{chat.ErrUnknownContact, http.StatusNotFound, CodeUnknownContact},
	{chat.ErrUnknownGroup, http.StatusNotFound, CodeUnknownGroup},
	{chat.ErrUnknownCall, http.StatusNotFound, CodeUnknownCall},
	{chat.ErrInvalid, http.StatusBadRequest, CodeInvalid},
	{chat.ErrTooLarge, http.StatusRequestEntityTooLarge, CodeTooLarge},
	{chat.ErrExists, http.StatusConflict, CodeExists},
	{chat.ErrUnavailable, http.StatusServiceUnavailable, CodeUnavailable},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, CodeUnavailable},
	{ErrUnauthorized, http.StatusUnauthorized, CodeUnauthorized},
	{ErrForbidden, http.StatusForbidden, CodeForbidden},
	{ErrNotFound, http.StatusNotFound, CodeNotFound},
	{ErrInternal, http.StatusInternalServerError, CodeInternal},
	{ErrNotImplemented, http.StatusNotImplemented, CodeNotImplemented},
}

// statusOf maps an error to its HTTP status and error code; anything not in
// errorCodes is internal.
func statusOf(err error) (status int, code string) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge, CodeTooLarge
	}
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return e.status, e.code
		}
	}
	return http.StatusInternalServerError, CodeInternal
}

// sentinelOf maps an error code back to its error; nil for unknown codes.
func sentinelOf(code string) error {
	for _, e := range errorCodes {
		if e.code == code {
			return e.err
		}
	}
	return nil
}

// Error is an error answer of the API, as the Client returns it. Its message
// is the server's; errors.Is matches the sentinel named by Code
// (chat.ErrUnknownContact for "unknown_contact", ErrUnauthorized for
// "unauthorized", ...).
type Error struct {
	Status  int    // HTTP status code
	Code    string // error code, one of the Code constants (or "" if the body was not JSON)
	Message string // the server's human-readable message
}

func (e *Error) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return http.StatusText(e.Status)
}

// Unwrap returns the sentinel error named by the code.
func (e *Error) Unwrap() error { return sentinelOf(e.Code) }

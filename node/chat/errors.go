package chat

import "errors"

// ErrUnknownContact reports a contact alias or account ID that is not in
// the contact list.
var ErrUnknownContact = errors.New("unknown contact")

// ErrInvalid reports a request whose input is malformed (bad account ID,
// empty text, bad message ID, ...).
var ErrInvalid = errors.New("invalid input")

// ErrTooLarge reports a message text over the size limit.
var ErrTooLarge = errors.New("message too large")

// ErrUnavailable reports that what the request needs cannot be reached now
// (no relay reachable, contact's keys not found in any directory).
var ErrUnavailable = errors.New("unavailable")

// ErrExists reports a request that would create what already exists under
// another form: a contact added again under another name, an alias taken
// by another contact.
var ErrExists = errors.New("already exists")

// ErrUnknownGroup reports a group ID or title that names no group of this
// node (or a title more than one group has).
var ErrUnknownGroup = errors.New("unknown group")

// ErrUnknownCall reports a call ID this device does not know.
var ErrUnknownCall = errors.New("unknown call")

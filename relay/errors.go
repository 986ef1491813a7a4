package relay

import "errors"

var (
	// ErrNotInitialised is returned by New when the home directory has no
	// identity key: run Init (peergram-relay init) first.
	ErrNotInitialised = errors.New("relay: home is not initialised")

	// ErrAlreadyInitialised is returned by Init when the home directory
	// already holds an identity key; Init never overwrites one.
	ErrAlreadyInitialised = errors.New("relay: home is already initialised")

	// ErrLocked is returned by Run when another relay (in this process or
	// another) has the home directory's store open.
	ErrLocked = errors.New("relay: another relay is already running on this home")

	// ErrAddrInUse is returned by Run when a listen address's port is
	// already bound by another program, perhaps another relay. The relay
	// binds without SO_REUSEPORT, so it never shares a port silently.
	ErrAddrInUse = errors.New("relay: listen address already in use")

	// ErrInvalidConfig is returned by New for an unusable Config: a bad
	// listen multiaddr, a malformed or non-loopback metrics address, negative
	// limits.
	ErrInvalidConfig = errors.New("relay: invalid config")

	// ErrBadIdentity is returned by New when the identity key file cannot
	// be decoded or is not an Ed25519 key.
	ErrBadIdentity = errors.New("relay: bad identity key file")

	// ErrAlreadyRunning is returned by a second call of Run on the same
	// Relay: a Relay runs once.
	ErrAlreadyRunning = errors.New("relay: Run already called")
)

package identity

import "errors"

// ErrBadAccountID reports text that is not an account ID or account link:
// wrong prefix, length, alphabet, key type or checksum.
var ErrBadAccountID = errors.New("identity: bad account ID")

// ErrBadDeviceID reports text that is not a device ID.
var ErrBadDeviceID = errors.New("identity: bad device ID")

// ErrBadSignature reports a certificate or device list whose signature does
// not verify under the expected account key, or that names another account.
var ErrBadSignature = errors.New("identity: bad signature")

// ErrRollback reports a device list older than the newest one already seen.
var ErrRollback = errors.New("identity: device list rollback")

// ErrFork reports a device list that contradicts the known history: a
// different list with the same version, or a successor whose Prev is not the
// hash of the known list. Both are signed by the account key, so a fork is
// evidence that the account key is compromised or misused.
var ErrFork = errors.New("identity: device list fork")

// ErrGap reports a device list more than one version ahead of the known
// one; the caller must fetch and check the versions in between.
var ErrGap = errors.New("identity: device list gap")

// ErrUnlistedDevice reports a device that is not on the account's list.
var ErrUnlistedDevice = errors.New("identity: unlisted device")

// ErrMalformed reports bytes or values that do not form a valid key,
// certificate or list: truncation, trailing bytes, fields out of bounds,
// duplicate devices.
var ErrMalformed = errors.New("identity: malformed")

// ErrUnknownVersion reports a marshalled object whose format version byte
// this package does not know.
var ErrUnknownVersion = errors.New("identity: unknown format version")

// ErrExpired reports a device list issued too long ago (or in the future):
// see DeviceList.CheckFresh.
var ErrExpired = errors.New("identity: device list expired")

// Package groupmsg is the envelope of everything published on a group's
// gossip topic: a group message (encrypted with Sender Keys or an epoch
// key), an entry of the group's state log, or a page of wrapped epoch keys.
//
// Why an envelope of its own: gossipsub forwards a message before any
// member has decrypted it, so whether to forward must be decidable from
// clear fields. The envelope says which group, what kind, when, and which
// device of which account (its certificate) signed it; a validator that
// knows the group's members (its state log) drops what a non-member sent,
// what is too old or too new, too large, or forged, before it spreads —
// without any key of the group. The content stays encrypted.
//
// Encoding (crypto/internal/wire), signed by the device key with label
// "peergram/group-msg/v1" over everything before the signature:
//
//	version(1)=1 || group[32] || kind(1) || time u64 (Unix ms) ||
//	cert Var || payload Var || sig[64]
//
// A group's topic name is a hash of its ID ("/peergram/group/1/" + hex of
// SHA-256("peergram/group-topic/v1" || group ID)): it reveals nothing about
// the group and differs from the ID itself, which members use as a key
// input.
package groupmsg

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/internal/wire"
)

const (
	version    = 1
	labelSig   = "peergram/group-msg/v1"
	labelTopic = "peergram/group-topic/v1"
	// TopicPrefix starts every group topic name.
	TopicPrefix = "/peergram/group/1/"

	// MaxPayload bounds a payload (a message of at most 256 KiB of
	// plaintext and its overhead).
	MaxPayload = 256<<10 + 1024
	// MaxSize bounds an encoded envelope.
	MaxSize = MaxPayload + 1024
	maxCert = 512
)

// Kind is what an envelope carries.
type Kind uint8

// Kinds.
const (
	KindSenderKey Kind = 1 // a senderkey message
	KindEpoch     Kind = 2 // an epochkey message
	KindState     Kind = 3 // a groupstate entry
	KindGrants    Kind = 4 // an epochkey page of grants
	maxKind            = KindGrants
)

// Errors.
var (
	ErrMalformed = errors.New("groupmsg: malformed")
	ErrAuth      = errors.New("groupmsg: bad signature or certificate")
)

// Envelope is a verified envelope.
type Envelope struct {
	Group   [32]byte
	Kind    Kind
	Time    int64
	Cert    identity.DeviceCert
	Payload []byte
}

// Sender is the account that signed the envelope.
func (e *Envelope) Sender() identity.AccountID { return e.Cert.Account }

// Topic is the gossip topic of group.
func Topic(group [32]byte) string {
	h := sha256.Sum256(append([]byte(labelTopic), group[:]...))
	return TopicPrefix + hex.EncodeToString(h[:])
}

// Seal encodes and signs an envelope of dev (certified by cert).
func Seal(dev *identity.DeviceKey, cert *identity.DeviceCert, group [32]byte, kind Kind, timeMs int64, payload []byte) ([]byte, error) {
	if cert.Device != dev.ID() {
		return nil, fmt.Errorf("%w: certificate of another device", ErrAuth)
	}
	if kind == 0 || kind > maxKind || len(payload) > MaxPayload || timeMs <= 0 {
		return nil, fmt.Errorf("%w: kind %d, %d bytes, time %d", ErrMalformed, kind, len(payload), timeMs)
	}
	c, err := cert.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	w := wire.NewWriter(1 + 32 + 1 + 8 + 4 + len(c) + 4 + len(payload) + ed25519.SignatureSize)
	w.Byte(version)
	w.Fixed(group[:])
	w.Byte(byte(kind))
	w.Uint64(uint64(timeMs))
	w.Var(c)
	w.Var(payload)
	w.Fixed(dev.Sign(labelSig, w.Bytes()))
	return w.Bytes(), nil
}

// Open decodes an envelope and checks its certificate (against the
// account it names) and signature. Membership, time and rate are the
// caller's checks.
func Open(b []byte) (*Envelope, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	r := wire.NewReader(b)
	if v := r.Byte(); r.Err() == nil && v != version {
		return nil, fmt.Errorf("%w: version %d", ErrMalformed, v)
	}
	e := &Envelope{}
	r.FixedInto(e.Group[:])
	e.Kind = Kind(r.Byte())
	e.Time = int64(r.Uint64())
	certRaw := r.Var(maxCert)
	e.Payload = r.Var(MaxPayload)
	sig := r.Fixed(ed25519.SignatureSize)
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if e.Kind == 0 || e.Kind > maxKind || e.Time <= 0 {
		return nil, fmt.Errorf("%w: kind %d, time %d", ErrMalformed, e.Kind, e.Time)
	}
	cert, err := identity.ParseDeviceCert(certRaw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := cert.Verify(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAuth, err)
	}
	e.Cert = *cert
	if !identity.Verify(cert.Device.PublicKey(), labelSig, b[:len(b)-ed25519.SignatureSize], sig) {
		return nil, ErrAuth
	}
	return e, nil
}

// ID is an envelope's message ID on the topic: the hash of its bytes, so
// the same envelope is the same message wherever it comes from (a
// duplicate is not forwarded again) and no one can make two different
// envelopes share an ID.
func ID(b []byte) string {
	h := sha256.Sum256(b)
	return string(h[:])
}

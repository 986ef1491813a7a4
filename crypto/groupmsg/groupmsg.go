// Package groupmsg is the envelope of everything published on a group's
// gossip topic: a group message (encrypted with Sender Keys or an epoch
// key), an entry of the group's state log, or a page of wrapped epoch keys.
//
// Why an envelope of its own: gossipsub forwards a message before any
// member has decrypted it, so whether to forward must be decidable from
// clear fields. The envelope says what kind, when, and which device signed
// it; a validator that knows the group's members and their devices (the
// group's state log and the members' device lists) drops what a
// non-member sent, what is too old or too new, too large, or forged,
// before it spreads — without any key of the group. The content stays
// encrypted. The device's signature is also what proves who wrote a group
// message: Sender Keys messages carry no signature of their own (package
// crypto/senderkey), so a group message costs one signature, not two.
//
// The envelope is kept small — it is sent once per member per message:
// the group is not in it (the topic names it, and the signature covers
// it), nor is the device's certificate (members know the devices of each
// other's accounts from the device lists).
//
// Encoding, signed by the device key with label "peergram/group-msg/v1"
// over group[32] followed by everything before the signature:
//
//	version(1)=1 || kind(1) || time u64 (Unix ms, big-endian) ||
//	device[32] || payload (the rest) || sig[64]
//
// A group's topic name is a hash of its ID ("/peergram/group/1/" + hex of
// SHA-256("peergram/group-topic/v1" || group ID)): it reveals nothing about
// the group and differs from the ID itself, which members use as a key
// input.
package groupmsg

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/peergram/peergram/crypto/identity"
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
	MaxSize    = MaxPayload + headerSize + ed25519.SignatureSize
	headerSize = 1 + 1 + 8 + 32
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
	ErrAuth      = errors.New("groupmsg: bad signature")
)

// Envelope is a verified envelope.
type Envelope struct {
	Group   [32]byte
	Kind    Kind
	Time    int64
	Device  identity.DeviceID
	Payload []byte
}

// Topic is the gossip topic of group.
func Topic(group [32]byte) string {
	h := sha256.Sum256(append([]byte(labelTopic), group[:]...))
	return TopicPrefix + hex.EncodeToString(h[:])
}

// Seal encodes an envelope of group and signs it with dev.
func Seal(dev *identity.DeviceKey, group [32]byte, kind Kind, timeMs int64, payload []byte) ([]byte, error) {
	if kind == 0 || kind > maxKind || len(payload) > MaxPayload || timeMs <= 0 {
		return nil, fmt.Errorf("%w: kind %d, %d bytes, time %d", ErrMalformed, kind, len(payload), timeMs)
	}
	id := dev.ID()
	b := make([]byte, 0, headerSize+len(payload)+ed25519.SignatureSize)
	b = append(b, version, byte(kind))
	b = binary.BigEndian.AppendUint64(b, uint64(timeMs))
	b = append(b, id[:]...)
	b = append(b, payload...)
	return append(b, dev.Sign(labelSig, signed(group, b))...), nil
}

func signed(group [32]byte, body []byte) []byte {
	return append(append(make([]byte, 0, 32+len(body)), group[:]...), body...)
}

// Open decodes an envelope published on group's topic and checks its
// signature against the device it names. Whether that device belongs to
// a member who may publish, and the time, are the caller's checks. The
// payload aliases b.
func Open(group [32]byte, b []byte) (*Envelope, error) {
	if len(b) > MaxSize || len(b) < headerSize+ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	if b[0] != version {
		return nil, fmt.Errorf("%w: version %d", ErrMalformed, b[0])
	}
	e := &Envelope{Group: group, Kind: Kind(b[1]), Time: int64(binary.BigEndian.Uint64(b[2:10]))}
	copy(e.Device[:], b[10:headerSize])
	body := b[:len(b)-ed25519.SignatureSize]
	e.Payload = body[headerSize:]
	if e.Kind == 0 || e.Kind > maxKind || e.Time <= 0 {
		return nil, fmt.Errorf("%w: kind %d, time %d", ErrMalformed, e.Kind, e.Time)
	}
	if !identity.VerifyParts(e.Device.PublicKey(), labelSig, b[len(body):], group[:], body) {
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

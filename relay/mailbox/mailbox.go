package mailbox

import (
	"crypto/ed25519"
	"encoding/hex"
	"time"
)

// ProtocolID is the libp2p protocol of both mailbox stream kinds.
const ProtocolID = "/peergram/mailbox/1.0.0"

// Defaults of Config fields left zero.
const (
	DefaultMaxEnvelopeSize     = 256 << 10
	DefaultMaxMailboxEnvelopes = 100_000
	DefaultMaxMailboxBytes     = 256 << 20
	DefaultTTL                 = 30 * 24 * time.Hour
	DefaultWindow              = 256
)

// Address names a mailbox: the recipient device's Ed25519 public key. It is
// given its own type so the API is clear about which 32 bytes go where.
type Address [32]byte

// AddressOf returns the mailbox address of a device public key. It returns
// the zero Address if pub is not 32 bytes long.
func AddressOf(pub ed25519.PublicKey) Address {
	var a Address
	if len(pub) == ed25519.PublicKeySize {
		copy(a[:], pub)
	}
	return a
}

// String returns the address in hex.
func (a Address) String() string { return hex.EncodeToString(a[:]) }

// EnvelopeID identifies an envelope within a mailbox. The depositor picks
// it (random, or derived from the message); depositing the same ID twice to
// one mailbox stores it once.
type EnvelopeID [16]byte

// String returns the ID in hex.
func (id EnvelopeID) String() string { return hex.EncodeToString(id[:]) }

// Delivery is one envelope handed to a subscriber.
type Delivery struct {
	ID        EnvelopeID
	Deposited time.Time // when the relay committed it
	Envelope  []byte    // opaque sealed bytes; owned by the callee
}

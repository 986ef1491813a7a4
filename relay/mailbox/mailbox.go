package mailbox

import (
	"crypto/ed25519"
	"encoding/hex"
	"time"
)

// ProtocolID is the libp2p protocol of both mailbox stream kinds.
const ProtocolID = "/peergram/mailbox/1.0.0"

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

// Token is a delivery token: 16 random bytes a mailbox's owner registers
// with its relay (SubscribeOptions) and hands to its contacts inside the
// end-to-end session, like Signal's sealed-sender access keys. A deposit
// carrying a valid token (DepositWithToken) may use the mailbox's whole
// quota; one without shares a small part of it and is rate-limited. The
// relay stores only SHA-256 hashes of tokens. The zero Token means none.
type Token [16]byte

// Delivery is one envelope handed to a subscriber.
type Delivery struct {
	ID        EnvelopeID
	Deposited time.Time // when the relay committed it
	Envelope  []byte    // opaque sealed bytes; owned by the callee
}

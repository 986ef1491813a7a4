package mailbox

import (
	"crypto/ed25519"
	"encoding/binary"

	"github.com/libp2p/go-libp2p/core/peer"
)

// authLabel separates mailbox subscription signatures from every other use
// of a device key.
const authLabel = "peergram/mailbox/auth/v1"

// authMessage is what a subscriber signs: the label, the relay it talks to
// (so a signature cannot be replayed to another relay), the relay's fresh
// challenge (so it cannot be replayed later) and the mailbox address.
// Every variable-length field is length-prefixed.
func authMessage(relay peer.ID, nonce [nonceSize]byte, addr Address) []byte {
	b := make([]byte, 0, 1+len(authLabel)+2+len(relay)+nonceSize+addressSize)
	b = append(b, byte(len(authLabel)))
	b = append(b, authLabel...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(relay)))
	b = append(b, relay...)
	b = append(b, nonce[:]...)
	return append(b, addr[:]...)
}

// signAuth answers a challenge with key.
func signAuth(key ed25519.PrivateKey, relay peer.ID, nonce [nonceSize]byte) *authMsg {
	m := &authMsg{Address: AddressOf(key.Public().(ed25519.PublicKey))}
	copy(m.Signature[:], ed25519.Sign(key, authMessage(relay, nonce, m.Address)))
	return m
}

// verifyAuth reports whether m proves possession of m.Address's key for
// this relay and challenge.
func verifyAuth(m *authMsg, relay peer.ID, nonce [nonceSize]byte) bool {
	return ed25519.Verify(m.Address[:], authMessage(relay, nonce, m.Address), m.Signature[:])
}

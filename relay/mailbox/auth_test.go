package mailbox

import (
	"bytes"
	"crypto/ed25519"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestAuthMessageLayout(t *testing.T) {
	var nonce [nonceSize]byte
	var addr Address
	nonce[0], addr[0] = 0x11, 0x22
	relay := peer.ID("relay-id")
	got := authMessage(relay, nonce, addr)
	var want []byte
	want = append(want, byte(len(authLabel)))
	want = append(want, "peergram/mailbox/auth/v1"...)
	want = append(want, 0, 8)
	want = append(want, "relay-id"...)
	want = append(want, nonce[:]...)
	want = append(want, addr[:]...)
	if !bytes.Equal(got, want) {
		t.Fatalf("authMessage = %x, want %x", got, want)
	}
}

func TestVerifyAuth(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	key := ed25519.NewKeyFromSeed(seed)
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize))
	var nonce [nonceSize]byte
	nonce[5] = 1
	relay, otherRelay := peer.ID("relay-a"), peer.ID("relay-b")

	good := signAuth(key, relay, nonce)
	if !verifyAuth(good, relay, nonce) {
		t.Fatal("good signature rejected")
	}
	wrongKey := signAuth(other, relay, nonce)
	wrongKey.Address = good.Address
	staleNonce := nonce
	staleNonce[0] = 9
	flipped := *good
	flipped.Signature[0] ^= 1
	badPoint := *good
	for i := range badPoint.Address {
		badPoint.Address[i] = 0xff
	}
	tests := []struct {
		name  string
		m     *authMsg
		relay peer.ID
		nonce [nonceSize]byte
	}{
		{"another key's signature", wrongKey, relay, nonce},
		{"signed for another relay", signAuth(key, otherRelay, nonce), relay, nonce},
		{"another challenge", good, relay, staleNonce},
		{"flipped bit", &flipped, relay, nonce},
		{"invalid public key", &badPoint, relay, nonce},
		{"zero", &authMsg{Address: good.Address}, relay, nonce},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if verifyAuth(tc.m, tc.relay, tc.nonce) {
				t.Fatal("verified")
			}
		})
	}
}

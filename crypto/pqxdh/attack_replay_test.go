package pqxdh

import (
	"errors"
	"testing"
)

// TestAttackReplayNonCanonicalEphemeral: the replay memory keys on the
// ephemeral key's 32 bytes, but X25519 ignores the top bit of a public
// key (RFC 7748 §5), so EK and EK with bit 255 flipped are the same key.
// An initial message replayed with that one bit flipped passes the replay
// check and agrees on the same SK — the same session, accepted twice.
// (In Peergram the initial message travels inside the sealed-sender layer,
// so only someone who can open that layer could do this; the memory should
// still not depend on the encoding.)
func TestAttackReplayNonCanonicalEphemeral(t *testing.T) {
	r := seeded(42)
	alice, bob := newParty(t, r), newParty(t, r)
	set, err := GeneratePrekeys(r, bob.dev, 0) // signed + last resort only: what replays target
	if err != nil {
		t.Fatal(err)
	}
	res, init, err := Initiate(r, alice.dev.DH(), set.Bundle(bob.dev), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Respond(set, bob.dev.DH(), init)
	if err != nil || !got.Equal(res) {
		t.Fatalf("first: %v", err)
	}
	set.Consume(init)
	if _, err := Respond(set, bob.dev.DH(), init); !errors.Is(err, ErrReplay) {
		t.Fatalf("plain replay: %v, want ErrReplay", err)
	}
	twin := *init
	twin.EphemeralKey[31] ^= 0x80
	again, err := Respond(set, bob.dev.DH(), &twin)
	if err == nil && again.Equal(res) {
		t.Fatal("an initial message replayed with the ephemeral key's top bit flipped was accepted with the same SK")
	}
	if !errors.Is(err, ErrReplay) {
		t.Fatalf("replay with a non-canonical ephemeral key: %v, want ErrReplay", err)
	}
}

package sealed

import (
	"crypto/aes"
	"crypto/cipher"
	"testing"
)

// BenchmarkAnchorAEAD is the anchor for BenchmarkSealOpen: raw AES-256-GCM
// seal and open of 1 KiB with a ready AEAD.
func BenchmarkAnchorAEAD(b *testing.B) {
	block, _ := aes.NewCipher(make([]byte, 32))
	aead, _ := cipher.NewGCM(block)
	nonce := make([]byte, 12)
	msg := make([]byte, 1024)
	var ct, pt []byte
	b.SetBytes(1024)
	b.ReportAllocs()
	for b.Loop() {
		ct = aead.Seal(ct[:0], nonce, msg, nil)
		var err error
		if pt, err = aead.Open(pt[:0], nonce, ct, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSealOpen is one 1 KiB message through an established session in
// one direction: envelope seal and open, symmetric path only.
func BenchmarkSealOpen(b *testing.B) {
	r := seeded(30)
	alice, bob := newPeer(b, r, "alice"), newPeer(b, r, "bob")
	s := connect(b, r, alice, bob, nil)
	if _, err := bob.receive(r, alice.send(b, r, bob, 1, "hello")); err != nil {
		b.Fatal(err)
	}
	if _, err := alice.receive(r, bob.send(b, r, alice, 2, "hi")); err != nil {
		b.Fatal(err)
	}
	recv := bob.sessions[s.sendID]
	msg := Message{Timestamp: now, Body: make([]byte, 1024)}
	var id uint64 = 10
	b.SetBytes(1024)
	b.ReportAllocs()
	for b.Loop() {
		id++
		msg.ID[0], msg.ID[1], msg.ID[2], msg.ID[3] = byte(id), byte(id>>8), byte(id>>16), byte(id>>24)
		raw, err := s.Seal(r, msg)
		if err != nil {
			b.Fatal(err)
		}
		env, err := ParseEnvelope(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := recv.Open(r, env, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSessionSetup is one PQXDH session setup end to end: Initiate,
// first prekey envelope, Unseal and Accept (setups per second = 1/op).
func BenchmarkSessionSetup(b *testing.B) {
	r := seeded(31)
	alice, bob := newPeer(b, r, "alice"), newPeer(b, r, "bob")
	bundle := bob.bundle.Take()
	bundle.OneTime, bundle.OneTimePQ = nil, nil // last resort: repeatable
	b.ReportAllocs()
	for b.Loop() {
		s, err := Initiate(r, alice.self, bob.self.Cert, bundle, nil)
		if err != nil {
			b.Fatal(err)
		}
		raw, err := s.Seal(r, Message{Timestamp: now, Body: []byte("hi")})
		if err != nil {
			b.Fatal(err)
		}
		env, _ := ParseEnvelope(raw)
		h, err := Unseal(bob.self, env)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := Accept(r, bob.self, bob.prekeys, h, now); err != nil {
			b.Fatal(err)
		}
	}
}

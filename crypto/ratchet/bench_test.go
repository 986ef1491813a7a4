package ratchet

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"io"
	"testing"
	"time"
)

// BenchmarkSymmetric is Encrypt+Decrypt of a 1 KiB message in order on the
// current chains: the common path, no public-key operation. Its anchor is
// BenchmarkAnchorAESGCM.
func BenchmarkSymmetric(b *testing.B) {
	r := testRand(b.Name())
	alice, bob := newPair(b, r)
	pt := make([]byte, 1024)
	ad := make([]byte, 64)
	// Set up the chains, so that the loop measures only the symmetric path.
	m, err := alice.Encrypt(nil, pt, ad)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := bob.Decrypt(r, m, ad); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := alice.Encrypt(nil, pt, ad)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := bob.Decrypt(nil, m, ad); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAnchorAESGCM is the anchor of BenchmarkSymmetric: AES-256-GCM
// Seal+Open of 1 KiB with a pre-built AEAD.
func BenchmarkAnchorAESGCM(b *testing.B) {
	block, err := aes.NewCipher(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	pt := make([]byte, 1024)
	ad := make([]byte, 64+HeaderSize)
	nonce := make([]byte, nonceSize)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		ct := aead.Seal(nil, nonce, pt, ad)
		if _, err := aead.Open(nil, nonce, ct, ad); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRatchetStep measures one DH ratchet step: each iteration is a
// ping-pong in which each side decrypts the first message of a new chain
// (two steps, reported per step). Its anchor is BenchmarkAnchorRatchetStep.
func BenchmarkRatchetStep(b *testing.B) {
	r := testRand(b.Name())
	alice, bob := newPair(b, r)
	pt := make([]byte, 32)
	ad := make([]byte, 64)
	m, err := alice.Encrypt(nil, pt, ad)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := bob.Decrypt(r, m, ad); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	steps := 0
	for b.Loop() {
		for _, p := range [2][2]*Session{{bob, alice}, {alice, bob}} {
			m, err := p[0].Encrypt(nil, pt, ad)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := p[1].Decrypt(r, m, ad); err != nil {
				b.Fatal(err)
			}
			steps++
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(steps), "ns/step")
}

// BenchmarkAnchorRatchetStep is the public-key work a ratchet step contains:
// an X25519 key generation from the same reader and two X25519 exchanges.
func BenchmarkAnchorRatchetStep(b *testing.B) {
	r := testRand(b.Name())
	own, err := newKeyPair(r)
	if err != nil {
		b.Fatal(err)
	}
	peer, err := newKeyPair(r)
	if err != nil {
		b.Fatal(err)
	}
	remote := peer.PublicKey()
	b.ReportAllocs()
	steps := 0
	for b.Loop() {
		for range 2 {
			if _, err := own.ECDH(remote); err != nil {
				b.Fatal(err)
			}
			next, err := anchorKeygen(r)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := next.ECDH(remote); err != nil {
				b.Fatal(err)
			}
			own = next
			steps++
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(steps), "ns/step")
}

func anchorKeygen(r io.Reader) (*ecdh.PrivateKey, error) {
	var seed [32]byte
	if _, err := io.ReadFull(r, seed[:]); err != nil {
		return nil, err
	}
	return ecdh.X25519().NewPrivateKey(seed[:])
}

// BenchmarkRatio runs each benchmark and its anchor interleaved, one
// operation each per iteration, and reports how many times slower the
// benchmark is ("x-anchor"). On a shared, noisy machine this ratio is
// steadier than comparing two separate runs.
func BenchmarkRatio(b *testing.B) {
	b.Run("Symmetric", func(b *testing.B) {
		r := testRand(b.Name())
		alice, bob := newPair(b, r)
		pt, ad := make([]byte, 1024), make([]byte, 64)
		block, _ := aes.NewCipher(make([]byte, 32))
		aead, _ := cipher.NewGCM(block)
		nonce, aad := make([]byte, nonceSize), make([]byte, 64+HeaderSize)
		decrypt(b, bob, r, encrypt(b, alice, pt, ad), ad, pt)
		ratio(b, func() {
			m, _ := alice.Encrypt(nil, pt, ad)
			if _, err := bob.Decrypt(nil, m, ad); err != nil {
				b.Fatal(err)
			}
		}, func() {
			if _, err := aead.Open(nil, nonce, aead.Seal(nil, nonce, pt, aad), aad); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("RatchetStep", func(b *testing.B) {
		r := testRand(b.Name())
		alice, bob := newPair(b, r)
		pt, ad := make([]byte, 32), make([]byte, 64)
		decrypt(b, bob, r, encrypt(b, alice, pt, ad), ad, pt)
		pair := [2]*Session{bob, alice}
		own, _ := newKeyPair(r)
		remote := own.PublicKey()
		ratio(b, func() {
			m, _ := pair[0].Encrypt(nil, pt, ad)
			if _, err := pair[1].Decrypt(r, m, ad); err != nil {
				b.Fatal(err)
			}
			pair[0], pair[1] = pair[1], pair[0]
		}, func() {
			own.ECDH(remote)
			next, _ := anchorKeygen(r)
			next.ECDH(remote)
			own = next
		})
	})
}

// ratio times op and anchor alternately and reports their time ratio.
func ratio(b *testing.B, op, anchor func()) {
	var tOp, tAnchor time.Duration
	for b.Loop() {
		t0 := time.Now()
		op()
		t1 := time.Now()
		anchor()
		tOp += t1.Sub(t0)
		tAnchor += time.Since(t1)
	}
	b.ReportMetric(float64(tOp)/float64(tAnchor), "x-anchor")
}

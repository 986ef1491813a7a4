package ratchet

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// HKDF info labels (listed in doc.go). Changing one breaks every session.
const (
	labelRoot    = "peergram/ratchet/root/v1"
	labelMessage = "peergram/ratchet/msg/v1"
)

// keySize is the size of root, chain and message keys and of X25519 keys.
const keySize = 32

// nonceSize is the AES-GCM nonce size.
const nonceSize = 12

// kdfRK is KDF_RK (spec §5.2): HKDF-SHA-256 with salt = rk and IKM = the DH
// output, giving a new root key and a chain key.
func kdfRK(rk *[keySize]byte, dh []byte) (newRK, ck [keySize]byte, err error) {
	out, err := hkdf.Key(sha256.New, dh, rk[:], labelRoot, 2*keySize)
	if err != nil {
		return newRK, ck, err
	}
	copy(newRK[:], out[:keySize])
	copy(ck[:], out[keySize:])
	clear(out)
	return newRK, ck, nil
}

// kdfCK is KDF_CK (spec §5.2): message key = HMAC-SHA-256(ck, 0x01), next
// chain key = HMAC-SHA-256(ck, 0x02).
func kdfCK(ck *[keySize]byte) (mk, next [keySize]byte) {
	var buf [sha256.Size]byte
	m := hmac.New(sha256.New, ck[:])
	m.Write([]byte{0x01})
	copy(mk[:], m.Sum(buf[:0]))
	m.Reset()
	m.Write([]byte{0x02})
	copy(next[:], m.Sum(buf[:0]))
	clear(buf[:])
	return mk, next
}

// messageAEAD derives the AES-256-GCM instance and nonce for one message key
// (ENCRYPT/DECRYPT of spec §5.2, with an AEAD; see doc.go).
func messageAEAD(mk *[keySize]byte) (cipher.AEAD, []byte, error) {
	km, err := hkdf.Key(sha256.New, mk[:], nil, labelMessage, keySize+nonceSize)
	if err != nil {
		return nil, nil, err
	}
	block, err := aes.NewCipher(km[:keySize])
	if err != nil {
		return nil, nil, err
	}
	clear(km[:keySize])
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, err
	}
	return aead, km[keySize:], nil
}

// seal appends the encryption of plaintext under mk to dst, authenticating
// ad || header.
func seal(dst []byte, mk *[keySize]byte, plaintext, ad, header []byte) ([]byte, error) {
	aead, nonce, err := messageAEAD(mk)
	if err != nil {
		return nil, err
	}
	return aead.Seal(dst, nonce, plaintext, associatedData(ad, header)), nil
}

// open decrypts ciphertext under mk, checking ad || header. It reports
// ErrAuth when the AEAD does not open.
func open(mk *[keySize]byte, ciphertext, ad, header []byte) ([]byte, error) {
	aead, nonce, err := messageAEAD(mk)
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, nonce, ciphertext, associatedData(ad, header))
	if err != nil {
		return nil, ErrAuth
	}
	return pt, nil
}

// associatedData is CONCAT(AD, header) of spec §3.4.
func associatedData(ad, header []byte) []byte {
	b := make([]byte, 0, len(ad)+len(header))
	return append(append(b, ad...), header...)
}

// newKeyPair is GENERATE_DH: an X25519 key from 32 bytes of rand. It does not
// use ecdh's GenerateKey, which may ignore the reader, so that a seeded
// reader gives reproducible sessions.
func newKeyPair(rand io.Reader) (*ecdh.PrivateKey, error) {
	if rand == nil {
		return nil, errors.New("read random: nil reader")
	}
	var seed [keySize]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("read random: %w", err)
	}
	k, err := ecdh.X25519().NewPrivateKey(seed[:])
	clear(seed[:])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return k, nil
}

// dh is DH of spec §5.2: X25519 of own private key and a peer's public key.
// A low-order peer key (all-zero output) reports ErrInvalidKey.
func dh(priv *ecdh.PrivateKey, pub *[keySize]byte) ([]byte, error) {
	p, err := ecdh.X25519().NewPublicKey(pub[:])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	out, err := priv.ECDH(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return out, nil
}

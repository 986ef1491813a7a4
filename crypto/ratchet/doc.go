// Package ratchet implements Signal's Double Ratchet
// (https://signal.org/docs/specifications/doubleratchet/) for Peergram's
// one-to-one sessions between two devices. A session starts from the 32-byte
// shared key agreed by PQXDH (package crypto/pqxdh) and the responder's
// signed prekey, which serves as the responder's first ratchet key (§3.3,
// §7.1 of the spec).
//
// The package is pure: no I/O, no clock, no goroutines. Randomness is passed
// in as an io.Reader, so a seeded reader reproduces a transcript byte for
// byte. A Session is not safe for concurrent use; the caller serialises
// access and persists MarshalBinary after every successful call.
//
// # Choices (§5.2 "Recommended cryptographic algorithms")
//
//   - GENERATE_DH, DH: X25519 from crypto/ecdh. A new ratchet key is
//     ecdh.X25519().NewPrivateKey of 32 bytes read from the caller's reader.
//   - KDF_RK(rk, dh): HKDF-SHA-256 (crypto/hkdf) with salt = rk, IKM = dh,
//     info = "peergram/ratchet/root/v1", 64 bytes: new root key || chain key.
//   - KDF_CK(ck): message key = HMAC-SHA-256(ck, 0x01), next chain key =
//     HMAC-SHA-256(ck, 0x02).
//   - ENCRYPT(mk, plaintext, ad): HKDF-SHA-256 with salt = 32 zero bytes,
//     IKM = mk, info = "peergram/ratchet/msg/v1", 44 bytes: AES-256 key ||
//     12-byte nonce; then AES-256-GCM. The spec recommends AES-CBC with
//     HMAC-SHA-256; we use a standard AEAD instead. Each message key encrypts
//     exactly one message, so the derived nonce is never reused.
//   - Associated data (§3.4): the AEAD's associated data is the caller's ad
//     followed by the encoded header (version byte included), so the header
//     is authenticated and bound to the session's context (for the first
//     message, PQXDH's AD = IK_A || IK_B).
//
// # Bounds (§3.5 "Skipped message keys", §6.5 "Deletion of skipped keys")
//
// The limits are libsignal's
// (https://github.com/signalapp/libsignal/blob/main/rust/protocol/src/consts.rs):
// one message may skip at most MaxSkip (MAX_FORWARD_JUMPS) keys in a chain;
// at most MaxSkippedKeys (MAX_MESSAGE_KEYS) skipped keys are held, oldest
// evicted first (libsignal bounds each chain; we bound the total, which is
// stricter); keys and replay records are kept for the last MaxOldChains
// (MAX_RECEIVER_CHAINS) receiving chains, the current one included. As in
// libsignal, a forged message can cost up to 2*MaxSkip chain-key steps and
// three X25519 operations before the AEAD rejects it.
//
// # Transactions and deletion
//
// Decrypt stages every change (skipped keys, chain keys, a DH ratchet step)
// and commits only after the AEAD opens, so a forged, corrupted, replayed or
// out-of-bounds message leaves the session exactly as it was (Signal §3.5
// notes this: "changes to the state should be discarded"). The only side
// effect of a failed Decrypt is what it read from rand. A message key is
// deleted once used and chain keys only move forward (§4, §6.5), so a state
// captured after message k cannot decrypt message k or earlier ones, except
// those still waiting in the skipped-key store.
//
// # Wire layout
//
// A message is a 41-byte header followed by the AES-GCM ciphertext (plaintext
// length + 16-byte tag). Integers are big-endian.
//
//	offset size field
//	0      1    version = 1 (MessageVersion)
//	1      32   DH: sender's current ratchet public key
//	33     4    PN: number of messages in the sender's previous sending chain
//	37     4    N: message number in the current sending chain
//	41     ..   ciphertext || tag
//
// MarshalBinary encodes the whole state, skipped keys included (version 1),
// with the shared codec crypto/internal/wire:
//
//	version      byte = 1 (StateVersion)
//	flags        byte: bit 0 DHr set, bit 1 CKs set, bit 2 CKr set
//	DHs          32: own ratchet private key
//	DHr          32: remote ratchet public key (zero if unset)
//	RK, CKs, CKr 32 each (zero if unset)
//	Ns, Nr, PN   uint32 each
//	old chains   count (< MaxOldChains), then per chain: DH 32 || end uint32
//	skipped keys count (<= MaxSkippedKeys), oldest first, then per key:
//	             DH 32 || N uint32 || message key 32
//
// The encoding is canonical: Unmarshal rejects unset fields that are not
// zero, unknown flags, trailing bytes and states that break the session's
// invariants (skipped keys outside a known chain, repeated entries), so
// MarshalBinary of an accepted state returns the input.
package ratchet

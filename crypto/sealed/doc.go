// Package sealed turns a PQXDH key agreement and a Double Ratchet into the
// sealed envelopes Peergram puts on the wire, and keeps what a session must
// remember between messages (to reject replays, also across restarts).
//
// A relay, or anyone else who is not the recipient, learns from an envelope
// only the recipient device (its mailbox), the envelope kind, a per-direction
// session ID that is random to it, and the size. The sender's account and
// device, the message ID, the timestamp and the body are inside the
// encryption, as in Signal's sealed sender
// (https://signal.org/blog/sealed-sender/).
//
// Wire layout (all integers big-endian; see docs/crypto.md):
//
//	envelope   = version:1 kind:1 recipient:32 rest
//	kind 1 (prekey):   sealKey:32 sealed:Var
//	    sealed = AES-256-GCM(k, n, inner, AD = version||kind||recipient||sealKey)
//	    k, n   = HKDF-SHA-256(ikm = X25519(sealKey, IK_B), salt = sealKey||IK_B,
//	                          info = "peergram/sealed/prekey/v1")
//	    inner  = senderCert:Var init:pqxdh.InitSize sessionID:16 ratchet:Var
//	kind 2 (message):  sessionID:16 ratchet:rest
//	ratchet    = ratchet.Session message (header || AEAD ciphertext), AD =
//	             "peergram/sealed/v1" || recipient || sessionID || IK_A || IK_B
//	plaintext  = version:1 messageID:16 account:32 device:32 timestamp:8 body:Var
//
// The initiator keeps sending prekey envelopes (each with a fresh seal key,
// the same PQXDH initial message and the next ratchet message) until it has
// decrypted a message from the responder, so a lost first envelope never
// strands the session (Signal PQXDH §3.3, "Alice continues to send this
// initial ciphertext"). Session IDs are derived from SK, one per direction,
// so the two mailboxes of a conversation show unrelated IDs.
//
// Per message, once a session exists, only symmetric cryptography runs: the
// sealed layer costs one X25519 only on prekey envelopes, and the ratchet
// runs a DH step only when the direction of the conversation changes.
//
// Decrypting is transactional: a message that fails authentication leaves
// the session exactly as it was. A message that authenticates but breaks a
// policy (a repeated message ID, a timestamp out of bounds, a sender that is
// not the session's peer) is consumed and reported as an error.
//
// The package is pure: no I/O, no clock (callers pass now), randomness
// injected.
package sealed

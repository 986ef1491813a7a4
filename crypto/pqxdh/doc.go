// Package pqxdh implements Peergram's session setup: Signal's PQXDH key
// agreement (X25519 + ML-KEM-768) between two devices, and the prekeys a
// device publishes so that others can start sessions with it while it is
// offline.
//
// It follows https://signal.org/docs/specifications/pqxdh/ with these
// choices, each named in the section it departs from or fixes:
//
//   - Curve and KEM (§2.1): curve = X25519, hash = SHA-256, pqkem = ML-KEM-768
//     from the standard library's crypto/mlkem, info =
//     "Peergram_CURVE25519_SHA-256_ML-KEM-768".
//   - Identity key (§2.2): IK is the device's X25519 key, certified by the
//     account key in an identity.DeviceCert. Instead of XEdDSA, prekeys are
//     signed with the device's Ed25519 key, which the same certificate binds
//     (so the signature check of §3.3 becomes: certificate valid, listed in
//     the account's device list, every prekey signature valid under the
//     certified Ed25519 key).
//   - Prekeys (§3.2): a signed X25519 prekey SPK, a signed ML-KEM-768
//     last-resort prekey, and batches of one-time X25519 (OPK) and
//     ML-KEM-768 (PQOPK) prekeys. Unlike Signal we also sign the one-time
//     X25519 prekeys, so a directory can hand out single prekeys that remain
//     verifiable. Signature labels: "peergram/prekey/x25519/v1" and
//     "peergram/prekey/mlkem768/v1" over kind || id || public key.
//   - KDF (§2.2): HKDF-SHA-256 with salt = 32 zero bytes, IKM = 32 0xFF bytes
//     || DH1 || DH2 || DH3 [|| DH4] || SS, 32 bytes of output.
//   - Associated data (§3.3): AD = IK_A || IK_B (raw 32-byte X25519 keys).
//   - One-time prekeys are deleted the first time a responder uses them
//     (§3.4); an initial message naming a consumed or unknown one-time prekey
//     is rejected. An initial message that used no one-time X25519 prekey
//     would otherwise be replayable (§4.2), so the PrekeySet also remembers
//     the ephemeral key of every initial message it accepted, per signed
//     prekey, for as long as that signed prekey lives (a replay needs it),
//     and rejects repeats. A bounded memory that evicts (a ring) could be
//     flushed by new sessions and then replayed into; instead a signed
//     prekey that has accepted MaxSeenEphemeral sessions refuses more
//     (ErrPrekeyFull) and NeedsRotation tells the owner to rotate early.
//
// The package is pure: no I/O, no clock; randomness comes from the caller.
// ML-KEM encapsulation randomness is drawn from the standard library unless
// the caller supplies an Encapsulate function (tests do, to reproduce golden
// transcripts byte for byte).
package pqxdh

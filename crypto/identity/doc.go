// Package identity holds Peergram's long-term keys and the signed
// statements that tie them together: the account key, device keys, device
// certificates, the hash-chained device list and the safety number users
// compare to detect a man in the middle.
//
// An account is its Ed25519 public key (AccountID), so an account ID is
// self-certifying: whoever shows a list signed by that key speaks for the
// account, and no directory or relay has to be trusted to map names to keys.
// A device has an Ed25519 signing key (DeviceID, also its relay mailbox
// address) and an X25519 key for session setup. The account key certifies
// each device (DeviceCert) and signs a versioned list of the certified
// devices (DeviceList). Each list names the hash of the previous one, so a
// client that remembers the newest list it has seen rejects rollbacks
// (ErrRollback), notices two different lists with the same history (ErrFork)
// and asks for missing versions rather than skipping them (ErrGap).
//
// The package is pure: no I/O and no clock. Times are passed in as Unix
// seconds and randomness as an io.Reader, so seeded runs are reproducible.
// Keys are immutable and safe for concurrent use; certificates and lists are
// plain values that callers must not share while mutating.
//
// # Text forms
//
//	AccountID: "pg" + base32(0x01 || pub[32] || sha256(0x01 || pub)[:4])
//	           0x01 is the key type (Ed25519); base32 is RFC 4648 lower
//	           case without padding; 62 characters in all.
//	link:      "peergram://account/" + AccountID
//	DeviceID:  base32(pub[32]), 52 characters.
//
// Parsers trim surrounding spaces and fold ASCII case, then insist on the
// canonical encoding and a correct checksum.
//
// # Domain separation
//
// Every signature covers label || 0x00 || message, so a signature made for
// one purpose never verifies for another. Labels are ASCII, non-empty and
// contain no NUL byte. This package uses:
//
//	"peergram/device-proof/v1"      DeviceCert proof of possession, signed by the device key
//	"peergram/device-cert/v2"       DeviceCert, signed by the account key
//	"peergram/device-cert/v1"       legacy DeviceCert (no proof); never verifies
//	"peergram/device-list/v1"       DeviceList, signed by the account key
//	"peergram/device-list-hash/v1"  prefix of DeviceList.Hash (SHA-256)
//
// Other packages that sign with these keys must pick their own labels of the
// form "peergram/<thing>/v<n>" and never reuse one of the above.
//
// # Wire layout
//
// All integers are big-endian (see crypto/internal/wire). Every format
// starts with a format version byte, currently 0x01; unknown versions are
// rejected with ErrUnknownVersion, any other damage with ErrMalformed.
// Marshalled forms are canonical: Marshal(Parse(b)) == b.
//
//	AccountKey (33 bytes)
//	  0x01 | ed25519 seed [32]
//
//	DeviceKey (65 bytes)
//	  0x01 | ed25519 seed [32] | x25519 private key [32]
//
//	DeviceCert (237..301 bytes)
//	  0x02 | account [32] | device [32] | x25519 public [32]
//	       | created int64 [8] | name len [4] | name (UTF-8, <= 64)
//	       | proof [64] | sig [64]
//	  proof = Ed25519(device, "peergram/device-proof/v1" || 0x00 ||
//	                  0x02 | account | device | x25519 public | created)
//	  sig   = Ed25519(account, "peergram/device-cert/v2" || 0x00 || all bytes before sig)
//
//	The proof shows that whoever asked for the certificate holds the device
//	signing key (the DeviceID), so no account can certify another
//	account's device. Format 0x01 (the same without proof, signed with the
//	v1 label) is parsed but never verifies; a device re-certifies itself.
//
//	DeviceList (149 bytes + 4 + 237..301 per certificate)
//	  0x01 | account [32] | version uint64 [8] | prev [32] | issued int64 [8]
//	       | count uint32 [4] (<= 64)
//	       | count x ( cert len [4] | DeviceCert )
//	       | sig [64]
//	  sig  = Ed25519(account, "peergram/device-list/v1" || 0x00 || all bytes before sig)
//	  Hash = SHA-256("peergram/device-list-hash/v1" || 0x00 || whole encoding)
//
// Version 1 has an all-zero prev; version n+1 carries the Hash of version n.
// A list is valid for MaxListAge after Issued (CheckFresh): certificates
// have no lifetime of their own, so a device's certificate lapses unless its
// account keeps re-issuing a list that names it (every ListRefresh).
// Ed25519 signatures from crypto/ed25519 are not malleable (S < L is
// enforced), so one signed list has exactly one Hash.
//
// # Safety numbers
//
// SafetyNumber follows Signal's NumericFingerprintGenerator
// (https://signal.org/docs/ and libsignal's fingerprint.rs): for each side,
// 5200 iterations of SHA-512 over a 2-byte version 0, the key and a stable
// identifier; 30 digits per side from six 5-byte chunks mod 100000; the
// two halves sorted so both users see the same 60 digits. Peergram's key
// bytes are 0x01 || pub (Signal's are 0x05 || Curve25519 key) and the
// stable identifier is the 32-byte account public key itself, since an
// account ID never changes without the key changing.
package identity

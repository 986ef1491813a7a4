package identity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"io"
	"strings"

	"github.com/peergram/peergram/crypto/internal/wire"
)

const (
	// formatV1 is the first byte of every marshalled object in this package.
	formatV1 = 0x01

	// keyTypeEd25519 tags an account public key in its text form; it plays
	// the role of Signal's 0x05 DJB key type byte.
	keyTypeEd25519 = 0x01

	accountPrefix   = "pg"
	accountLink     = "peergram://account/"
	checksumSize    = 4
	accountRawSize  = 1 + ed25519.PublicKeySize + checksumSize // 37
	accountTextSize = (accountRawSize*8 + 4) / 5               // 60 base32 characters
	accountKeySize  = 1 + ed25519.SeedSize
)

// lowerBase32 is RFC 4648 base32 in lower case without padding. It is
// read-only.
var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// AccountID is the account's Ed25519 public key. It is self-certifying:
// anything the account says is signed by this key.
type AccountID [32]byte

// String returns the account ID's text form: "pg" followed by 60 lower-case
// base32 characters that include a key type byte and a checksum.
func (a AccountID) String() string {
	raw := make([]byte, 0, accountRawSize)
	raw = append(raw, keyTypeEd25519)
	raw = append(raw, a[:]...)
	sum := sha256.Sum256(raw)
	raw = append(raw, sum[:checksumSize]...)
	return accountPrefix + lowerBase32.EncodeToString(raw)
}

// Link returns the account's link, "peergram://account/" + String().
func (a AccountID) Link() string { return accountLink + a.String() }

// MarshalText returns String(), so JSON and text formats show the ID as users
// see it.
func (a AccountID) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText parses any form ParseAccountID accepts.
func (a *AccountID) UnmarshalText(b []byte) error {
	id, err := ParseAccountID(string(b))
	if err != nil {
		return err
	}
	*a = id
	return nil
}

// PublicKey returns a copy of the account's Ed25519 public key.
func (a AccountID) PublicKey() ed25519.PublicKey { return bytes.Clone(a[:]) }

// ParseAccountID parses the String or Link form of an account ID. It trims
// surrounding spaces and folds ASCII case, and fails with ErrBadAccountID
// unless the rest is a canonical encoding with a correct checksum.
func ParseAccountID(s string) (AccountID, error) {
	var a AccountID
	s, ok := foldASCII(s)
	if !ok {
		return a, fmt.Errorf("%w: not ASCII", ErrBadAccountID)
	}
	s = strings.TrimPrefix(s, accountLink)
	body, ok := strings.CutPrefix(s, accountPrefix)
	if !ok {
		return a, fmt.Errorf("%w: missing %q prefix", ErrBadAccountID, accountPrefix)
	}
	if len(body) != accountTextSize {
		return a, fmt.Errorf("%w: %d characters, want %d", ErrBadAccountID, len(body), accountTextSize)
	}
	raw, err := lowerBase32.DecodeString(body)
	if err != nil || len(raw) != accountRawSize {
		return a, fmt.Errorf("%w: bad base32", ErrBadAccountID)
	}
	// Non-zero padding bits would give a second spelling of the same ID.
	if lowerBase32.EncodeToString(raw) != body {
		return a, fmt.Errorf("%w: non-canonical encoding", ErrBadAccountID)
	}
	if raw[0] != keyTypeEd25519 {
		return a, fmt.Errorf("%w: unknown key type %#x", ErrBadAccountID, raw[0])
	}
	payload, check := raw[:1+len(a)], raw[1+len(a):]
	sum := sha256.Sum256(payload)
	if !bytes.Equal(sum[:checksumSize], check) {
		return a, fmt.Errorf("%w: checksum mismatch", ErrBadAccountID)
	}
	copy(a[:], payload[1:])
	return a, nil
}

// foldASCII trims spaces and lower-cases s. It reports false if s holds a
// non-ASCII byte, so no Unicode case folding can map a look-alike character
// onto a valid ID.
func foldASCII(s string) (string, bool) {
	s = strings.TrimSpace(s)
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return "", false
		}
	}
	return strings.ToLower(s), true
}

// AccountKey is an account's private Ed25519 key. It is immutable and safe
// for concurrent use.
type AccountKey struct {
	priv ed25519.PrivateKey
	id   AccountID
}

// NewAccountKey generates an account key from 32 bytes of rand; nil means
// crypto/rand. The same bytes always give the same key.
func NewAccountKey(rand io.Reader) (*AccountKey, error) {
	var seed [ed25519.SeedSize]byte
	if err := readRand(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("identity: new account key: %w", err)
	}
	return newAccountKey(seed[:]), nil
}

func newAccountKey(seed []byte) *AccountKey {
	k := &AccountKey{priv: ed25519.NewKeyFromSeed(seed)}
	copy(k.id[:], k.priv.Public().(ed25519.PublicKey))
	return k
}

// ID returns the account ID, which is the public key.
func (k *AccountKey) ID() AccountID { return k.id }

// Sign signs label || 0x00 || msg. The label names the purpose of the
// signature (see the package documentation); a label that is empty or
// contains a NUL byte yields a nil signature, which never verifies.
func (k *AccountKey) Sign(label string, msg []byte) []byte { return sign(k.priv, label, msg) }

// MarshalBinary encodes the private key (format byte and seed).
func (k *AccountKey) MarshalBinary() ([]byte, error) {
	w := wire.NewWriter(accountKeySize)
	w.Byte(formatV1)
	w.Fixed(k.priv.Seed())
	return w.Bytes(), nil
}

// UnmarshalAccountKey decodes the output of AccountKey.MarshalBinary.
func UnmarshalAccountKey(b []byte) (*AccountKey, error) {
	r := wire.NewReader(b)
	if err := checkFormat(r); err != nil {
		return nil, fmt.Errorf("identity: unmarshal account key: %w", err)
	}
	var seed [ed25519.SeedSize]byte
	r.FixedInto(seed[:])
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("identity: unmarshal account key: %w: %w", ErrMalformed, err)
	}
	return newAccountKey(seed[:]), nil
}

// Verify reports whether sig is pub's signature of label || 0x00 || msg, as
// made by AccountKey.Sign or DeviceKey.Sign.
func Verify(pub ed25519.PublicKey, label string, msg, sig []byte) bool {
	return VerifyParts(pub, label, sig, msg)
}

// VerifyParts is Verify of msg = the concatenation of parts, without
// building msg on the heap when it is small: a node verifies every group
// message it forwards, and a copy per verification was a good part of its
// garbage (docs/performance.md, G1).
func VerifyParts(pub ed25519.PublicKey, label string, sig []byte, parts ...[]byte) bool {
	if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize || !validLabel(label) {
		return false
	}
	n := len(label) + 1
	for _, p := range parts {
		n += len(p)
	}
	var small [stackMsg]byte
	b := small[:0]
	if n > len(small) {
		b = make([]byte, 0, n)
	}
	b = append(b, label...)
	b = append(b, 0)
	for _, p := range parts {
		b = append(b, p...)
	}
	return ed25519.Verify(pub, b, sig)
}

// stackMsg bounds the signed messages VerifyParts builds on the stack.
const stackMsg = 2048

func sign(priv ed25519.PrivateKey, label string, msg []byte) []byte {
	if !validLabel(label) {
		return nil
	}
	return ed25519.Sign(priv, labelled(label, msg))
}

func validLabel(label string) bool {
	return label != "" && strings.IndexByte(label, 0) < 0
}

// labelled returns label || 0x00 || msg. Labels never contain NUL, so the
// split between label and message is unambiguous.
func labelled(label string, msg []byte) []byte {
	b := make([]byte, 0, len(label)+1+len(msg))
	b = append(b, label...)
	b = append(b, 0)
	return append(b, msg...)
}

// readRand fills b from rand, or from crypto/rand if rand is nil.
func readRand(r io.Reader, b []byte) error {
	if r == nil {
		r = rand.Reader
	}
	_, err := io.ReadFull(r, b)
	return err
}

// checkFormat reads the leading format byte.
func checkFormat(r *wire.Reader) error {
	v := r.Byte()
	if err := r.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if v != formatV1 {
		return fmt.Errorf("%w: %#x", ErrUnknownVersion, v)
	}
	return nil
}

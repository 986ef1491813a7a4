package pqxdh

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/mlkem"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"

	"github.com/peergram/peergram/crypto/internal/wire"
)

// Info is the HKDF info string of §2.2.
const Info = "Peergram_CURVE25519_SHA-256_ML-KEM-768"

// InitSize is the encoded size of an InitMessage.
const InitSize = 1 + 32 + 32 + 4 + 1 + 4 + 4 + mlkem.CiphertextSize768

// InitMessage is what the initiator sends so that the responder can derive
// the same secret (§3.3): the initiator's identity and ephemeral keys, which
// prekeys were used, and the ML-KEM ciphertext.
type InitMessage struct {
	IdentityKey  [32]byte // IK_A
	EphemeralKey [32]byte // EK_A
	SignedPrekey uint32   // ID of SPK_B
	PQKind       byte     // PQOneTime or PQLastResort
	PQPrekey     uint32   // ID of the PQ prekey encapsulated to
	OneTime      uint32   // ID of OPK_B; 0 when none was available
	Ciphertext   []byte   // CT, mlkem.CiphertextSize768 bytes
}

// Which ML-KEM prekey an initial message used. Append-only.
const (
	PQOneTime    byte = 1
	PQLastResort byte = 2
)

// MarshalBinary encodes the message.
func (m *InitMessage) MarshalBinary() ([]byte, error) {
	if len(m.Ciphertext) != mlkem.CiphertextSize768 {
		return nil, fmt.Errorf("%w: ciphertext is %d bytes", ErrMalformed, len(m.Ciphertext))
	}
	w := wire.NewWriter(InitSize)
	w.Byte(encodingVersion)
	w.Fixed(m.IdentityKey[:])
	w.Fixed(m.EphemeralKey[:])
	w.Uint32(m.SignedPrekey)
	w.Byte(m.PQKind)
	w.Uint32(m.PQPrekey)
	w.Uint32(m.OneTime)
	w.Fixed(m.Ciphertext)
	return w.Bytes(), nil
}

// ParseInitMessage decodes an initial message.
func ParseInitMessage(data []byte) (*InitMessage, error) {
	r := wire.NewReader(data)
	if v := r.Byte(); r.Err() == nil && v != encodingVersion {
		return nil, fmt.Errorf("%w: init message version %d", ErrUnknownVersion, v)
	}
	m := &InitMessage{}
	r.FixedInto(m.IdentityKey[:])
	r.FixedInto(m.EphemeralKey[:])
	m.SignedPrekey = r.Uint32()
	m.PQKind = r.Byte()
	m.PQPrekey = r.Uint32()
	m.OneTime = r.Uint32()
	m.Ciphertext = r.Fixed(mlkem.CiphertextSize768)
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("%w: init message: %w", ErrMalformed, err)
	}
	if m.PQKind != PQOneTime && m.PQKind != PQLastResort {
		return nil, fmt.Errorf("%w: init message: PQ kind %d", ErrMalformed, m.PQKind)
	}
	// X25519 ignores the top bit of a public key (RFC 7748 §5), so a key
	// with it set is the same key under a second encoding: refused, or a
	// replay could slip past the replay memory with the bit flipped.
	if m.IdentityKey[31]&0x80 != 0 || m.EphemeralKey[31]&0x80 != 0 {
		return nil, fmt.Errorf("%w: init message: non-canonical X25519 key", ErrMalformed)
	}
	return m, nil
}

// Result is the outcome of a successful key agreement on either side.
type Result struct {
	// SharedKey is SK, 32 bytes, the Double Ratchet's initial root key.
	SharedKey []byte
	// AD is IK_A || IK_B, the associated data every later message binds.
	AD []byte
	// SignedPrekey is SPK_B: the initiator's first ratchet public key target
	// (Double Ratchet §3.3); on the responder side use SignedPrekeyPriv.
	SignedPrekey *ecdh.PublicKey
	// SignedPrekeyPriv is SPK_B's private half (responder only).
	SignedPrekeyPriv *ecdh.PrivateKey
}

// Encapsulator encapsulates to an ML-KEM-768 key. nil means the standard
// library's randomized Encapsulate.
type Encapsulator func(ek *mlkem.EncapsulationKey768) (sharedKey, ciphertext []byte, err error)

// Initiate runs the initiator side of §3.3 against a bundle the caller has
// verified (Bundle.Verify plus the device list check). It uses the bundle's
// first one-time prekeys, if any. ik is the initiator's device X25519 key.
func Initiate(rand io.Reader, ik *ecdh.PrivateKey, b *Bundle, encap Encapsulator) (*Result, *InitMessage, error) {
	x := ecdh.X25519()
	ikB, err := x.NewPublicKey(b.IdentityKey[:])
	if err != nil {
		return nil, nil, fmt.Errorf("%w: identity key: %w", ErrKey, err)
	}
	spkB, err := x.NewPublicKey(b.SignedPrekey.Pub)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: signed prekey: %w", ErrKey, err)
	}
	msg := &InitMessage{SignedPrekey: b.SignedPrekey.ID}
	copy(msg.IdentityKey[:], ik.PublicKey().Bytes())
	pq := b.LastResortPQ
	msg.PQKind = PQLastResort
	if len(b.OneTimePQ) > 0 {
		pq, msg.PQKind = b.OneTimePQ[0], PQOneTime
	}
	msg.PQPrekey = pq.ID
	ek, err := mlkem.NewEncapsulationKey768(pq.Pub)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: PQ prekey: %w", ErrKey, err)
	}
	var ss []byte
	if encap != nil {
		ss, msg.Ciphertext, err = encap(ek)
		if err != nil {
			return nil, nil, fmt.Errorf("pqxdh: encapsulate: %w", err)
		}
	} else {
		ss, msg.Ciphertext = ek.Encapsulate()
	}
	eph, err := newX25519(rand)
	if err != nil {
		return nil, nil, err
	}
	copy(msg.EphemeralKey[:], eph.PublicKey().Bytes())

	dhs := make([][]byte, 0, 4)
	for _, pair := range []struct {
		priv *ecdh.PrivateKey
		pub  *ecdh.PublicKey
	}{{ik, spkB}, {eph, ikB}, {eph, spkB}} {
		out, err := pair.priv.ECDH(pair.pub)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrKey, err)
		}
		dhs = append(dhs, out)
	}
	if len(b.OneTime) > 0 {
		opk, err := x.NewPublicKey(b.OneTime[0].Pub)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: one-time prekey: %w", ErrKey, err)
		}
		out, err := eph.ECDH(opk)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrKey, err)
		}
		dhs = append(dhs, out)
		msg.OneTime = b.OneTime[0].ID
	}
	sk, err := kdf(dhs, ss)
	if err != nil {
		return nil, nil, err
	}
	return &Result{SharedKey: sk, AD: ad(msg.IdentityKey[:], b.IdentityKey[:]), SignedPrekey: spkB}, msg, nil
}

// Respond runs the responder side of §3.4 with the device's identity key ik
// and prekeys s. It does not change s: once the first message of the
// session has been authenticated, the caller calls s.Consume(m) and persists
// s together with the new session, so that a forged initial message burns
// no prekey and a crash cannot make a one-time prekey usable twice.
func Respond(s *PrekeySet, ik *ecdh.PrivateKey, m *InitMessage) (*Result, error) {
	if s.replayed(m.SignedPrekey, canonical(m.EphemeralKey)) {
		return nil, ErrReplay
	}
	if len(s.seen[m.SignedPrekey]) >= MaxSeenEphemeral {
		return nil, fmt.Errorf("%w: signed prekey %d", ErrPrekeyFull, m.SignedPrekey)
	}
	x := ecdh.X25519()
	spk := s.findSigned(m.SignedPrekey)
	if spk == nil {
		return nil, fmt.Errorf("%w: signed prekey %d", ErrUnknownPrekey, m.SignedPrekey)
	}
	var dk *mlkem.DecapsulationKey768
	switch m.PQKind {
	case PQOneTime:
		if k, ok := s.oneTimePQ[m.PQPrekey]; ok {
			dk = k.dk
		}
	case PQLastResort:
		dk = s.findLastResort(m.PQPrekey)
	}
	if dk == nil {
		return nil, fmt.Errorf("%w: PQ prekey %d", ErrUnknownPrekey, m.PQPrekey)
	}
	var opk *ecdh.PrivateKey
	if m.OneTime != 0 {
		k, ok := s.oneTime[m.OneTime]
		if !ok {
			return nil, fmt.Errorf("%w: one-time prekey %d", ErrUnknownPrekey, m.OneTime)
		}
		opk = k.priv
	}
	ikA, err := x.NewPublicKey(m.IdentityKey[:])
	if err != nil {
		return nil, fmt.Errorf("%w: identity key: %w", ErrKey, err)
	}
	ekA, err := x.NewPublicKey(m.EphemeralKey[:])
	if err != nil {
		return nil, fmt.Errorf("%w: ephemeral key: %w", ErrKey, err)
	}
	ss, err := dk.Decapsulate(m.Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("%w: decapsulate: %w", ErrKey, err)
	}
	dhs := make([][]byte, 0, 4)
	for _, pair := range []struct {
		priv *ecdh.PrivateKey
		pub  *ecdh.PublicKey
	}{{spk, ikA}, {ik, ekA}, {spk, ekA}} {
		out, err := pair.priv.ECDH(pair.pub)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrKey, err)
		}
		dhs = append(dhs, out)
	}
	if opk != nil {
		out, err := opk.ECDH(ekA)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrKey, err)
		}
		dhs = append(dhs, out)
	}
	sk, err := kdf(dhs, ss)
	if err != nil {
		return nil, err
	}
	return &Result{
		SharedKey:        sk,
		AD:               ad(m.IdentityKey[:], ik.PublicKey().Bytes()),
		SignedPrekey:     spk.PublicKey(),
		SignedPrekeyPriv: spk,
	}, nil
}

// Consume deletes the one-time prekeys m used and remembers its ephemeral
// key for as long as the signed prekey it used lives, so the same initial
// message is never accepted again (§3.4, §4.2).
func (s *PrekeySet) Consume(m *InitMessage) {
	if m.OneTime != 0 {
		delete(s.oneTime, m.OneTime)
	}
	if m.PQKind == PQOneTime {
		delete(s.oneTimePQ, m.PQPrekey)
	}
	s.remember(m.SignedPrekey, canonical(m.EphemeralKey))
}

// canonical clears the bit X25519 ignores (RFC 7748 §5), so both
// encodings of a public key are remembered as one.
func canonical(k [32]byte) [32]byte {
	k[31] &= 0x7f
	return k
}

// kdf is §2.2's KDF: HKDF-SHA-256(salt = zeros, IKM = F || KM, info).
func kdf(dhs [][]byte, ss []byte) ([]byte, error) {
	ikm := make([]byte, 0, 32+32*len(dhs)+len(ss))
	for range 32 {
		ikm = append(ikm, 0xFF)
	}
	for _, d := range dhs {
		ikm = append(ikm, d...)
	}
	ikm = append(ikm, ss...)
	sk, err := hkdf.Key(sha256.New, ikm, make([]byte, 32), Info, 32)
	if err != nil {
		return nil, fmt.Errorf("pqxdh: kdf: %w", err)
	}
	return sk, nil
}

func ad(ikA, ikB []byte) []byte {
	out := make([]byte, 0, 64)
	return append(append(out, ikA...), ikB...)
}

// Equal reports whether two results agree on key and associated data in
// constant time. Tests and diagnostics use it.
func (r *Result) Equal(o *Result) bool {
	return subtle.ConstantTimeCompare(r.SharedKey, o.SharedKey) == 1 && subtle.ConstantTimeCompare(r.AD, o.AD) == 1
}

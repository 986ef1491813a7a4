package pqxdh

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/mlkem"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/internal/wire"
)

// Prekey kinds, as signed and encoded. Append-only.
const (
	KindX25519   byte = 1
	KindMLKEM768 byte = 2
)

// Signature labels (see doc.go).
const (
	labelX25519 = "peergram/prekey/x25519/v1"
	labelMLKEM  = "peergram/prekey/mlkem768/v1"
)

// Bounds on what a bundle or prekey set may hold.
const (
	// MaxOneTime is the most one-time prekeys of each kind a bundle carries.
	MaxOneTime = 1000
	// MaxSeenEphemeral is how many accepted ephemeral keys a PrekeySet
	// remembers per signed prekey to reject replayed initial messages. They
	// are kept for as long as the signed prekey lives, so no flood of new
	// sessions can push a key out while a replay of it could still succeed;
	// a signed prekey whose set is full accepts no new initial message
	// (ErrPrekeyFull) until the owner rotates (see NeedsRotation).
	MaxSeenEphemeral = 20000
	// RotateAfterSeen is the number of initial messages accepted on the
	// current signed prekey after which NeedsRotation reports true.
	RotateAfterSeen = MaxSeenEphemeral / 2
	// maxSigned bounds how many signed and last-resort prekeys (current and
	// recently rotated) a PrekeySet keeps.
	maxSigned = 4
)

const encodingVersion = 1

// prekeySetVersion is the PrekeySet encoding. Version 2 keeps the seen
// ephemeral keys per signed prekey; version 1 (one ring of 4,096) is still
// read.
const prekeySetVersion = 2

// SignedKey is one public prekey with its ID and the device's signature.
type SignedKey struct {
	ID  uint32
	Pub []byte // 32 bytes for X25519, mlkem.EncapsulationKeySize768 for ML-KEM-768
	Sig []byte // Ed25519 by the device signing key
}

func signedMessage(kind byte, id uint32, pub []byte) []byte {
	w := wire.NewWriter(5 + len(pub))
	w.Byte(kind)
	w.Uint32(id)
	w.Fixed(pub)
	return w.Bytes()
}

func label(kind byte) string {
	if kind == KindMLKEM768 {
		return labelMLKEM
	}
	return labelX25519
}

func pubSize(kind byte) int {
	if kind == KindMLKEM768 {
		return mlkem.EncapsulationKeySize768
	}
	return 32
}

func (k SignedKey) verify(kind byte, signer ed25519.PublicKey) error {
	if len(k.Pub) != pubSize(kind) {
		return fmt.Errorf("%w: prekey %d has %d-byte key", ErrMalformed, k.ID, len(k.Pub))
	}
	if !identity.Verify(signer, label(kind), signedMessage(kind, k.ID, k.Pub), k.Sig) {
		return fmt.Errorf("%w: prekey %d", ErrBadSignature, k.ID)
	}
	return nil
}

// Bundle is what a device publishes to a directory so that others can start
// a session with it. A bundle handed to an initiator carries at most one
// one-time prekey of each kind (see Take).
type Bundle struct {
	Device       identity.DeviceID
	IdentityKey  [32]byte // X25519 IK; equals the device certificate's DH key
	SignedPrekey SignedKey
	LastResortPQ SignedKey
	OneTime      []SignedKey // X25519
	OneTimePQ    []SignedKey // ML-KEM-768
}

// Verify checks the bundle against the device's certificate: same device and
// identity key, and every prekey signed by the certified device key. The
// caller checks that the certificate is valid and listed in the account's
// current device list (identity.DeviceList.Lookup).
func (b *Bundle) Verify(cert *identity.DeviceCert) error {
	if cert == nil || cert.Device != b.Device || cert.DH != b.IdentityKey {
		return ErrDeviceMismatch
	}
	signer := ed25519.PublicKey(b.Device[:])
	if err := b.SignedPrekey.verify(KindX25519, signer); err != nil {
		return err
	}
	if err := b.LastResortPQ.verify(KindMLKEM768, signer); err != nil {
		return err
	}
	for _, k := range b.OneTime {
		if err := k.verify(KindX25519, signer); err != nil {
			return err
		}
	}
	for _, k := range b.OneTimePQ {
		if err := k.verify(KindMLKEM768, signer); err != nil {
			return err
		}
	}
	return nil
}

// Take returns a copy of b carrying at most one one-time prekey of each kind,
// and removes those prekeys from b. A directory calls it once per request so
// that each one-time prekey is handed out once.
func (b *Bundle) Take() *Bundle {
	out := *b
	out.OneTime, out.OneTimePQ = nil, nil
	if len(b.OneTime) > 0 {
		out.OneTime = []SignedKey{b.OneTime[0]}
		b.OneTime = slices.Clone(b.OneTime[1:])
	}
	if len(b.OneTimePQ) > 0 {
		out.OneTimePQ = []SignedKey{b.OneTimePQ[0]}
		b.OneTimePQ = slices.Clone(b.OneTimePQ[1:])
	}
	return &out
}

func writeKey(w *wire.Writer, k SignedKey) {
	w.Uint32(k.ID)
	w.Fixed(k.Pub)
	w.Fixed(k.Sig)
}

func readKey(r *wire.Reader, kind byte) SignedKey {
	return SignedKey{ID: r.Uint32(), Pub: r.Fixed(pubSize(kind)), Sig: r.Fixed(ed25519.SignatureSize)}
}

// MarshalBinary encodes the bundle.
func (b *Bundle) MarshalBinary() ([]byte, error) {
	for _, k := range []SignedKey{b.SignedPrekey, b.LastResortPQ} {
		if len(k.Sig) != ed25519.SignatureSize {
			return nil, fmt.Errorf("%w: unsigned prekey %d", ErrMalformed, k.ID)
		}
	}
	if len(b.OneTime) > MaxOneTime || len(b.OneTimePQ) > MaxOneTime {
		return nil, fmt.Errorf("%w: too many one-time prekeys", ErrMalformed)
	}
	w := wire.NewWriter(2048 + len(b.OneTimePQ)*1300 + len(b.OneTime)*100)
	w.Byte(encodingVersion)
	w.Fixed(b.Device[:])
	w.Fixed(b.IdentityKey[:])
	writeKey(w, b.SignedPrekey)
	writeKey(w, b.LastResortPQ)
	w.Uint32(uint32(len(b.OneTime)))
	for _, k := range b.OneTime {
		if len(k.Pub) != 32 || len(k.Sig) != ed25519.SignatureSize {
			return nil, fmt.Errorf("%w: one-time prekey %d", ErrMalformed, k.ID)
		}
		writeKey(w, k)
	}
	w.Uint32(uint32(len(b.OneTimePQ)))
	for _, k := range b.OneTimePQ {
		if len(k.Pub) != mlkem.EncapsulationKeySize768 || len(k.Sig) != ed25519.SignatureSize {
			return nil, fmt.Errorf("%w: one-time PQ prekey %d", ErrMalformed, k.ID)
		}
		writeKey(w, k)
	}
	return w.Bytes(), nil
}

// ParseBundle decodes a bundle. It checks structure only; call Verify.
func ParseBundle(data []byte) (*Bundle, error) {
	r := wire.NewReader(data)
	if v := r.Byte(); r.Err() == nil && v != encodingVersion {
		return nil, fmt.Errorf("%w: bundle version %d", ErrUnknownVersion, v)
	}
	b := &Bundle{}
	r.FixedInto(b.Device[:])
	r.FixedInto(b.IdentityKey[:])
	b.SignedPrekey = readKey(r, KindX25519)
	b.LastResortPQ = readKey(r, KindMLKEM768)
	n := r.Count(MaxOneTime, 4+32+64)
	for range n {
		b.OneTime = append(b.OneTime, readKey(r, KindX25519))
	}
	n = r.Count(MaxOneTime, 4+mlkem.EncapsulationKeySize768+64)
	for range n {
		b.OneTimePQ = append(b.OneTimePQ, readKey(r, KindMLKEM768))
	}
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("%w: bundle: %w", ErrMalformed, err)
	}
	return b, nil
}

// PrekeySet is a device's private prekeys: the private halves of what its
// bundles publish. Not safe for concurrent use; the owner persists it (with
// MarshalBinary) after every Respond, since Respond consumes one-time keys.
type PrekeySet struct {
	nextID     uint32
	signed     []ecPrekey // newest last; the newest is current
	lastResort []pqPrekey // newest last
	oneTime    map[uint32]ecPrekey
	oneTimePQ  map[uint32]pqPrekey
	// seen holds, per signed prekey ID, the ephemeral keys of the initial
	// messages accepted with it; dropped with the signed prekey.
	seen map[uint32]map[[32]byte]struct{}
	// owned marks the seen sets this set may write to; a Clone shares the
	// others with its origin and copies one before its first write.
	owned map[uint32]bool
}

// Clone returns a copy that can be changed without changing s: the
// owner's copy-on-write step before Consume, Refill, RotateSigned or
// RetireOneTime. It is cheap: keys are immutable and shared, and a seen
// set is copied only when the clone first writes to it.
func (s *PrekeySet) Clone() *PrekeySet {
	c := &PrekeySet{
		nextID:     s.nextID,
		signed:     slices.Clone(s.signed),
		lastResort: slices.Clone(s.lastResort),
		oneTime:    maps.Clone(s.oneTime),
		oneTimePQ:  maps.Clone(s.oneTimePQ),
		seen:       maps.Clone(s.seen),
		owned:      map[uint32]bool{},
	}
	if c.oneTime == nil {
		c.oneTime = map[uint32]ecPrekey{}
	}
	if c.oneTimePQ == nil {
		c.oneTimePQ = map[uint32]pqPrekey{}
	}
	if c.seen == nil {
		c.seen = map[uint32]map[[32]byte]struct{}{}
	}
	return c
}

type ecPrekey struct {
	pub  SignedKey
	priv *ecdh.PrivateKey
}

type pqPrekey struct {
	pub  SignedKey
	seed []byte // 64-byte ML-KEM seed (FIPS 203 d || z)
	dk   *mlkem.DecapsulationKey768
}

func newX25519(rand io.Reader) (*ecdh.PrivateKey, error) {
	var seed [32]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("pqxdh: read random: %w", err)
	}
	return ecdh.X25519().NewPrivateKey(seed[:])
}

func (s *PrekeySet) id() uint32 {
	s.nextID++
	return s.nextID
}

func (s *PrekeySet) newEC(rand io.Reader, dev *identity.DeviceKey) (ecPrekey, error) {
	priv, err := newX25519(rand)
	if err != nil {
		return ecPrekey{}, err
	}
	id := s.id()
	pub := priv.PublicKey().Bytes()
	sig := dev.Sign(labelX25519, signedMessage(KindX25519, id, pub))
	return ecPrekey{pub: SignedKey{ID: id, Pub: pub, Sig: sig}, priv: priv}, nil
}

func (s *PrekeySet) newPQ(rand io.Reader, dev *identity.DeviceKey) (pqPrekey, error) {
	seed := make([]byte, mlkem.SeedSize)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return pqPrekey{}, fmt.Errorf("pqxdh: read random: %w", err)
	}
	dk, err := mlkem.NewDecapsulationKey768(seed)
	if err != nil {
		return pqPrekey{}, fmt.Errorf("%w: %w", ErrKey, err)
	}
	id := s.id()
	pub := dk.EncapsulationKey().Bytes()
	sig := dev.Sign(labelMLKEM, signedMessage(KindMLKEM768, id, pub))
	return pqPrekey{pub: SignedKey{ID: id, Pub: pub, Sig: sig}, seed: seed, dk: dk}, nil
}

// GeneratePrekeys creates a device's first prekey set: a signed X25519
// prekey, a last-resort ML-KEM-768 prekey and n one-time prekeys of each
// kind.
func GeneratePrekeys(rand io.Reader, dev *identity.DeviceKey, n int) (*PrekeySet, error) {
	s := newPrekeySet()
	if err := s.RotateSigned(rand, dev); err != nil {
		return nil, err
	}
	if _, err := s.Refill(rand, dev, n); err != nil {
		return nil, err
	}
	return s, nil
}

// RotateSigned replaces the signed X25519 prekey and the last-resort
// ML-KEM-768 prekey with new ones. The previous few stay usable for initial
// messages already in flight (Signal §3.2: "old signed prekeys" are kept for
// a while).
func (s *PrekeySet) RotateSigned(rand io.Reader, dev *identity.DeviceKey) error {
	ec, err := s.newEC(rand, dev)
	if err != nil {
		return err
	}
	pq, err := s.newPQ(rand, dev)
	if err != nil {
		return err
	}
	s.signed = append(s.signed, ec)
	s.lastResort = append(s.lastResort, pq)
	if len(s.signed) > maxSigned {
		for _, k := range s.signed[:len(s.signed)-maxSigned] {
			// Initial messages that used a dropped signed prekey fail
			// with ErrUnknownPrekey: their ephemeral keys need no memory.
			delete(s.seen, k.pub.ID)
		}
		s.signed = s.signed[len(s.signed)-maxSigned:]
	}
	if len(s.lastResort) > maxSigned {
		s.lastResort = s.lastResort[len(s.lastResort)-maxSigned:]
	}
	return nil
}

// Refill adds n one-time prekeys of each kind and returns a bundle holding
// only the new ones (to publish in addition to what the directory has).
func (s *PrekeySet) Refill(rand io.Reader, dev *identity.DeviceKey, n int) (*Bundle, error) {
	if n < 0 || len(s.oneTime)+n > MaxOneTime {
		return nil, fmt.Errorf("pqxdh: refill: %d one-time prekeys would exceed %d", n, MaxOneTime)
	}
	b := s.bundleHead(dev)
	for range n {
		ec, err := s.newEC(rand, dev)
		if err != nil {
			return nil, err
		}
		s.oneTime[ec.pub.ID] = ec
		b.OneTime = append(b.OneTime, ec.pub)
		pq, err := s.newPQ(rand, dev)
		if err != nil {
			return nil, err
		}
		s.oneTimePQ[pq.pub.ID] = pq
		b.OneTimePQ = append(b.OneTimePQ, pq.pub)
	}
	return b, nil
}

func (s *PrekeySet) bundleHead(dev *identity.DeviceKey) *Bundle {
	b := &Bundle{Device: dev.ID()}
	copy(b.IdentityKey[:], dev.DH().PublicKey().Bytes())
	b.SignedPrekey = s.signed[len(s.signed)-1].pub
	b.LastResortPQ = s.lastResort[len(s.lastResort)-1].pub
	return b
}

// Bundle returns the full public bundle: current signed prekeys and every
// unused one-time prekey, in ID order.
func (s *PrekeySet) Bundle(dev *identity.DeviceKey) *Bundle {
	b := s.bundleHead(dev)
	for _, id := range sortedKeys(s.oneTime) {
		b.OneTime = append(b.OneTime, s.oneTime[id].pub)
	}
	for _, id := range sortedKeys(s.oneTimePQ) {
		b.OneTimePQ = append(b.OneTimePQ, s.oneTimePQ[id].pub)
	}
	return b
}

// RetireOneTime deletes the unused one-time prekeys with IDs below
// x25519Below (X25519) and mlkemBelow (ML-KEM-768) and returns how many it
// deleted. An owner calls it for keys a directory handed out so long ago
// that no initial message using them can still arrive: handed out, never
// used, they would otherwise be kept forever.
func (s *PrekeySet) RetireOneTime(x25519Below, mlkemBelow uint32) int {
	n := 0
	for id := range s.oneTime {
		if id < x25519Below {
			delete(s.oneTime, id)
			n++
		}
	}
	for id := range s.oneTimePQ {
		if id < mlkemBelow {
			delete(s.oneTimePQ, id)
			n++
		}
	}
	return n
}

// OneTimeLeft reports how many unused one-time prekeys of each kind remain.
func (s *PrekeySet) OneTimeLeft() (x25519, mlkem768 int) {
	return len(s.oneTime), len(s.oneTimePQ)
}

func sortedKeys[V any](m map[uint32]V) []uint32 {
	ids := make([]uint32, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (s *PrekeySet) findSigned(id uint32) *ecdh.PrivateKey {
	for _, k := range s.signed {
		if k.pub.ID == id {
			return k.priv
		}
	}
	return nil
}

func (s *PrekeySet) findLastResort(id uint32) *mlkem.DecapsulationKey768 {
	for _, k := range s.lastResort {
		if k.pub.ID == id {
			return k.dk
		}
	}
	return nil
}

func newPrekeySet() *PrekeySet {
	return &PrekeySet{oneTime: map[uint32]ecPrekey{}, oneTimePQ: map[uint32]pqPrekey{}, seen: map[uint32]map[[32]byte]struct{}{}, owned: map[uint32]bool{}}
}

func (s *PrekeySet) remember(spk uint32, ek [32]byte) {
	set := s.seen[spk]
	switch {
	case set == nil:
		set = map[[32]byte]struct{}{}
	case !s.owned[spk]:
		set = maps.Clone(set)
	}
	s.seen[spk] = set
	s.owned[spk] = true
	set[ek] = struct{}{}
}

func (s *PrekeySet) replayed(spk uint32, ek [32]byte) bool {
	_, ok := s.seen[spk][ek]
	return ok
}

// NeedsRotation reports whether the current signed prekey has accepted
// RotateAfterSeen initial messages: the owner should call RotateSigned and
// publish. Owners also rotate on a schedule (Signal suggests every week
// to month, §3.2).
func (s *PrekeySet) NeedsRotation() bool {
	return len(s.seen[s.signed[len(s.signed)-1].pub.ID]) >= RotateAfterSeen
}

// SignedPrekeyID returns the ID of the current signed prekey.
func (s *PrekeySet) SignedPrekeyID() uint32 { return s.signed[len(s.signed)-1].pub.ID }

// MarshalBinary encodes the private prekeys. The result is secret: store it
// only in the device's encrypted store.
func (s *PrekeySet) MarshalBinary() ([]byte, error) {
	w := wire.NewWriter(4096 + len(s.oneTimePQ)*(64+1300) + len(s.oneTime)*140)
	w.Byte(prekeySetVersion)
	w.Uint32(s.nextID)
	w.Uint32(uint32(len(s.signed)))
	for _, k := range s.signed {
		writeKey(w, k.pub)
		w.Fixed(k.priv.Bytes())
	}
	w.Uint32(uint32(len(s.lastResort)))
	for _, k := range s.lastResort {
		writeKey(w, k.pub)
		w.Fixed(k.seed)
	}
	w.Uint32(uint32(len(s.oneTime)))
	for _, id := range sortedKeys(s.oneTime) {
		k := s.oneTime[id]
		writeKey(w, k.pub)
		w.Fixed(k.priv.Bytes())
	}
	w.Uint32(uint32(len(s.oneTimePQ)))
	for _, id := range sortedKeys(s.oneTimePQ) {
		k := s.oneTimePQ[id]
		writeKey(w, k.pub)
		w.Fixed(k.seed)
	}
	w.Uint32(uint32(len(s.seen)))
	for _, id := range sortedKeys(s.seen) {
		w.Uint32(id)
		eks := make([][32]byte, 0, len(s.seen[id]))
		for ek := range s.seen[id] {
			eks = append(eks, ek)
		}
		slices.SortFunc(eks, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
		w.Uint32(uint32(len(eks)))
		for _, ek := range eks {
			w.Fixed(ek[:])
		}
	}
	return w.Bytes(), nil
}

func readEC(r *wire.Reader) (ecPrekey, error) {
	pub := readKey(r, KindX25519)
	raw := r.Fixed(32)
	if r.Err() != nil {
		return ecPrekey{}, r.Err()
	}
	priv, err := ecdh.X25519().NewPrivateKey(raw)
	if err != nil {
		return ecPrekey{}, err
	}
	return ecPrekey{pub: pub, priv: priv}, nil
}

func readPQ(r *wire.Reader) (pqPrekey, error) {
	pub := readKey(r, KindMLKEM768)
	seed := r.Fixed(mlkem.SeedSize)
	if r.Err() != nil {
		return pqPrekey{}, r.Err()
	}
	dk, err := mlkem.NewDecapsulationKey768(seed)
	if err != nil {
		return pqPrekey{}, err
	}
	return pqPrekey{pub: pub, seed: seed, dk: dk}, nil
}

// UnmarshalPrekeySet decodes what MarshalBinary produced.
func UnmarshalPrekeySet(data []byte) (*PrekeySet, error) {
	s, err := unmarshalPrekeySet(data)
	if err != nil {
		return nil, fmt.Errorf("%w: prekey set: %w", ErrMalformed, err)
	}
	return s, nil
}

func unmarshalPrekeySet(data []byte) (*PrekeySet, error) {
	r := wire.NewReader(data)
	v := r.Byte()
	if r.Err() == nil && v != 1 && v != prekeySetVersion {
		return nil, fmt.Errorf("%w: prekey set version %d", ErrUnknownVersion, v)
	}
	s := newPrekeySet()
	s.nextID = r.Uint32()
	n := r.Count(maxSigned, 4+32+64+32)
	for range n {
		k, err := readEC(r)
		if err != nil {
			return nil, err
		}
		s.signed = append(s.signed, k)
	}
	n = r.Count(maxSigned, 4+mlkem.EncapsulationKeySize768+64+64)
	for range n {
		k, err := readPQ(r)
		if err != nil {
			return nil, err
		}
		s.lastResort = append(s.lastResort, k)
	}
	n = r.Count(MaxOneTime, 4+32+64+32)
	for range n {
		k, err := readEC(r)
		if err != nil {
			return nil, err
		}
		s.oneTime[k.pub.ID] = k
	}
	n = r.Count(MaxOneTime, 4+mlkem.EncapsulationKeySize768+64+64)
	for range n {
		k, err := readPQ(r)
		if err != nil {
			return nil, err
		}
		s.oneTimePQ[k.pub.ID] = k
	}
	if v == 1 {
		// One ring for all signed prekeys: remember each key for every one.
		n = r.Count(4096, 32)
		for range n {
			var ek [32]byte
			r.FixedInto(ek[:])
			for _, k := range s.signed {
				s.remember(k.pub.ID, ek)
			}
		}
	} else {
		groups := r.Count(maxSigned, 8)
		for range groups {
			id := r.Uint32()
			n := r.Count(MaxSeenEphemeral, 32)
			if r.Err() == nil && s.seen[id] != nil {
				return nil, fmt.Errorf("signed prekey %d listed twice", id)
			}
			for range n {
				var ek [32]byte
				r.FixedInto(ek[:])
				s.remember(id, ek)
			}
		}
	}
	if err := r.Finish(); err != nil {
		return nil, err
	}
	if len(s.signed) == 0 || len(s.lastResort) == 0 {
		return nil, fmt.Errorf("no signed prekey")
	}
	return s, nil
}

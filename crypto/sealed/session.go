package sealed

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/internal/wire"
	"github.com/peergram/peergram/crypto/pqxdh"
	"github.com/peergram/peergram/crypto/ratchet"
)

// Domain-separation labels (listed in docs/crypto.md).
const (
	labelSeal      = "peergram/sealed/prekey/v1"
	labelRatchetAD = "peergram/sealed/v2"
	labelSessionID = "peergram/sealed/session-id/v1"
)

// Device is the local device: its keys and its certificate.
type Device struct {
	Key  *identity.DeviceKey
	Cert *identity.DeviceCert
}

// Session is one device's end of an end-to-end session with one peer
// device. Not safe for concurrent use.
type Session struct {
	ratchet     *ratchet.Session
	self        identity.DeviceID
	selfAcct    identity.AccountID
	peerAccount identity.AccountID
	peerDevice  identity.DeviceID
	peerIK      [32]byte
	sendID      SessionID
	recvID      SessionID
	ad          []byte // IK_A || IK_B from PQXDH
	// pending holds, for an initiator that has not yet heard back, the
	// sender certificate and PQXDH initial message to repeat in every
	// envelope.
	pendingCert []byte
	pendingInit []byte
	adSend      []byte      // ratchetAD(true), built once (not marshalled)
	adRecv      []byte      // ratchetAD(false), built once
	seen        []MessageID // recent IDs: a ring of MaxSeenIDs once full, oldest at seenHead
	seenHead    int
	seenIndex   map[MessageID]struct{}
}

// PeerAccount returns the authenticated peer account.
func (s *Session) PeerAccount() identity.AccountID { return s.peerAccount }

// PeerDevice returns the authenticated peer device.
func (s *Session) PeerDevice() identity.DeviceID { return s.peerDevice }

// PeerIdentityKey returns the peer device's X25519 identity key (IK) the
// session was agreed with. Before sealing, callers check that it is still
// the DH key of the peer's certificate in its account's current device
// list.
func (s *Session) PeerIdentityKey() [32]byte { return s.peerIK }

// ReceiveID is the session ID the peer's envelopes to this device carry.
func (s *Session) ReceiveID() SessionID { return s.recvID }

// Pending reports whether this side still sends prekey envelopes (it has
// not yet decrypted a message from the peer).
func (s *Session) Pending() bool { return s.pendingInit != nil }

func sessionIDs(sk []byte) (aToB, bToA SessionID, err error) {
	out, err := hkdf.Key(sha256.New, sk, nil, labelSessionID, 32)
	if err != nil {
		return aToB, bToA, err
	}
	copy(aToB[:], out[:16])
	copy(bToA[:], out[16:])
	return aToB, bToA, nil
}

// Initiate starts a session with a peer device from its prekey bundle. The
// caller has verified peerCert (identity.DeviceCert.Verify) and that it is
// listed in the peer account's current device list; Initiate verifies the
// bundle against it. encap may be nil (see pqxdh.Encapsulator).
func Initiate(rand io.Reader, self Device, peerCert *identity.DeviceCert, b *pqxdh.Bundle, encap pqxdh.Encapsulator) (*Session, error) {
	if err := b.Verify(peerCert); err != nil {
		return nil, fmt.Errorf("sealed: initiate: %w", err)
	}
	res, init, err := pqxdh.Initiate(rand, self.Key.DH(), b, encap)
	if err != nil {
		return nil, fmt.Errorf("sealed: initiate: %w", err)
	}
	rs, err := ratchet.NewInitiator(rand, res.SharedKey, res.SignedPrekey)
	if err != nil {
		return nil, fmt.Errorf("sealed: initiate: %w", err)
	}
	aToB, bToA, err := sessionIDs(res.SharedKey)
	if err != nil {
		return nil, fmt.Errorf("sealed: initiate: %w", err)
	}
	certBytes, err := self.Cert.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("sealed: initiate: %w", err)
	}
	initBytes, err := init.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("sealed: initiate: %w", err)
	}
	return &Session{
		ratchet:     rs,
		self:        self.Key.ID(),
		selfAcct:    self.Cert.Account,
		peerAccount: peerCert.Account,
		peerDevice:  peerCert.Device,
		peerIK:      peerCert.DH,
		sendID:      aToB,
		recvID:      bToA,
		ad:          res.AD,
		pendingCert: certBytes,
		pendingInit: initBytes,
		seenIndex:   map[MessageID]struct{}{},
	}, nil
}

// ratchetAD binds every message to both accounts, both devices, the
// direction's session ID and both identity keys (PQXDH §3.3 "AD =
// Encode(IK_A) || Encode(IK_B)", extended with the identities as the spec
// recommends in §4.8 "Identity binding"), so a message one peer wrote to
// another can never authenticate in any other pair's session.
func (s *Session) ratchetAD(sending bool) []byte {
	if sending && s.adSend != nil {
		return s.adSend
	}
	if !sending && s.adRecv != nil {
		return s.adRecv
	}
	fromAcct, fromDev, toAcct, toDev, id := s.selfAcct, s.self, s.peerAccount, s.peerDevice, s.sendID
	if !sending {
		fromAcct, fromDev, toAcct, toDev, id = s.peerAccount, s.peerDevice, s.selfAcct, s.self, s.recvID
	}
	ad := make([]byte, 0, len(labelRatchetAD)+4*32+16+len(s.ad))
	ad = append(ad, labelRatchetAD...)
	ad = append(ad, fromAcct[:]...)
	ad = append(ad, fromDev[:]...)
	ad = append(ad, toAcct[:]...)
	ad = append(ad, toDev[:]...)
	ad = append(ad, id[:]...)
	ad = append(ad, s.ad...)
	if sending {
		s.adSend = ad
	} else {
		s.adRecv = ad
	}
	return ad
}

// Seal encrypts m for the peer device and returns the encoded envelope.
// Sender and Device are set from the session.
func (s *Session) Seal(rand io.Reader, m Message) ([]byte, error) {
	if len(m.Body) > MaxBodySize {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(m.Body))
	}
	m.Sender, m.Device = s.selfAcct, s.self
	m.Recipient, m.RecipientDevice = s.peerAccount, s.peerDevice
	ct, err := s.ratchet.Encrypt(rand, m.marshal(), s.ratchetAD(true))
	if err != nil {
		return nil, fmt.Errorf("sealed: seal: %w", err)
	}
	env := &Envelope{Recipient: s.peerDevice}
	if s.pendingInit == nil {
		env.Kind, env.SessionID, env.Body = KindMessage, s.sendID, ct
		return env.MarshalBinary()
	}
	env.Kind = KindPrekey
	w := wire.NewWriter(len(s.pendingCert) + len(s.pendingInit) + 16 + len(ct) + 16)
	w.Var(s.pendingCert)
	w.Fixed(s.pendingInit)
	w.Fixed(s.sendID[:])
	w.Var(ct)
	eph, err := newX25519(rand)
	if err != nil {
		return nil, err
	}
	copy(env.SealKey[:], eph.PublicKey().Bytes())
	peerIK, err := ecdh.X25519().NewPublicKey(s.peerIK[:])
	if err != nil {
		return nil, fmt.Errorf("sealed: seal: %w", err)
	}
	aead, nonce, err := sealCipher(eph, peerIK, env.SealKey[:], s.peerIK[:])
	if err != nil {
		return nil, err
	}
	env.Body = aead.Seal(nil, nonce, w.Bytes(), env.header())
	return env.MarshalBinary()
}

func newX25519(rand io.Reader) (*ecdh.PrivateKey, error) {
	var seed [32]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("sealed: read random: %w", err)
	}
	return ecdh.X25519().NewPrivateKey(seed[:])
}

func sealCipher(priv *ecdh.PrivateKey, pub *ecdh.PublicKey, sealKey, recipientIK []byte) (cipher.AEAD, []byte, error) {
	shared, err := priv.ECDH(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: seal key: %w", ErrAuth, err)
	}
	salt := append(slices.Clone(sealKey), recipientIK...)
	okm, err := hkdf.Key(sha256.New, shared, salt, labelSeal, 32+12)
	if err != nil {
		return nil, nil, err
	}
	block, err := aes.NewCipher(okm[:32])
	if err != nil {
		return nil, nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, err
	}
	return aead, okm[32:], nil
}

// PrekeyHeader is the opened sealed layer of a prekey envelope.
type PrekeyHeader struct {
	SenderCert *identity.DeviceCert
	Init       *pqxdh.InitMessage
	SessionID  SessionID // the direction initiator → this device
	ratchetMsg []byte
	recipient  identity.DeviceID
}

// Unseal opens the sealed-sender layer of a prekey envelope addressed to
// self. The result names the sender, but nothing is authenticated beyond
// "someone who knows self's identity key encrypted this": the caller looks
// up an existing session by SessionID (Session.OpenPrekey) or accepts a new
// one (Accept), both of which authenticate.
func Unseal(self Device, env *Envelope) (*PrekeyHeader, error) {
	if env.Kind != KindPrekey {
		return nil, ErrWrongKind
	}
	if env.Recipient != self.Key.ID() {
		return nil, ErrWrongRecipient
	}
	eph, err := ecdh.X25519().NewPublicKey(env.SealKey[:])
	if err != nil {
		return nil, fmt.Errorf("%w: seal key: %w", ErrAuth, err)
	}
	aead, nonce, err := sealCipher(self.Key.DH(), eph, env.SealKey[:], self.Key.DH().PublicKey().Bytes())
	if err != nil {
		return nil, err
	}
	inner, err := aead.Open(nil, nonce, env.Body, env.header())
	if err != nil {
		return nil, fmt.Errorf("%w: sealed layer", ErrAuth)
	}
	r := wire.NewReader(inner)
	certBytes := r.Var(1024)
	initBytes := r.Fixed(pqxdh.InitSize)
	h := &PrekeyHeader{recipient: env.Recipient}
	r.FixedInto(h.SessionID[:])
	h.ratchetMsg = r.Var(MaxEnvelopeSize)
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("%w: sealed layer: %w", ErrMalformed, err)
	}
	if h.SenderCert, err = identity.ParseDeviceCert(certBytes); err != nil {
		return nil, fmt.Errorf("%w: sender certificate: %w", ErrMalformed, err)
	}
	if h.Init, err = pqxdh.ParseInitMessage(initBytes); err != nil {
		return nil, err
	}
	if err := h.SenderCert.Verify(); err != nil {
		return nil, fmt.Errorf("%w: sender certificate: %w", ErrSender, err)
	}
	if h.SenderCert.DH != h.Init.IdentityKey {
		return nil, fmt.Errorf("%w: certificate key differs from PQXDH identity key", ErrSender)
	}
	return h, nil
}

// Accept creates the responder's session from an unsealed prekey header and
// decrypts its message. On success the one-time prekeys used are consumed
// from prekeys: persist prekeys and the session together before
// acknowledging the envelope. On failure prekeys is unchanged. The caller
// checks, with the sender account's device list, that h.SenderCert's device
// is listed.
func Accept(rand io.Reader, self Device, prekeys *pqxdh.PrekeySet, h *PrekeyHeader, now int64) (*Session, Message, error) {
	s, m, err := Trial(rand, self, prekeys, h, now)
	if s != nil {
		prekeys.Consume(h.Init)
	}
	return s, m, err
}

// Trial is Accept that leaves prekeys as they are: it authenticates a
// prekey envelope (and decrypts its message) without consuming anything,
// so a caller can check an envelope before it takes locks or does network
// work on the sender's behalf, and Accept it for real afterwards. prekeys
// is only read.
func Trial(rand io.Reader, self Device, prekeys *pqxdh.PrekeySet, h *PrekeyHeader, now int64) (*Session, Message, error) {
	res, err := pqxdh.Respond(prekeys, self.Key.DH(), h.Init)
	if err != nil {
		return nil, Message{}, fmt.Errorf("sealed: accept: %w", err)
	}
	aToB, bToA, err := sessionIDs(res.SharedKey)
	if err != nil {
		return nil, Message{}, err
	}
	if aToB != h.SessionID {
		return nil, Message{}, fmt.Errorf("%w: session ID", ErrAuth)
	}
	rs, err := ratchet.NewResponder(res.SharedKey, res.SignedPrekeyPriv)
	if err != nil {
		return nil, Message{}, fmt.Errorf("sealed: accept: %w", err)
	}
	s := &Session{
		ratchet:     rs,
		self:        self.Key.ID(),
		selfAcct:    self.Cert.Account,
		peerAccount: h.SenderCert.Account,
		peerDevice:  h.SenderCert.Device,
		peerIK:      h.SenderCert.DH,
		sendID:      bToA,
		recvID:      aToB,
		ad:          res.AD,
		seenIndex:   map[MessageID]struct{}{},
	}
	m, err := s.open(rand, h.ratchetMsg, now)
	if err != nil && !IsPolicy(err) {
		return nil, Message{}, err
	}
	return s, m, err
}

// OpenPrekey decrypts the message of a prekey envelope for a session that
// already exists (the initiator repeats the header until it hears back).
func (s *Session) OpenPrekey(rand io.Reader, h *PrekeyHeader, now int64) (Message, error) {
	if h.SessionID != s.recvID || h.SenderCert.Device != s.peerDevice || h.recipient != s.self {
		return Message{}, fmt.Errorf("%w: prekey envelope for another session", ErrAuth)
	}
	return s.open(rand, h.ratchetMsg, now)
}

// Open decrypts a message envelope of this session.
func (s *Session) Open(rand io.Reader, env *Envelope, now int64) (Message, error) {
	if env.Kind != KindMessage {
		return Message{}, ErrWrongKind
	}
	if env.Recipient != s.self {
		return Message{}, ErrWrongRecipient
	}
	if env.SessionID != s.recvID {
		return Message{}, fmt.Errorf("%w: session ID", ErrAuth)
	}
	return s.open(rand, env.Body, now)
}

// IsPolicy reports an error of a message that authenticated but broke a
// policy (duplicate, timestamp, sender or recipient mismatch): the session
// advanced and must be stored. Only with ErrTimestamp is the returned
// Message valid.
func IsPolicy(err error) bool {
	return errors.Is(err, ErrDuplicate) || errors.Is(err, ErrTimestamp) || errors.Is(err, ErrSender) || errors.Is(err, ErrWrongRecipient)
}

func (s *Session) open(rand io.Reader, ct []byte, now int64) (Message, error) {
	pt, err := s.ratchet.Decrypt(rand, ct, s.ratchetAD(false))
	switch {
	case errors.Is(err, ratchet.ErrDuplicate):
		return Message{}, fmt.Errorf("%w: %w", ErrDuplicate, err)
	case err != nil:
		return Message{}, fmt.Errorf("%w: %w", ErrAuth, err)
	}
	// Authenticated: from here on the message is consumed.
	s.pendingCert, s.pendingInit = nil, nil
	m, err := parseMessage(pt)
	if err != nil {
		return Message{}, err
	}
	if m.Sender != s.peerAccount || m.Device != s.peerDevice {
		return Message{}, fmt.Errorf("%w: plaintext names %s/%s, session peer is %s/%s", ErrSender, m.Sender, m.Device, s.peerAccount, s.peerDevice)
	}
	if m.Recipient != s.selfAcct || m.RecipientDevice != s.self {
		return Message{}, fmt.Errorf("%w: plaintext addressed to %s/%s", ErrWrongRecipient, m.Recipient, m.RecipientDevice)
	}
	if _, dup := s.seenIndex[m.ID]; dup {
		return Message{}, fmt.Errorf("%w: message ID seen before", ErrDuplicate)
	}
	s.rememberID(m.ID)
	if m.Timestamp > now+MaxFutureSkew || m.Timestamp < now-MaxAge {
		// Authentic and new, but the sender's clock (or ours) is off, or
		// the message was held back: it is returned with the error so the
		// caller can keep it, flagged, rather than lose it.
		return m, fmt.Errorf("%w: %d (now %d)", ErrTimestamp, m.Timestamp, now)
	}
	return m, nil
}

// rememberID adds id to the recent IDs, forgetting the oldest once
// MaxSeenIDs are held (a ring: no copying per message).
func (s *Session) rememberID(id MessageID) {
	s.seenIndex[id] = struct{}{}
	if len(s.seen) < MaxSeenIDs {
		s.seen = append(s.seen, id)
		return
	}
	delete(s.seenIndex, s.seen[s.seenHead])
	s.seen[s.seenHead] = id
	s.seenHead = (s.seenHead + 1) % len(s.seen)
}

// seenInOrder returns the recent IDs, oldest first.
func (s *Session) seenInOrder() []MessageID {
	return append(slices.Clone(s.seen[s.seenHead:]), s.seen[:s.seenHead]...)
}

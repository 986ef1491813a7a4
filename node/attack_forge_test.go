package node

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/pqxdh"
	"github.com/peergram/peergram/crypto/sealed"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// forgePrekeyEnvelope builds a prekey envelope to the device (recipient,
// recipientIK) that carries senderCert — anyone's public certificate, as
// published in a directory — with a PQXDH initial message naming that
// certificate's key and a garbage ratchet message. It needs no secret key:
// the sealed-sender layer only proves the sender knows the recipient's
// public key. The layout is sealed.Seal's (docs/crypto.md).
func forgePrekeyEnvelope(t *testing.T, recipient identity.DeviceID, recipientIK [32]byte, senderCert *identity.DeviceCert) []byte {
	t.Helper()
	certRaw, err := senderCert.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	init := &pqxdh.InitMessage{IdentityKey: senderCert.DH, SignedPrekey: 1, PQKind: pqxdh.PQLastResort, PQPrekey: 2, Ciphertext: make([]byte, mlkem.CiphertextSize768)}
	rand.Read(init.EphemeralKey[:])
	init.EphemeralKey[31] &= 0x7f // a canonical X25519 public key
	initRaw, err := init.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var inner []byte
	inner = binary.BigEndian.AppendUint32(inner, uint32(len(certRaw)))
	inner = append(inner, certRaw...)
	inner = append(inner, initRaw...)
	var sid [16]byte
	rand.Read(sid[:])
	inner = append(inner, sid[:]...)
	junk := make([]byte, 300)
	rand.Read(junk)
	inner = binary.BigEndian.AppendUint32(inner, uint32(len(junk)))
	inner = append(inner, junk...)

	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	peerIK, err := ecdh.X25519().NewPublicKey(recipientIK[:])
	if err != nil {
		t.Fatal(err)
	}
	shared, err := eph.ECDH(peerIK)
	if err != nil {
		t.Fatal(err)
	}
	env := &sealed.Envelope{Kind: sealed.KindPrekey, Recipient: recipient}
	copy(env.SealKey[:], eph.PublicKey().Bytes())
	salt := append(append([]byte(nil), env.SealKey[:]...), recipientIK[:]...)
	okm, err := hkdf.Key(sha256.New, shared, salt, "peergram/sealed/prekey/v1", 44)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(okm[:32])
	aead, _ := cipher.NewGCM(block)
	header := append([]byte{2, byte(sealed.KindPrekey)}, recipient[:]...)
	header = append(header, env.SealKey[:]...)
	env.Body = aead.Seal(nil, okm[32:], inner, header)
	raw, err := env.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestAttackForgedPrekeySpoofsRequest: anyone can make Bob list Alice as
// a message request — "Alice wants to talk to you", under Alice's own
// signed display name — although Alice sent nothing. The forger holds no
// key of Alice's: a prekey envelope carrying Alice's public certificate is
// enough, because receive runs checkListed (and so refreshContact, which
// creates a request record for an account never seen) on the certificate
// of the unauthenticated sealed layer, before sealed.Accept authenticates
// anything. The envelope is then rejected, but the record stays.
func TestAttackForgedPrekeySpoofsRequest(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	bobHome, _ := initHome(t, "bob")
	bob := startNode(t, bobHome, relay.addr)
	alice := newFakeDevice(t, relay, nil, "Alice (your bank)")
	alice.publish(t, nil, alice.cert)
	mallory := newFakeDevice(t, relay, nil, "mallory") // only its libp2p host is used

	env := forgePrekeyEnvelope(t, bob.keys.device.ID(), bob.keys.cert.DH, alice.cert)
	if _, err := sealed.Unseal(bob.self, mustParseEnvelope(t, env)); err != nil {
		t.Fatalf("forged envelope does not unseal: %v", err)
	}
	if got := sendRaw(t, mallory, bob, env); got != int(directRejected) {
		t.Logf("forged envelope: answer %d", got)
	}
	reqs, err := bob.Requests(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 0 {
		t.Errorf("a forged, rejected envelope made Bob list a message request: %+v", reqs)
	}
	var known bool
	if err := bob.db.View(func(tx *storage.Txn) error {
		_, err := bob.st.getContact(tx, alice.acct.ID())
		known = err == nil
		if err == chat.ErrUnknownContact {
			return nil
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if known {
		t.Errorf("Bob stored a record of %s, who never wrote to him", alice.acct.ID())
	}
}

func mustParseEnvelope(t *testing.T, raw []byte) *sealed.Envelope {
	t.Helper()
	e, err := sealed.ParseEnvelope(raw)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestAttackForgedPrekeyTakesPrekeyLock: a forged prekey envelope (no key
// of anyone's needed, see forgePrekeyEnvelope) reaches the node-wide
// prekey lock and a full clone of the prekey set before anything is
// authenticated. With the replay memory full (4 signed prekeys × 20,000
// ephemeral keys) that clone is 2.6 MB and ~40 ms of CPU; so a stream of
// forged envelopes serialises every session setup and prekey refill of the
// node behind it. Here the lock is held (as a long refill would), and the
// forged envelope cannot even be rejected until it is released.
func TestAttackForgedPrekeyTakesPrekeyLock(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	bobHome, _ := initHome(t, "bob")
	bob := startNode(t, bobHome, relay.addr)
	alice := newFakeDevice(t, relay, nil, "alice")
	alice.publish(t, nil, alice.cert)
	mallory := newFakeDevice(t, relay, nil, "mallory")
	// Bob knows Alice's list already: no directory round trip below.
	if got := alice.send(t, bob, payload{Kind: "text", Text: "hi"}, newMessageID(t)); got != int(directOK) {
		t.Fatalf("answer %d", got)
	}
	env := forgePrekeyEnvelope(t, bob.keys.device.ID(), bob.keys.cert.DH, alice.cert)
	bob.pkMu.Lock()
	answered := make(chan int, 1)
	go func() { answered <- sendRaw(t, mallory, bob, env) }()
	select {
	case got := <-answered:
		bob.pkMu.Unlock()
		t.Logf("forged envelope answered %d without the prekey lock", got)
	case <-time.After(2 * time.Second):
		bob.pkMu.Unlock()
		<-answered
		t.Fatal("an unauthenticated prekey envelope waited for the node-wide prekey lock (it takes it, and clones the prekey set, before authenticating)")
	}
}

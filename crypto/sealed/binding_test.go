package sealed

import (
	"errors"
	"testing"

	"github.com/peergram/peergram/crypto/identity"
)

// TestCertKeyMustBeInitiatorKey is an impersonation attack: Mallory runs
// PQXDH with her own identity key but puts Alice's genuine certificate in
// the sealed layer. Without the check that the certificate's DH key is
// IK_A, Bob accepted a session "with Alice" whose keys are Mallory's.
func TestCertKeyMustBeInitiatorKey(t *testing.T) {
	r := seeded(31)
	alice, bob, mallory := newPeer(t, r, "alice"), newPeer(t, r, "bob"), newPeer(t, r, "mallory")
	forger := Device{Key: mallory.self.Key, Cert: alice.self.Cert}
	s, err := Initiate(r, forger, bob.self.Cert, bob.bundle.Take(), nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.Seal(r, Message{ID: MessageID{1}, Timestamp: now, Body: []byte("I am Alice")})
	if err != nil {
		t.Fatal(err)
	}
	m, err := bob.receive(r, raw)
	if !errors.Is(err, ErrSender) {
		t.Fatalf("forged prekey envelope: got %q, %v; want ErrSender", m.Body, err)
	}
	if len(bob.sessions) != 0 {
		t.Fatal("a session was created from a forged prekey envelope")
	}
}

// sealRaw encrypts a hand-made plaintext in s's sending chain with the
// correct associated data: what a peer that controls its own session
// (and so its plaintext) can send.
func sealRaw(t *testing.T, s *Session, m Message) []byte {
	t.Helper()
	ct, err := s.ratchet.Encrypt(seeded(99), m.marshal(), s.ratchetAD(true))
	if err != nil {
		t.Fatal(err)
	}
	env := &Envelope{Kind: KindMessage, Recipient: s.peerDevice, SessionID: s.sendID, Body: ct}
	raw, err := env.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestPlaintextIdentities: a session peer that writes another sender or
// another recipient into its authenticated plaintext is refused. Each
// check is tested on its own, so removing either fails a test.
func TestPlaintextIdentities(t *testing.T) {
	r := seeded(32)
	alice, bob, carol := newPeer(t, r, "alice"), newPeer(t, r, "bob"), newPeer(t, r, "carol")
	s := connect(t, r, alice, bob, nil)
	if _, err := bob.receive(r, alice.send(t, r, bob, 1, "hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.receive(r, bob.send(t, r, alice, 2, "hi")); err != nil {
		t.Fatal(err)
	}
	good := Message{ID: MessageID{3}, Sender: alice.acct.ID(), Device: alice.self.Key.ID(),
		Recipient: bob.acct.ID(), RecipientDevice: bob.self.Key.ID(), Timestamp: now, Body: []byte("x")}
	tests := []struct {
		name   string
		mutate func(m *Message)
		want   error
	}{
		{"claims Carol as sender", func(m *Message) { m.Sender = carol.acct.ID() }, ErrSender},
		{"claims Carol's device as sender", func(m *Message) { m.Device = carol.self.Key.ID() }, ErrSender},
		{"addressed to Carol's account", func(m *Message) { m.Recipient = carol.acct.ID() }, ErrWrongRecipient},
		{"addressed to Carol's device", func(m *Message) { m.RecipientDevice = carol.self.Key.ID() }, ErrWrongRecipient},
		{"genuine", func(*Message) {}, nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := good
			m.ID[1] = byte(i)
			tt.mutate(&m)
			got, err := bob.receive(r, sealRaw(t, s, m))
			if tt.want == nil {
				if err != nil || string(got.Body) != "x" {
					t.Fatalf("genuine message: %q, %v", got.Body, err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %q, %v; want %v", got.Body, err, tt.want)
			}
		})
	}
}

// TestUnknownKeyShare: Alice's session is set up towards a certificate
// that names Mallory's account but Bob's device and keys (what device-ID
// squatting produced before certificates carried a proof of possession).
// What Alice writes "to Mallory" reaches Bob's device; it must never be
// accepted by Bob as a message from Alice to Bob.
func TestUnknownKeyShare(t *testing.T) {
	r := seeded(33)
	alice, bob, mallory := newPeer(t, r, "alice"), newPeer(t, r, "bob"), newPeer(t, r, "mallory")
	squat := *bob.self.Cert
	squat.Account = mallory.acct.ID()
	s, err := Initiate(r, alice.self, &squat, bob.bundle.Take(), nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.Seal(r, Message{ID: MessageID{7}, Timestamp: now, Body: []byte("for Mallory's eyes")})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := bob.receive(r, raw); err == nil {
		t.Fatalf("Bob accepted a message Alice wrote to Mallory: %q", m.Body)
	} else if !errors.Is(err, ErrAuth) {
		t.Fatalf("got %v, want ErrAuth (the AD names Mallory's account)", err)
	}
}

// TestADBindsAccounts: the associated data of each direction names both
// accounts and devices, so a session whose peer account differs computes
// a different AD even with identical keys.
func TestADBindsAccounts(t *testing.T) {
	r := seeded(34)
	alice, bob := newPeer(t, r, "alice"), newPeer(t, r, "bob")
	s := connect(t, r, alice, bob, nil)
	base := s.ratchetAD(true)
	for name, mutate := range map[string]func(*Session){
		"peer account": func(c *Session) { c.peerAccount[0] ^= 1 },
		"peer device":  func(c *Session) { c.peerDevice[0] ^= 1 },
		"own account":  func(c *Session) { c.selfAcct[0] ^= 1 },
		"own device":   func(c *Session) { c.self[0] ^= 1 },
	} {
		c := *s
		c.adSend, c.adRecv = nil, nil // built once per session; rebuild from the mutated fields
		mutate(&c)
		if string(c.ratchetAD(true)) == string(base) || string(c.ratchetAD(false)) == string(s.ratchetAD(false)) {
			t.Errorf("AD does not depend on the %s", name)
		}
	}
	var zero identity.AccountID
	if s.peerAccount == zero || s.selfAcct == zero {
		t.Fatal("session accounts not set")
	}
}

// TestSeenRing: a session remembers the last MaxSeenIDs message IDs, in
// order, also across marshalling.
func TestSeenRing(t *testing.T) {
	r := seeded(35)
	alice, bob := newPeer(t, r, "alice"), newPeer(t, r, "bob")
	s := connect(t, r, alice, bob, nil)
	id := func(i int) MessageID { return MessageID{byte(i), byte(i >> 8), 0x5e} }
	const n = MaxSeenIDs + 500
	for i := range n {
		s.rememberID(id(i))
	}
	got := s.seenInOrder()
	if len(got) != MaxSeenIDs || len(s.seenIndex) != MaxSeenIDs {
		t.Fatalf("%d IDs held (%d indexed), want %d", len(got), len(s.seenIndex), MaxSeenIDs)
	}
	for i, x := range got {
		if x != id(n-MaxSeenIDs+i) {
			t.Fatalf("position %d holds the wrong ID", i)
		}
	}
	raw, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalSession(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, old := back.seenIndex[id(n-MaxSeenIDs-1)]; old {
		t.Fatal("a forgotten ID came back")
	}
	if _, kept := back.seenIndex[id(n-1)]; !kept || len(back.seenInOrder()) != MaxSeenIDs || back.seenInOrder()[0] != id(n-MaxSeenIDs) {
		t.Fatal("the IDs were not kept in order across marshalling")
	}

	// A session stored when the ring held legacySeenIDs decodes to its
	// newest MaxSeenIDs.
	s.seen, s.seenHead, s.seenIndex = nil, 0, map[MessageID]struct{}{}
	for i := range legacySeenIDs {
		s.seen = append(s.seen, id(i))
	}
	if raw, err = s.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	if back, err = UnmarshalSession(raw); err != nil {
		t.Fatalf("a legacy ring: %v", err)
	}
	got = back.seenInOrder()
	if len(got) != MaxSeenIDs || len(back.seenIndex) != MaxSeenIDs || got[0] != id(legacySeenIDs-MaxSeenIDs) || got[len(got)-1] != id(legacySeenIDs-1) {
		t.Fatalf("a legacy ring decoded to %d IDs (%d indexed), not its newest %d", len(got), len(back.seenIndex), MaxSeenIDs)
	}
	back.rememberID(id(legacySeenIDs))
	if _, old := back.seenIndex[id(legacySeenIDs-MaxSeenIDs)]; old || len(back.seenIndex) != MaxSeenIDs {
		t.Fatal("the decoded ring did not drop its oldest ID")
	}
}

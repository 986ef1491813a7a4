package sealed

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/ratchet"
)

var update = flag.Bool("update", false, "rewrite golden files")

type sent struct {
	raw  []byte
	id   uint64
	body string
}

// TestRandomInterleaving: 1,000 messages each way, random interleaving,
// out-of-order delivery within the ratchet's bounds and 5% losses; every
// delivered message decrypts once, in whatever order it arrives; then every
// past envelope, replayed 10,000 times, is rejected, also after a restart.
func TestRandomInterleaving(t *testing.T) {
	r := seeded(1)
	rng := seeded(2)
	alice, bob := newPeer(t, r, "alice"), newPeer(t, r, "bob")
	connect(t, r, alice, bob, nil)

	queues := map[*peer][]sent{} // in flight, keyed by recipient
	var delivered []struct {
		to  *peer
		raw []byte
	}
	got := map[uint64]bool{}
	nextID := uint64(1)
	sentA, sentB := 0, 0
	// Bob can only send once he has heard from Alice.
	bobReady := false
	var trace []string
	deliver := func(to *peer, i int) {
		q := queues[to]
		m := q[i]
		queues[to] = append(q[:i:i], q[i+1:]...)
		if m.id%20 == 7 { // lost in transit
			trace = append(trace, fmt.Sprintf("drop %d to %s %s", m.id, to.name, describe(m.raw)))
			return
		}
		msg, err := to.receive(r, m.raw)
		trace = append(trace, fmt.Sprintf("deliver %d to %s %s", m.id, to.name, describe(m.raw)))
		if err != nil {
			t.Fatalf("%s: message %d: %v\n%s", to.name, m.id, err, strings.Join(trace[max(0, len(trace)-60):], "\n"))
		}
		if string(msg.Body) != m.body || binary.BigEndian.Uint64(msg.ID[:8]) != m.id {
			t.Fatalf("%s: message %d: got %q", to.name, m.id, msg.Body)
		}
		if got[m.id] {
			t.Fatalf("message %d delivered twice", m.id)
		}
		got[m.id] = true
		if to == bob {
			bobReady = true
		}
		delivered = append(delivered, struct {
			to  *peer
			raw []byte
		}{to, m.raw})
	}
	for sentA < 1000 || sentB < 1000 || len(queues[alice])+len(queues[bob]) > 0 {
		switch op := rng.Uint64() % 4; {
		case op == 0 && sentA < 1000:
			b := body("alice", sentA)
			queues[bob] = append(queues[bob], sent{alice.send(t, r, bob, nextID, b), nextID, b})
			nextID++
			sentA++
		case op == 1 && sentB < 1000 && bobReady:
			b := body("bob", sentB)
			queues[alice] = append(queues[alice], sent{bob.send(t, r, alice, nextID, b), nextID, b})
			nextID++
			sentB++
		default:
			to := bob
			if rng.Uint64()%2 == 0 && len(queues[alice]) > 0 || len(queues[bob]) == 0 {
				to = alice
			}
			if q := queues[to]; len(q) > 0 && (rng.Uint64()%3 == 0 || sentA+sentB >= 2000 || len(q) > 50) {
				// Reorder within a window of 8 so that no message outlives
				// the ratchet's bound on old receiving chains.
				deliver(to, int(rng.Uint64()%uint64(min(len(q), 8))))
			}
		}
	}
	if len(got) < 1800 {
		t.Fatalf("only %d messages delivered", len(got))
	}

	replay := func(label string) {
		for i := range 10_000 {
			d := delivered[rng.Uint64()%uint64(len(delivered))]
			// A replay in a chain still held is recognised as a duplicate;
			// one from a chain long gone fails authentication. Both reject.
			if _, err := d.to.receive(r, d.raw); !errors.Is(err, ErrDuplicate) && !errors.Is(err, ErrAuth) {
				t.Fatalf("%s replay %d: %v, want rejection", label, i, err)
			}
		}
	}
	replay("live")
	alice.restore(t)
	bob.restore(t)
	replay("after restart")

	// The sessions still work after all that.
	raw := alice.send(t, r, bob, 99999, "still here")
	if m, err := bob.receive(r, raw); err != nil || string(m.Body) != "still here" {
		t.Fatalf("after replays: %v", err)
	}
}

// TestForwardSecrecy: a copy of Bob's state taken after message 1,000
// decrypts none of messages 1..999. The copy forgets the session's
// message-ID set first, so what stops it is missing keys, not the
// duplicate check; and a copy taken before a message does decrypt it, so
// the test can tell the two apart.
func TestForwardSecrecy(t *testing.T) {
	r := seeded(3)
	alice, bob := newPeer(t, r, "alice"), newPeer(t, r, "bob")
	connect(t, r, alice, bob, nil)
	var raws [][]byte
	var before map[SessionID][]byte // Bob's state just before message 500
	for i := 1; i <= 1000; i++ {
		raw := alice.send(t, r, bob, uint64(i), body("alice", i))
		if i == 500 {
			before = bob.snapshot(t)
		}
		if _, err := bob.receive(r, raw); err != nil {
			t.Fatal(err)
		}
		raws = append(raws, raw)
		if i%100 == 0 { // Bob answers now and then: DH ratchet steps too
			if _, err := alice.receive(r, bob.send(t, r, alice, uint64(100000+i), "ack")); err != nil {
				t.Fatal(err)
			}
		}
	}
	forgetIDs := func(p *peer) {
		for _, s := range p.sessions {
			s.seen, s.seenHead, s.seenIndex = nil, 0, map[MessageID]struct{}{}
		}
	}
	// Control: the earlier copy, without its ID set, reads message 500.
	early := &peer{name: "early", self: bob.self, sessions: map[SessionID]*Session{}, out: map[identity.DeviceID]*Session{}}
	early.restoreFrom(t, before)
	forgetIDs(early)
	if m, err := early.receive(r, raws[499]); err != nil || string(m.Body) != body("alice", 500) {
		t.Fatalf("control: a state copy taken before message 500 cannot read it: %q, %v", m.Body, err)
	}
	bob.restore(t) // the attacker's copy: Bob's state, marshalled
	forgetIDs(bob)
	for i, raw := range raws[:999] {
		m, err := bob.receive(r, raw)
		if err == nil {
			t.Fatalf("message %d decrypted from a later state copy: %q", i+1, m.Body)
		}
		if errors.Is(err, errUnknownSession) {
			t.Fatalf("message %d: %v (the test must reach the keys)", i+1, err)
		}
	}
}

// TestPostCompromise: a copy of Alice's state reads what Bob sends to
// Alice until one full DH-ratchet round trip, and nothing after it.
func TestPostCompromise(t *testing.T) {
	r := seeded(4)
	alice, bob := newPeer(t, r, "alice"), newPeer(t, r, "bob")
	connect(t, r, alice, bob, nil)
	mustRecv := func(to *peer, raw []byte) {
		t.Helper()
		if _, err := to.receive(r, raw); err != nil {
			t.Fatal(err)
		}
	}
	mustRecv(bob, alice.send(t, r, bob, 1, "hello"))
	mustRecv(alice, bob.send(t, r, alice, 2, "hi"))

	eve := &peer{name: "eve", self: alice.self, sessions: map[SessionID]*Session{}, out: map[identity.DeviceID]*Session{}}
	eve.restoreFrom(t, alice.snapshot(t))

	// Control: before Alice heals, Eve reads Bob's next message to Alice.
	raw := bob.send(t, r, alice, 3, "before healing")
	mustRecv(alice, raw)
	if m, err := eve.receive(r, raw); err != nil || string(m.Body) != "before healing" {
		t.Fatalf("control: the stolen state cannot read the current chain: %q, %v", m.Body, err)
	}
	// One full round trip: Alice → Bob, Bob → Alice (new ratchet keys both ways).
	mustRecv(bob, alice.send(t, r, bob, 4, "a"))
	mustRecv(alice, bob.send(t, r, alice, 5, "b"))
	// Everything Bob sends Alice from here on is out of Eve's reach.
	for i := range 20 {
		if i%3 == 0 { // Alice answers now and then: more ratchet steps
			mustRecv(bob, alice.send(t, r, bob, uint64(100+i), "from alice"))
		}
		raw := bob.send(t, r, alice, uint64(10+i), "secret from bob")
		mustRecv(alice, raw)
		m, err := eve.receive(r, raw)
		if err == nil {
			t.Fatalf("message %d readable with a stolen state: %q", i, m.Body)
		}
		if !errors.Is(err, ErrAuth) {
			t.Fatalf("message %d: %v, want ErrAuth (the test must reach the keys)", i, err)
		}
	}
}

// TestTimestampKeepsMessage: a message outside the timestamp window is
// returned with ErrTimestamp, so the caller can keep it (flagged) instead
// of losing it; a replay of it is still a duplicate.
func TestTimestampKeepsMessage(t *testing.T) {
	r := seeded(8)
	alice, bob := newPeer(t, r, "alice"), newPeer(t, r, "bob")
	s := connect(t, r, alice, bob, nil)
	raw, err := s.Seal(r, Message{ID: MessageID{1}, Timestamp: now + MaxFutureSkew + 60_000, Body: []byte("clock ahead")})
	if err != nil {
		t.Fatal(err)
	}
	m, err := bob.receive(r, raw)
	if !errors.Is(err, ErrTimestamp) || string(m.Body) != "clock ahead" || m.Sender != alice.acct.ID() {
		t.Fatalf("got %q from %s, %v; want the message with ErrTimestamp", m.Body, m.Sender, err)
	}
	if _, err := bob.receive(r, raw); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("replay: %v, want ErrDuplicate", err)
	}
}

// TestPadding: plaintexts are padded to Padmé buckets, at least minPadded,
// so envelope sizes reveal little of the body size.
func TestPadding(t *testing.T) {
	r := seeded(9)
	alice, bob := newPeer(t, r, "alice"), newPeer(t, r, "bob")
	connect(t, r, alice, bob, nil)
	mustRecvOK := func(raw []byte) {
		t.Helper()
		if _, err := bob.receive(r, raw); err != nil {
			t.Fatal(err)
		}
	}
	mustRecvOK(alice.send(t, r, bob, 1, "x"))
	if _, err := alice.receive(r, bob.send(t, r, alice, 2, "y")); err != nil {
		t.Fatal(err)
	}
	sizes := map[int]bool{}
	for i, n := range []int{0, 1, 17, 60, 90} {
		raw := alice.send(t, r, bob, uint64(10+i), strings.Repeat("a", n))
		sizes[len(raw)] = true
		mustRecvOK(raw)
	}
	if len(sizes) != 1 {
		t.Fatalf("short bodies give envelopes of %d different sizes: %v", len(sizes), sizes)
	}
	for _, tt := range []struct{ in, want int }{
		{0, 256}, {99, 256}, {100, 272}, {1000, 1216}, {5000, 5376}, {MaxBodySize, 200704},
	} {
		got := PaddedSize(tt.in)
		if got != tt.want {
			t.Errorf("PaddedSize(%d) = %d, want %d", tt.in, got, tt.want)
		}
		if over := float64(got) / float64(tt.in+plaintextHeader); over > 1.12 && tt.in+plaintextHeader > minPadded {
			t.Errorf("PaddedSize(%d) overhead %.3f > 12 %%", tt.in, over)
		}
	}
	big := alice.send(t, r, bob, 99, strings.Repeat("b", MaxBodySize))
	if len(big) > MaxEnvelopeSize {
		t.Fatalf("largest envelope %d > MaxEnvelopeSize %d", len(big), MaxEnvelopeSize)
	}
	mustRecvOK(big)
}

func flipEveryBit(t *testing.T, raw []byte, check func(i int, mutated []byte)) {
	for i := range len(raw) * 8 {
		mutated := bytes.Clone(raw)
		mutated[i/8] ^= 1 << (i % 8)
		check(i, mutated)
	}
}

// TestTamper: a flipped bit anywhere in an envelope (message or prekey
// kind) fails with an error and leaves the session state unchanged; the
// genuine envelope still decrypts afterwards.
func TestTamper(t *testing.T) {
	for _, kind := range []Kind{KindPrekey, KindMessage} {
		t.Run(map[Kind]string{KindPrekey: "prekey", KindMessage: "message"}[kind], func(t *testing.T) {
			r := seeded(5)
			alice, bob := newPeer(t, r, "alice"), newPeer(t, r, "bob")
			connect(t, r, alice, bob, nil)
			if kind == KindMessage {
				if _, err := bob.receive(r, alice.send(t, r, bob, 1, "first")); err != nil {
					t.Fatal(err)
				}
				if _, err := alice.receive(r, bob.send(t, r, alice, 2, "reply")); err != nil {
					t.Fatal(err)
				}
			}
			raw := alice.send(t, r, bob, 3, "genuine")
			env, err := ParseEnvelope(raw)
			if err != nil || env.Kind != kind {
				t.Fatalf("kind %v, err %v", env.Kind, err)
			}
			before := bob.snapshot(t)
			prekeysBefore, _ := bob.prekeys.MarshalBinary()
			flipEveryBit(t, raw, func(i int, mutated []byte) {
				m, err := bob.receive(r, mutated)
				if err == nil {
					t.Fatalf("bit %d: tampered envelope accepted: %q", i, m.Body)
				}
				if i%97 == 0 { // comparing every time is slow; the rest is covered by the final check
					after := bob.snapshot(t)
					if len(after) != len(before) {
						t.Fatalf("bit %d: sessions changed", i)
					}
					for id, b := range before {
						if !bytes.Equal(after[id], b) {
							t.Fatalf("bit %d: session state changed", i)
						}
					}
				}
			})
			prekeysAfter, _ := bob.prekeys.MarshalBinary()
			if !bytes.Equal(prekeysBefore, prekeysAfter) {
				t.Fatal("tampered envelopes consumed prekeys")
			}
			m, err := bob.receive(r, raw)
			if err != nil || string(m.Body) != "genuine" {
				t.Fatalf("genuine after tampering: %q, %v", m.Body, err)
			}
		})
	}
}

func TestPolicy(t *testing.T) {
	r := seeded(6)
	alice, bob := newPeer(t, r, "alice"), newPeer(t, r, "bob")
	s := connect(t, r, alice, bob, nil)
	seal := func(id byte, ts int64, body []byte) []byte {
		raw, err := s.Seal(r, Message{ID: MessageID{id}, Timestamp: ts, Body: body})
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	if _, err := bob.receive(r, seal(1, now, nil)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		raw  []byte
		want error
	}{
		{"same message ID re-encrypted", seal(1, now, []byte("again")), ErrDuplicate},
		{"from the future", seal(2, now+MaxFutureSkew+1, nil), ErrTimestamp},
		{"too old", seal(3, now-MaxAge-1, nil), ErrTimestamp},
		{"just in bounds", seal(4, now+MaxFutureSkew, nil), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := bob.receive(r, tt.raw)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := s.Seal(r, Message{Body: make([]byte, MaxBodySize+1)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized body: %v", err)
	}
	// An envelope for Carol's device is refused by Bob without touching state.
	carol := newPeer(t, r, "carol")
	connect(t, r, alice, carol, nil)
	if _, err := bob.receive(r, alice.send(t, r, carol, 9, "for carol")); !errors.Is(err, ErrWrongRecipient) {
		t.Fatalf("envelope for another device: %v", err)
	}
}

// TestRelaySeesNoSender: the sender's account, device, identity key, the
// message ID and the body appear nowhere in the envelope bytes.
func TestRelaySeesNoSender(t *testing.T) {
	r := seeded(7)
	alice, bob := newPeer(t, r, "alice"), newPeer(t, r, "bob")
	connect(t, r, alice, bob, nil)
	marker := "MARKER-4242-secret"
	var id MessageID
	copy(id[:], "message-id-xyz!!")
	for i := range 3 {
		raw, err := alice.out[bob.self.Key.ID()].Seal(r, Message{ID: id, Timestamp: now, Body: []byte(marker)})
		if err != nil {
			t.Fatal(err)
		}
		id[0]++
		acct := alice.acct.ID()
		dev := alice.self.Key.ID()
		for name, needle := range map[string][]byte{
			"account": acct[:], "device": dev[:], "identity key": alice.self.Key.DH().PublicKey().Bytes(),
			"body": []byte(marker), "message ID": id[1:],
		} {
			if bytes.Contains(raw, needle) {
				t.Fatalf("envelope %d reveals the sender's %s", i, name)
			}
		}
		if i == 0 {
			if _, err := bob.receive(r, raw); err != nil {
				t.Fatal(err)
			}
			if _, err := alice.receive(r, bob.send(t, r, alice, 50, "ok")); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestGoldenTranscript: with seeded randomness the whole exchange, from
// keys to envelopes, is byte for byte what testdata holds.
func TestGoldenTranscript(t *testing.T) {
	r := seeded(8)
	alice, bob := newPeer(t, r, "alice"), newPeer(t, r, "bob")
	connect(t, r, alice, bob, seededEncap(r))
	var lines []string
	add := func(label string, raw []byte) { lines = append(lines, label+" "+hex.EncodeToString(raw)) }
	cert, _ := bob.self.Cert.MarshalBinary()
	add("bob-cert", cert)
	bundle, _ := bob.bundle.MarshalBinary()
	add("bob-bundle", bundle)
	script := []struct {
		from, to *peer
		text     string
	}{
		{alice, bob, "hello bob"}, {alice, bob, "are you there?"}, {bob, alice, "hi alice"},
		{bob, alice, "yes"}, {alice, bob, "great"}, {bob, alice, "bye"},
	}
	for i, s := range script {
		raw := s.from.send(t, r, s.to, uint64(i+1), s.text)
		add(s.from.name+"->"+s.to.name, raw)
		m, err := s.to.receive(r, raw)
		if err != nil || string(m.Body) != s.text {
			t.Fatalf("step %d: %q %v", i, m.Body, err)
		}
	}
	got := strings.Join(lines, "\n") + "\n"
	path := filepath.Join("testdata", "golden_transcript.txt")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Fatal("transcript differs from testdata/golden_transcript.txt; if the wire format changed on purpose, run with -update")
	}
}

func describe(raw []byte) string {
	env, err := ParseEnvelope(raw)
	if err != nil || env.Kind != KindMessage {
		return "prekey"
	}
	h, _, _ := ratchet.ParseMessage(env.Body)
	return fmt.Sprintf("dh=%x pn=%d n=%d", h.DH[:2], h.PN, h.N)
}

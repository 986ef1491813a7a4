package sealed

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func FuzzParseEnvelope(f *testing.F) {
	r := seeded(20)
	alice, bob := newPeer(f, r, "alice"), newPeer(f, r, "bob")
	connect(f, r, alice, bob, nil)
	first := alice.send(f, r, bob, 1, "x")
	f.Add(first)
	if _, err := bob.receive(r, first); err != nil {
		f.Fatal(err)
	}
	f.Add(bob.send(f, r, alice, 2, "y"))
	f.Add([]byte{1, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := ParseEnvelope(data)
		if err != nil {
			return
		}
		out, err := env.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, data) {
			t.Fatal("envelope does not re-encode to the same bytes")
		}
	})
}

func FuzzUnmarshalSession(f *testing.F) {
	r := seeded(21)
	alice, bob := newPeer(f, r, "alice"), newPeer(f, r, "bob")
	s := connect(f, r, alice, bob, nil)
	raw, _ := s.MarshalBinary()
	f.Add(raw)
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := UnmarshalSession(data)
		if err != nil {
			return
		}
		if _, err := s.MarshalBinary(); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzReceive feeds arbitrary bytes to a device with live sessions: never a
// panic, and on error no state changes (checked by the next genuine message).
func FuzzReceive(f *testing.F) {
	r := seeded(22)
	alice, bob := newPeer(f, r, "alice"), newPeer(f, r, "bob")
	connect(f, r, alice, bob, nil)
	first := alice.send(f, r, bob, 1, "x")
	f.Add(first)
	if _, err := bob.receive(r, first); err != nil {
		f.Fatal(err)
	}
	second := alice.send(f, r, bob, 2, "y")
	f.Add(second)
	base := bob.snapshot(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		bob.restoreFrom(t, base)
		if _, err := bob.receive(r, data); err != nil {
			after := bob.snapshot(t)
			for id, b := range base {
				if !bytes.Equal(after[id], b) && !errors.Is(err, ErrDuplicate) && !errors.Is(err, ErrTimestamp) && !errors.Is(err, ErrSender) {
					t.Fatalf("state changed on error %v", err)
				}
			}
		}
	})
}

func (p *peer) restoreFrom(t testing.TB, snap map[SessionID][]byte) {
	for id, raw := range snap {
		s, err := UnmarshalSession(raw)
		if err != nil {
			t.Fatal(err)
		}
		p.sessions[id] = s
		p.out[s.PeerDevice()] = s
	}
}

// FuzzInteraction lets the fuzzer script a conversation between three
// devices (Alice talks to Bob and to Carol): send, drop, duplicate and
// reorder. Every envelope delivered for the first time decrypts to what was
// sent; every repeat is refused (as a duplicate, or as unauthentic once
// its chain is gone).
func FuzzInteraction(f *testing.F) {
	f.Add([]byte{0, 3, 1, 3, 2, 4, 0, 0, 5, 3, 3, 6, 2, 3, 7})
	f.Add([]byte{0, 0, 0, 3, 3, 3, 1, 1, 4, 4, 2, 5, 6, 7, 8, 9})
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) > 300 {
			script = script[:300]
		}
		r := seeded(23)
		alice, bob, carol := newPeer(t, r, "alice"), newPeer(t, r, "bob"), newPeer(t, r, "carol")
		connect(t, r, alice, bob, nil)
		connect(t, r, alice, carol, nil)
		type flight struct {
			to   *peer
			raw  []byte
			id   uint64
			body string
		}
		var inFlight []flight
		done := map[uint64]bool{}
		var deliveredRaw []flight
		heard := map[*peer]bool{} // the responder may only send after it accepted
		pairs := [][2]*peer{{alice, bob}, {bob, alice}, {alice, carol}, {carol, alice}}
		nextID := uint64(1)
		for i, op := range script {
			switch op % 5 {
			case 0, 1: // send
				p := pairs[(int(op)/5+i)%4]
				if p[0] != alice && !heard[p[0]] {
					continue
				}
				b := body(p[0].name, int(nextID))
				inFlight = append(inFlight, flight{p[1], p[0].send(t, r, p[1], nextID, b), nextID, b})
				nextID++
			case 2: // deliver one, chosen by the script (reorders)
				if len(inFlight) == 0 {
					continue
				}
				k := int(op/5) % len(inFlight)
				fl := inFlight[k]
				inFlight = append(inFlight[:k:k], inFlight[k+1:]...)
				m, err := fl.to.receive(r, fl.raw)
				if err != nil {
					t.Fatalf("message %d to %s: %v", fl.id, fl.to.name, err)
				}
				if string(m.Body) != fl.body || binary.BigEndian.Uint64(m.ID[:8]) != fl.id || done[fl.id] {
					t.Fatalf("message %d: wrong or repeated delivery", fl.id)
				}
				done[fl.id] = true
				heard[fl.to] = true
				deliveredRaw = append(deliveredRaw, fl)
			case 3: // drop one
				if len(inFlight) > 0 {
					inFlight = inFlight[1:]
				}
			case 4: // duplicate an already delivered one
				if len(deliveredRaw) == 0 {
					continue
				}
				fl := deliveredRaw[int(op/5)%len(deliveredRaw)]
				// A repeat is refused. It is recognised as a duplicate
				// while the ratchet still holds its chain; one from a
				// chain the ratchet has since deleted (after later DH
				// steps) cannot be told from a forgery and fails to
				// authenticate — refused all the same, and no state
				// changes (the fuzzer found such a script; it is kept in
				// testdata/fuzz/FuzzInteraction).
				if _, err := fl.to.receive(r, fl.raw); !errors.Is(err, ErrDuplicate) && !errors.Is(err, ErrAuth) {
					t.Fatalf("duplicate of %d: %v", fl.id, err)
				}
			}
		}
	})
}

package ratchet

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
)

// sim is a two-party conversation over an unreliable network: messages can
// be delayed, reordered, dropped and duplicated. It models which deliveries
// must succeed and checks every one of them.
type sim struct {
	t     testing.TB
	rand  io.Reader
	ad    []byte
	party [2]*Session       // 0 = initiator (Alice), 1 = responder (Bob)
	sent  [2]int            // messages sent by each party
	queue [2][]*simMsg      // in flight to each party
	done  [2][]*simMsg      // delivered to each party
	seen  [2][][32]byte     // remote ratchet keys each party has received, in order
	got   [2]map[string]int // plaintexts each party decrypted, with counts
}

type simMsg struct {
	pt, ct []byte
	dh     [32]byte
}

func newSim(t testing.TB, r io.Reader) *sim {
	a, b := newPair(t, r)
	return &sim{
		t: t, rand: r, ad: []byte("sim ad"),
		party: [2]*Session{a, b},
		got:   [2]map[string]int{{}, {}},
	}
}

// send makes party from encrypt its next message. A responder that has not
// received anything cannot send; that is checked, not a failure.
func (m *sim) send(from int) {
	m.t.Helper()
	pt := fmt.Appendf(nil, "%d->%d #%d", from, 1-from, m.sent[from])
	ct, err := m.party[from].Encrypt(nil, pt, m.ad)
	if errors.Is(err, ErrNoSendingChain) && from == 1 && len(m.seen[1]) == 0 {
		return
	}
	if err != nil {
		m.t.Fatalf("party %d Encrypt: %v", from, err)
	}
	h, _, err := ParseMessage(ct)
	if err != nil {
		m.t.Fatalf("ParseMessage of own message: %v", err)
	}
	m.sent[from]++
	m.queue[1-from] = append(m.queue[1-from], &simMsg{pt: pt, ct: ct, dh: h.DH})
}

// deliver hands the i-th in-flight message (mod queue length) to party to.
func (m *sim) deliver(to, i int) {
	m.t.Helper()
	q := m.queue[to]
	if len(q) == 0 {
		return
	}
	i %= len(q)
	msg := q[i]
	m.queue[to] = slices.Delete(q, i, i+1)
	pos := slices.Index(m.seen[to], msg.dh)
	if pos >= 0 && pos < len(m.seen[to])-MaxOldChains {
		// The chain has been forgotten (MaxOldChains): its keys are gone.
		decryptFails(m.t, m.party[to], m.rand, msg.ct, m.ad, nil)
		return
	}
	pt, err := m.party[to].Decrypt(m.rand, msg.ct, m.ad)
	if err != nil {
		m.t.Fatalf("party %d Decrypt %q: %v", to, msg.pt, err)
	}
	if !bytes.Equal(pt, msg.pt) {
		m.t.Fatalf("party %d Decrypt = %q, want %q", to, pt, msg.pt)
	}
	if pos < 0 {
		m.seen[to] = append(m.seen[to], msg.dh)
	}
	m.got[to][string(pt)]++
	m.done[to] = append(m.done[to], msg)
}

// drop loses the i-th in-flight message to party to.
func (m *sim) drop(to, i int) {
	if q := m.queue[to]; len(q) > 0 {
		m.queue[to] = slices.Delete(q, i%len(q), i%len(q)+1)
	}
}

// duplicate delivers again the i-th message party to already decrypted.
func (m *sim) duplicate(to, i int) {
	m.t.Helper()
	d := m.done[to]
	if len(d) == 0 {
		return
	}
	msg := d[i%len(d)]
	var want error
	if pos := slices.Index(m.seen[to], msg.dh); pos >= len(m.seen[to])-MaxOldChains {
		want = ErrDuplicate // chain still known: a recognised replay
	}
	decryptFails(m.t, m.party[to], m.rand, msg.ct, m.ad, want)
}

// reload replaces party p by Unmarshal(MarshalBinary()).
func (m *sim) reload(p int) {
	m.t.Helper()
	m.party[p] = roundTrip(m.t, m.party[p])
}

// check verifies that every plaintext was decrypted at most once.
func (m *sim) check() {
	m.t.Helper()
	for p := range m.got {
		for pt, n := range m.got[p] {
			if n != 1 {
				m.t.Fatalf("party %d decrypted %q %d times", p, pt, n)
			}
		}
	}
}

// run interprets script: each byte is an operation (low 3 bits) and an
// argument (high 5 bits) that picks a message, so a fuzzer can explore
// sends, deliveries in any order, drops, duplicates and reloads.
func (m *sim) run(script []byte) {
	m.t.Helper()
	for _, b := range script {
		op, arg := b&7, int(b>>3)
		switch op {
		case 0, 1:
			m.send(int(op))
		case 2, 3: // 2: to the responder, 3: to the initiator
			m.deliver(3-int(op), arg)
		case 4, 5:
			m.drop(5-int(op), arg)
		case 6:
			m.duplicate(arg&1, arg>>1)
		case 7:
			m.reload(arg & 1)
		}
	}
	m.check()
}

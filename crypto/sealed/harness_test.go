package sealed

import (
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/pqxdh"
)

const now = int64(1_800_000_000_000)

func seeded(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.BigEndian.PutUint64(s[:], seed)
	return rand.NewChaCha8(s)
}

func seededEncap(r io.Reader) pqxdh.Encapsulator {
	return func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
		m := make([]byte, 32)
		if _, err := io.ReadFull(r, m); err != nil {
			return nil, nil, err
		}
		return mlkemtest.Encapsulate768(ek, m)
	}
}

// peer is a device with what a node would keep in its store.
type peer struct {
	name     string
	acct     *identity.AccountKey
	self     Device
	prekeys  *pqxdh.PrekeySet
	bundle   *pqxdh.Bundle // as published to a directory
	sessions map[SessionID]*Session
	out      map[identity.DeviceID]*Session
}

func newPeer(t testing.TB, r io.Reader, name string) *peer {
	t.Helper()
	acct, err := identity.NewAccountKey(r)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := identity.NewDeviceKey(r)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := acct.CertifyDevice(dev, name, 1_700_000_000)
	if err != nil {
		t.Fatal(err)
	}
	set, err := pqxdh.GeneratePrekeys(r, dev, 4)
	if err != nil {
		t.Fatal(err)
	}
	return &peer{
		name: name, acct: acct, self: Device{Key: dev, Cert: cert}, prekeys: set,
		bundle: set.Bundle(dev), sessions: map[SessionID]*Session{}, out: map[identity.DeviceID]*Session{},
	}
}

// connect makes a start a session with b from b's published bundle.
func connect(t testing.TB, r io.Reader, a, b *peer, encap pqxdh.Encapsulator) *Session {
	t.Helper()
	s, err := Initiate(r, a.self, b.self.Cert, b.bundle.Take(), encap)
	if err != nil {
		t.Fatal(err)
	}
	a.sessions[s.ReceiveID()] = s
	a.out[b.self.Key.ID()] = s
	return s
}

var errUnknownSession = errors.New("unknown session")

func (p *peer) send(t testing.TB, r io.Reader, to *peer, id uint64, body string) []byte {
	t.Helper()
	s := p.out[to.self.Key.ID()]
	if s == nil {
		t.Fatalf("%s has no session with %s", p.name, to.name)
	}
	var mid MessageID
	binary.BigEndian.PutUint64(mid[:], id)
	raw, err := s.Seal(r, Message{ID: mid, Timestamp: now, Body: []byte(body)})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// receive is what a node does with an envelope from its mailbox.
func (p *peer) receive(r io.Reader, raw []byte) (Message, error) {
	env, err := ParseEnvelope(raw)
	if err != nil {
		return Message{}, err
	}
	switch env.Kind {
	case KindMessage:
		s := p.sessions[env.SessionID]
		if s == nil {
			return Message{}, errUnknownSession
		}
		return s.Open(r, env, now)
	default:
		h, err := Unseal(p.self, env)
		if err != nil {
			return Message{}, err
		}
		if s := p.sessions[h.SessionID]; s != nil {
			return s.OpenPrekey(r, h, now)
		}
		s, m, err := Accept(r, p.self, p.prekeys, h, now)
		if s != nil {
			p.sessions[s.ReceiveID()] = s
			p.out[s.PeerDevice()] = s
		}
		return m, err
	}
}

func (p *peer) snapshot(t testing.TB) map[SessionID][]byte {
	t.Helper()
	out := map[SessionID][]byte{}
	for id, s := range p.sessions {
		raw, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		out[id] = raw
	}
	return out
}

// restore replaces p's sessions and prekeys by unmarshalled copies, as after
// a restart.
func (p *peer) restore(t testing.TB) {
	t.Helper()
	out := map[identity.DeviceID]*Session{}
	for id, raw := range p.snapshot(t) {
		s, err := UnmarshalSession(raw)
		if err != nil {
			t.Fatal(err)
		}
		p.sessions[id] = s
		out[s.PeerDevice()] = s
	}
	p.out = out
	raw, err := p.prekeys.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if p.prekeys, err = pqxdh.UnmarshalPrekeySet(raw); err != nil {
		t.Fatal(err)
	}
}

func body(from string, i int) string { return fmt.Sprintf("%s message %d", from, i) }

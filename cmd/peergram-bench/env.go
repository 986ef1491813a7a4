package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/pqxdh"
	"github.com/peergram/peergram/crypto/sealed"
	"github.com/peergram/peergram/relay/mailbox"
	"github.com/peergram/peergram/storage"
)

// cleanup runs teardown functions in reverse order.
type cleanup []func()

func (c *cleanup) add(f func()) { *c = append(*c, f) }

func (c *cleanup) run() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
	*c = nil
}

// newHost starts a libp2p host listening on loopback TCP only.
func newHost(c *cleanup) (host.Host, error) {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		return nil, fmt.Errorf("new host: %w", err)
	}
	c.add(func() { _ = h.Close() })
	return h, nil
}

func connect(ctx context.Context, from, to host.Host) error {
	if err := from.Connect(ctx, peer.AddrInfo{ID: to.ID(), Addrs: to.Addrs()}); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	return nil
}

// tempDir makes a temporary directory removed at cleanup.
func tempDir(c *cleanup) (string, error) {
	dir, err := os.MkdirTemp("", "peergram-bench-")
	if err != nil {
		return "", err
	}
	c.add(func() { _ = os.RemoveAll(dir) })
	return dir, nil
}

// relayEnv is a relay host running a mailbox Server over synced storage.
type relayEnv struct {
	h   host.Host
	db  *storage.DB
	srv *mailbox.Server
}

// newRelay starts a relay; noHandoff makes it store every deposit first.
func newRelay(c *cleanup, noHandoff bool) (*relayEnv, error) {
	dir, err := tempDir(c)
	if err != nil {
		return nil, err
	}
	db, err := storage.Open(storage.Options{Dir: dir, NoCompression: true})
	if err != nil {
		return nil, err
	}
	c.add(func() { _ = db.Close() })
	h, err := newHost(c)
	if err != nil {
		return nil, err
	}
	// One sender stands for the many nodes a relay serves: no depositor
	// budgets.
	srv, err := mailbox.NewServer(mailbox.Config{DB: db, Host: h, NoHandoff: noHandoff,
		DepositBudgets: mailbox.Unlimited, StrangerBudgets: mailbox.Unlimited})
	if err != nil {
		return nil, err
	}
	if err := srv.Start(); err != nil {
		return nil, err
	}
	c.add(func() { _ = srv.Close() })
	return &relayEnv{h: h, db: db, srv: srv}, nil
}

// newClientHost starts a host connected to the relay and a mailbox Client on it.
func newClientHost(ctx context.Context, c *cleanup, r *relayEnv) (host.Host, *mailbox.Client, error) {
	h, err := newHost(c)
	if err != nil {
		return nil, nil, err
	}
	if err := connect(ctx, h, r.h); err != nil {
		return nil, nil, err
	}
	cl := mailbox.NewClient(h, nil)
	c.add(func() { _ = cl.Close() })
	return h, cl, nil
}

// waitEmpty polls the relay until addr's mailbox is empty, backing off
// from 100µs to 5ms between polls (Stats counts exactly, so it costs a scan).
func waitEmpty(ctx context.Context, srv *mailbox.Server, addr mailbox.Address) error {
	pause := 100 * time.Microsecond
	for {
		n, _, err := srv.Stats(addr)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Millisecond)
	}
}

// device is a party with its keys, as a node would keep them.
type device struct {
	self    sealed.Device
	prekeys *pqxdh.PrekeySet
	bundle  *pqxdh.Bundle
}

func newDevice(name string) (*device, error) {
	acct, err := identity.NewAccountKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	dev, err := identity.NewDeviceKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	cert, err := acct.CertifyDevice(dev, name, time.Now().Unix())
	if err != nil {
		return nil, err
	}
	set, err := pqxdh.GeneratePrekeys(rand.Reader, dev, 4)
	if err != nil {
		return nil, err
	}
	return &device{self: sealed.Device{Key: dev, Cert: cert}, prekeys: set, bundle: set.Bundle(dev)}, nil
}

// pair is an established session between Alice (sender) and Bob, past
// the prekey form: Alice sent one message, Bob accepted and replied.
type pair struct {
	alice, bob   *device
	aSess, bSess *sealed.Session
}

func newPair() (*pair, error) {
	alice, err := newDevice("alice")
	if err != nil {
		return nil, err
	}
	bob, err := newDevice("bob")
	if err != nil {
		return nil, err
	}
	aSess, err := sealed.Initiate(rand.Reader, alice.self, bob.self.Cert, bob.bundle.Take(), nil)
	if err != nil {
		return nil, fmt.Errorf("initiate: %w", err)
	}
	now := time.Now().UnixMilli()
	raw, err := aSess.Seal(rand.Reader, sealed.Message{Timestamp: now, Body: []byte("hello")})
	if err != nil {
		return nil, err
	}
	env, err := sealed.ParseEnvelope(raw)
	if err != nil {
		return nil, err
	}
	h, err := sealed.Unseal(bob.self, env)
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", err)
	}
	bSess, _, err := sealed.Accept(rand.Reader, bob.self, bob.prekeys, h, now)
	if err != nil {
		return nil, fmt.Errorf("accept: %w", err)
	}
	raw, err = bSess.Seal(rand.Reader, sealed.Message{Timestamp: now, Body: []byte("hi")})
	if err != nil {
		return nil, err
	}
	if env, err = sealed.ParseEnvelope(raw); err != nil {
		return nil, err
	}
	if _, err := aSess.Open(rand.Reader, env, now); err != nil {
		return nil, fmt.Errorf("open reply: %w", err)
	}
	return &pair{alice: alice, bob: bob, aSess: aSess, bSess: bSess}, nil
}

// seal seals message i (its index in the first 8 body bytes) for Bob.
func (p *pair) seal(i int) ([]byte, error) {
	body := make([]byte, msgSize)
	binary.BigEndian.PutUint64(body, uint64(i))
	var mid sealed.MessageID
	if _, err := rand.Read(mid[:]); err != nil {
		return nil, err
	}
	return p.aSess.Seal(rand.Reader, sealed.Message{ID: mid, Timestamp: time.Now().UnixMilli(), Body: body})
}

// open is Bob's mailbox handler work: parse and decrypt, returning the index.
func (p *pair) open(raw []byte) (int, error) {
	env, err := sealed.ParseEnvelope(raw)
	if err != nil {
		return 0, err
	}
	m, err := p.bSess.Open(rand.Reader, env, time.Now().UnixMilli())
	if err != nil {
		return 0, err
	}
	if len(m.Body) < 8 {
		return 0, errors.New("short body")
	}
	return int(binary.BigEndian.Uint64(m.Body)), nil
}

func (p *pair) bobKey() ed25519.PrivateKey { return p.bob.self.Key.SigningKey() }

func (p *pair) bobAddr() mailbox.Address { return mailbox.Address(p.bob.self.Key.ID()) }

// sink counts a round's arrivals and records one-way latencies.
type sink struct {
	mu     sync.Mutex
	want   int
	got    int
	starts []atomic.Int64 // unix nanoseconds at send start, by index
	lats   []time.Duration
	done   chan struct{}
}

// reset prepares the sink for a round of n messages.
func (s *sink) reset(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.want, s.got = n, 0
	s.starts = make([]atomic.Int64, n)
	s.lats = s.lats[:0]
	s.done = make(chan struct{})
}

func (s *sink) sent(i int) { s.starts[i].Store(time.Now().UnixNano()) }

func (s *sink) arrived(i int) {
	now := time.Now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if i >= 0 && i < len(s.starts) {
		if t := s.starts[i].Load(); t != 0 {
			s.lats = append(s.lats, time.Duration(now-t))
		}
	}
	s.got++
	if s.got == s.want {
		close(s.done)
	}
}

func (s *sink) wait(ctx context.Context) error {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		defer s.mu.Unlock()
		return fmt.Errorf("%w after %d of %d", ctx.Err(), s.got, s.want)
	}
}

func (s *sink) latencies() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.lats...)
}

package node

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/pqxdh"
	"github.com/peergram/peergram/crypto/sealed"
	"github.com/peergram/peergram/relay/directory"
	"github.com/peergram/peergram/relay/mailbox"
)

// fakeDevice is a hand-driven Peergram device built from the crypto
// packages: what an attacker with its own client, or with stolen or
// misused keys, can send. It talks to nodes over the direct protocol.
type fakeDevice struct {
	acct    *identity.AccountKey
	dev     *identity.DeviceKey
	cert    *identity.DeviceCert
	prekeys *pqxdh.PrekeySet
	h       host.Host
	dir     *directory.Client
	relay   peer.ID
	out     map[identity.DeviceID]*sealed.Session
}

// newFakeDevice makes a device of acct (a new account when acct is nil)
// that publishes nothing yet.
func newFakeDevice(t *testing.T, relay *testRelay, acct *identity.AccountKey, name string) *fakeDevice {
	t.Helper()
	var err error
	if acct == nil {
		if acct, err = identity.NewAccountKey(rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	dev, err := identity.NewDeviceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := acct.CertifyDevice(dev, name, time.Now().Unix())
	if err != nil {
		t.Fatal(err)
	}
	pk, err := pqxdh.GeneratePrekeys(rand.Reader, dev, 2)
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	h.Peerstore().AddAddrs(relay.h.ID(), relay.h.Addrs(), time.Hour)
	return &fakeDevice{acct: acct, dev: dev, cert: cert, prekeys: pk, h: h, dir: directory.NewClient(h), relay: relay.h.ID(), out: map[identity.DeviceID]*sealed.Session{}}
}

// publish signs a list of devices (after prev, nil for the first) with
// f's account key and publishes it with f's bundle to the relay.
func (f *fakeDevice) publish(t *testing.T, prev *identity.DeviceList, devices ...*identity.DeviceCert) *identity.DeviceList {
	t.Helper()
	certs := make([]identity.DeviceCert, len(devices))
	for i, d := range devices {
		certs[i] = *d
	}
	issued := time.Now().Unix()
	if prev != nil {
		issued = max(issued, prev.Issued)
	}
	l, err := f.acct.SignDeviceList(prev, certs, issued)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.dir.Publish(ctx, f.relay, l, f.prekeys.Bundle(f.dev), nil); err != nil {
		t.Fatal(err)
	}
	return l
}

// publishList publishes a list of f's account without any bundle.
func (f *fakeDevice) publishList(t *testing.T, prev *identity.DeviceList, devices ...*identity.DeviceCert) *identity.DeviceList {
	t.Helper()
	certs := make([]identity.DeviceCert, len(devices))
	for i, d := range devices {
		certs[i] = *d
	}
	l, err := f.acct.SignDeviceList(prev, certs, time.Now().Unix())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.dir.Publish(ctx, f.relay, l, nil, nil); err != nil {
		t.Fatal(err)
	}
	return l
}

// publishBundle publishes f's prekey bundle under an existing list.
func (f *fakeDevice) publishBundle(t *testing.T, l *identity.DeviceList) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.dir.Publish(ctx, f.relay, l, f.prekeys.Bundle(f.dev), nil); err != nil {
		t.Fatal(err)
	}
}

// receive waits for one envelope in f's relay mailbox and opens it: with
// the session it belongs to, or as a new session (a prekey envelope) kept
// for sending.
func (f *fakeDevice) receive(t *testing.T) sealed.Message {
	t.Helper()
	return f.receiveN(t, 1)[0]
}

// receiveN is receive for n envelopes, in the order the relay delivers
// them.
func (f *fakeDevice) receiveN(t *testing.T, n int) []sealed.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mbox := mailbox.NewClient(f.h, nil)
	defer mbox.Close()
	got := make(chan []byte, n)
	go func() {
		_ = mbox.Subscribe(ctx, f.relay, f.dev.SigningKey(), func(_ context.Context, d mailbox.Delivery) error {
			select {
			case got <- d.Envelope:
			default:
			}
			return nil
		})
	}()
	var out []sealed.Message
	for range n {
		select {
		case raw := <-got:
			out = append(out, f.open(t, raw))
		case <-ctx.Done():
			t.Fatalf("%d of %d envelopes arrived in the mailbox", len(out), n)
		}
	}
	return out
}

func (f *fakeDevice) open(t *testing.T, raw []byte) sealed.Message {
	t.Helper()
	env, err := sealed.ParseEnvelope(raw)
	if err != nil {
		t.Fatal(err)
	}
	if env.Kind == sealed.KindMessage {
		for _, s := range f.out {
			if s.ReceiveID() == env.SessionID {
				m, err := s.Open(rand.Reader, env, time.Now().UnixMilli())
				if err != nil {
					t.Fatal(err)
				}
				return m
			}
		}
		t.Fatal("message envelope for an unknown session")
	}
	self := sealed.Device{Key: f.dev, Cert: f.cert}
	h, err := sealed.Unseal(self, env)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range f.out {
		if s.ReceiveID() == h.SessionID {
			m, err := s.OpenPrekey(rand.Reader, h, time.Now().UnixMilli())
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
	}
	s, m, err := sealed.Accept(rand.Reader, self, f.prekeys, h, time.Now().UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	f.out[s.PeerDevice()] = s
	return m
}

// send seals a text message to n's device and delivers it over the direct
// protocol. It returns the node's answer: directOK or directRejected, or
// -1 if the stream was reset.
func (f *fakeDevice) send(t *testing.T, n *testNode, p payload, id sealed.MessageID) int {
	t.Helper()
	return sendRaw(t, f, n, f.seal(t, n, p, id))
}

// seal seals a text message to n's device (starting a session the first
// time) and returns the envelope.
func (f *fakeDevice) seal(t *testing.T, n *testNode, p payload, id sealed.MessageID) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	to := n.keys.device.ID()
	s := f.out[to]
	if s == nil {
		var res *directory.Result
		eventually(t, "the node's keys in the directory", func() (bool, error) {
			var err error
			res, err = f.dir.Fetch(ctx, f.relay, n.keys.account.ID())
			return err == nil, err
		})
		var entry *directory.DeviceEntry
		for i := range res.Devices {
			if res.Devices[i].Cert.Device == to {
				entry = &res.Devices[i]
			}
		}
		if entry == nil || entry.Bundle == nil {
			t.Fatal("no bundle for the node's device")
		}
		var err error
		if s, err = sealed.Initiate(rand.Reader, sealed.Device{Key: f.dev, Cert: f.cert}, entry.Cert, entry.Bundle, nil); err != nil {
			t.Fatal(err)
		}
		f.out[to] = s
	}
	body, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	env, err := s.Seal(rand.Reader, sealed.Message{ID: id, Timestamp: time.Now().UnixMilli(), Body: body})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// sendRaw delivers raw bytes as one envelope over the direct protocol and
// returns the node's answer (directOK, directRejected, or -1 on reset).
func sendRaw(t *testing.T, f *fakeDevice, n *testNode, env []byte) int {
	t.Helper()
	// A node that is reading a mailbox's backlog (after any resubscription
	// to a relay, which a loaded machine sees now and then) resets direct
	// streams on purpose; the answers these tests look at come after.
	// (sendRawOn does not wait: TestMailboxBeforeDirect wants the reset.)
	for deadline := time.Now().Add(time.Minute); !n.takesDirect(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the node never took direct envelopes")
		}
	}
	return sendRawOn(t, f, n, ProtocolID, env)
}

// sendRawOn is sendRaw on protocol proto (ProtocolID or StreamProtocolID,
// which answer one envelope alike).
func sendRawOn(t *testing.T, f *fakeDevice, n *testNode, proto protocol.ID, env []byte) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := f.h.Connect(ctx, peer.AddrInfo{ID: n.host.ID(), Addrs: n.host.Addrs()}); err != nil {
		t.Fatal(err)
	}
	str, err := f.h.NewStream(ctx, n.host.ID(), proto)
	if err != nil {
		t.Fatal(err)
	}
	defer str.Close()
	w := bufio.NewWriter(str)
	if err := writeFrame(w, env); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = str.CloseWrite()
	var ack [1]byte
	if _, err := io.ReadFull(str, ack[:]); err != nil {
		return -1
	}
	return int(ack[0])
}

func newMessageID(t *testing.T) sealed.MessageID {
	var id sealed.MessageID
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	return id
}

// texts returns the texts of a chat as the node shows it, without marking
// them read.
func texts(t *testing.T, n *testNode, contact string) []string {
	t.Helper()
	msgs, err := n.Messages(context.Background(), contact, false)
	if err != nil {
		return nil
	}
	var out []string
	for _, m := range msgs {
		out = append(out, m.Text)
	}
	return out
}

package node

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"

	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/blobs"
	"github.com/peergram/peergram/relay/directory"
	"github.com/peergram/peergram/relay/history"
	"github.com/peergram/peergram/relay/mailbox"
	"github.com/peergram/peergram/storage"
)

// testRelay is a minimal relay on loopback: circuit relay v2, mailbox and
// directory over a real Badger store.
type testRelay struct {
	h     host.Host
	addr  string
	mbox  *mailbox.Server
	dir   *directory.Server
	hist  *history.Server
	blobs *blobs.Server
	db    *storage.DB
	relay *relayv2.Relay
}

func startRelay(t *testing.T, dir string) *testRelay {
	t.Helper()
	return startRelayWith(t, dir, nil)
}

// startRelayWith is startRelay with a hook to change the directory's
// configuration.
func startRelayWith(t *testing.T, dir string, mod func(*directory.Config)) *testRelay {
	t.Helper()
	return startRelayConfig(t, dir, mod, nil)
}

// startRelayConfig is startRelay with hooks to change the directory's and
// the mailbox's configuration.
func startRelayConfig(t *testing.T, dir string, mod func(*directory.Config), mmod func(*mailbox.Config)) *testRelay {
	t.Helper()
	return startRelayFull(t, dir, mod, mmod, nil)
}

// startRelayFull is startRelayConfig with a hook on the history server's
// configuration and libp2p options for the host.
func startRelayFull(t *testing.T, dir string, mod func(*directory.Config), mmod func(*mailbox.Config), hmod func(*history.Config), opts ...libp2p.Option) *testRelay {
	t.Helper()
	return startRelayMods(t, dir, relayMods{dir: mod, mbox: mmod, hist: hmod}, opts...)
}

// relayMods are hooks on a test relay's services' configurations (nil:
// as they are).
type relayMods struct {
	dir   func(*directory.Config)
	mbox  func(*mailbox.Config)
	hist  func(*history.Config)
	blobs func(*blobs.Config)
}

// startRelayMods is startRelayFull with every hook.
func startRelayMods(t *testing.T, dir string, mods relayMods, opts ...libp2p.Option) *testRelay {
	t.Helper()
	mod, mmod, hmod := mods.dir, mods.mbox, mods.hist
	h, err := libp2p.New(append([]libp2p.Option{libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	db, err := storage.Open(storage.Options{Dir: dir, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	r := &testRelay{h: h, db: db, addr: fmt.Sprintf("%s/p2p/%s", h.Addrs()[0], h.ID())}
	if r.relay, err = relayv2.New(h); err != nil {
		t.Fatal(err)
	}
	mcfg := mailbox.Config{DB: db, Host: h}
	if mmod != nil {
		mmod(&mcfg)
	}
	if r.mbox, err = mailbox.NewServer(mcfg); err != nil {
		t.Fatal(err)
	}
	if err := r.mbox.Start(); err != nil {
		t.Fatal(err)
	}
	dcfg := directory.Config{DB: db, Host: h}
	if mod != nil {
		mod(&dcfg)
	}
	if r.dir, err = directory.NewServer(dcfg); err != nil {
		t.Fatal(err)
	}
	if err := r.dir.Start(); err != nil {
		t.Fatal(err)
	}
	hcfg := history.Config{DB: db, Host: h}
	if hmod != nil {
		hmod(&hcfg)
	}
	if r.hist, err = history.NewServer(hcfg); err != nil {
		t.Fatal(err)
	}
	if err := r.hist.Start(); err != nil {
		t.Fatal(err)
	}
	bcfg := blobs.Config{DB: db, Host: h, Dir: filepath.Join(dir, "blobs")}
	if mods.blobs != nil {
		mods.blobs(&bcfg)
	}
	if r.blobs, err = blobs.NewServer(bcfg); err != nil {
		t.Fatal(err)
	}
	if err := r.blobs.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	return r
}

func (r *testRelay) close() {
	r.mbox.Close()
	r.dir.Close()
	r.hist.Close()
	r.blobs.Close()
	r.relay.Close()
	r.h.Close()
	r.db.Close()
}

type testNode struct {
	*Node
	home   string
	cancel context.CancelFunc
	done   chan error
	offset *atomic.Int64 // added to the node's clock, ns
}

// setClock moves the node's clock d ahead of real time.
func (n *testNode) setClock(d time.Duration) { n.offset.Store(int64(d)) }

func initHome(t testing.TB, name string) (string, Info) {
	t.Helper()
	home := filepath.Join(t.TempDir(), name)
	info, err := Init(home, name)
	if err != nil {
		t.Fatal(err)
	}
	return home, info
}

func startNode(t testing.TB, home string, relays ...string) *testNode {
	t.Helper()
	return startNodeWith(t, home, nil, relays...)
}

// startNodeWith is startNode with a hook to change the configuration.
func startNodeWith(t testing.TB, home string, mod func(*Config), relays ...string) *testNode {
	t.Helper()
	tn := launchNode(t, home, mod, relays...)
	// Until its mailboxes are read the node takes nothing directly (see
	// takesDirect); tests that send directly at once wait for that. A
	// relay that cannot be reached stops holding it back after drainGrace.
	for deadline := time.Now().Add(drainGrace + time.Second); !tn.takesDirect() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	return tn
}

// launchNode is startNodeWith without waiting for the node's mailboxes.
func launchNode(t testing.TB, home string, mod func(*Config), relays ...string) *testNode {
	t.Helper()
	offset := new(atomic.Int64)
	cfg := Config{
		Home: home, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Relays: relays, DisableMDNS: true,
		RetryMin: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond,
		Now: func() time.Time { return time.Now().Add(time.Duration(offset.Load())) },
	}
	if mod != nil {
		mod(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tn := &testNode{Node: n, home: home, cancel: cancel, done: make(chan error, 1), offset: offset}
	go func() { tn.done <- n.Run(ctx) }()
	select {
	case <-n.Ready():
	case err := <-tn.done:
		t.Fatalf("node did not start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("node did not start in time")
	}
	t.Cleanup(tn.stop)
	return tn
}

func (n *testNode) stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	<-n.done
	n.cancel = nil
}

func eventually(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s (last error: %v)", what, last)
}

func addEachOther(t *testing.T, a, b *testNode, aInfo, bInfo Info) {
	t.Helper()
	ctx := context.Background()
	for _, p := range []struct {
		n    *testNode
		id   string
		name string
	}{{a, bInfo.AccountID, bInfo.Name}, {b, aInfo.AccountID, aInfo.Name}} {
		eventually(t, "contact keys", func() (bool, error) {
			c, err := p.n.AddContact(ctx, p.id, p.name)
			return err == nil && c.Devices == 1, err
		})
	}
}

func statusOf(t *testing.T, n *testNode, contact string) map[string]chat.Status {
	t.Helper()
	msgs, err := n.Messages(context.Background(), contact, false)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]chat.Status{}
	for _, m := range msgs {
		out[m.Text] = m.Status
	}
	return out
}

func TestDirectAndOffline(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()

	// Both online: delivered, then read once Bob lists the chat.
	if _, err := alice.Send(ctx, "bob", "hello bob"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bob receives", func() (bool, error) {
		return statusOf(t, bob, "alice")["hello bob"] == chat.StatusReceived, nil
	})
	eventually(t, "delivered receipt", func() (bool, error) {
		return statusOf(t, alice, "bob")["hello bob"] == chat.StatusDelivered, nil
	})
	if _, err := bob.Messages(ctx, "alice", true); err != nil {
		t.Fatal(err)
	}
	eventually(t, "read receipt", func() (bool, error) {
		return statusOf(t, alice, "bob")["hello bob"] == chat.StatusRead, nil
	})
	if _, err := bob.Send(ctx, "alice", "hi alice"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "alice receives", func() (bool, error) {
		return statusOf(t, alice, "bob")["hi alice"] == chat.StatusReceived, nil
	})
	// Online peers talk directly (here over a relayed connection, which
	// hole punching may upgrade), not through the mailbox.
	if d, m := alice.sentDirect.Load(), alice.sentMailbox.Load(); d == 0 || m != 0 {
		t.Fatalf("alice sent %d envelopes directly and %d through the mailbox; want all direct", d, m)
	}

	// Bob goes offline: Alice's messages wait in Bob's relay mailbox.
	bob.stop()
	var texts []string
	for i := range 10 {
		texts = append(texts, fmt.Sprintf("offline %02d", i))
		if _, err := alice.Send(ctx, "bob", texts[i]); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "deposited in the mailbox", func() (bool, error) {
		st := statusOf(t, alice, "bob")
		for _, x := range texts {
			if st[x] != chat.StatusSent {
				return false, fmt.Errorf("%s is %s", x, st[x])
			}
		}
		return true, nil
	})
	if alice.sentMailbox.Load() < int64(len(texts)) {
		t.Fatalf("only %d envelopes went to the mailbox while Bob was offline", alice.sentMailbox.Load())
	}
	bob = startNode(t, bobHome, relay.addr)
	eventually(t, "offline messages arrive", func() (bool, error) {
		msgs, err := bob.Messages(ctx, "alice", false)
		if err != nil {
			return false, err
		}
		var got []string
		for _, m := range msgs {
			if strings.HasPrefix(m.Text, "offline") {
				got = append(got, m.Text)
			}
		}
		if len(got) > len(texts) {
			t.Fatalf("duplicates: %v", got)
		}
		return slices.Equal(got, texts), fmt.Errorf("have %v", got)
	})
	eventually(t, "all delivered", func() (bool, error) {
		st := statusOf(t, alice, "bob")
		for _, x := range texts {
			if st[x] != chat.StatusDelivered {
				return false, fmt.Errorf("%s is %s", x, st[x])
			}
		}
		return true, nil
	})
	if count, _, err := relay.mbox.Stats(mailbox.Address(bob.keys.device.ID())); err != nil || count != 0 {
		t.Fatalf("mailbox still holds %d envelopes (%v)", count, err)
	}
}

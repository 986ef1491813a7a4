package directory

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/pqxdh"
	"github.com/peergram/peergram/storage"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fixture is an account with its device keys, and every list it signed.
type fixture struct {
	acct  *identity.AccountKey
	devs  []*identity.DeviceKey
	certs []identity.DeviceCert
	lists []*identity.DeviceList
	now   int64
}

func newFixture(t testing.TB, r io.Reader, devices int) *fixture {
	t.Helper()
	acct, err := identity.NewAccountKey(r)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{acct: acct, now: 1767225600}
	for range devices {
		f.addDevice(t, r)
	}
	return f
}

func (f *fixture) addDevice(t testing.TB, r io.Reader) int {
	t.Helper()
	dev, err := identity.NewDeviceKey(r)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := f.acct.CertifyDevice(dev, "device", f.now)
	if err != nil {
		t.Fatal(err)
	}
	f.devs = append(f.devs, dev)
	f.certs = append(f.certs, *cert)
	return len(f.devs) - 1
}

// sign signs the next list version, naming the devices at idx (all if none).
func (f *fixture) sign(t testing.TB, idx ...int) *identity.DeviceList {
	t.Helper()
	if len(idx) == 0 {
		for i := range f.devs {
			idx = append(idx, i)
		}
	}
	var certs []identity.DeviceCert
	for _, i := range idx {
		certs = append(certs, f.certs[i])
	}
	var prev *identity.DeviceList
	if len(f.lists) > 0 {
		prev = f.lists[len(f.lists)-1]
	}
	f.now += 60
	l, err := f.acct.SignDeviceList(prev, certs, f.now)
	if err != nil {
		t.Fatal(err)
	}
	f.lists = append(f.lists, l)
	return l
}

func (f *fixture) last() *identity.DeviceList { return f.lists[len(f.lists)-1] }

func genPrekeys(t testing.TB, r io.Reader, dev *identity.DeviceKey, n int) *pqxdh.PrekeySet {
	t.Helper()
	s, err := pqxdh.GeneratePrekeys(r, dev, n)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testPeerID is a fixed, valid peer ID for records.
func testPeerID(t testing.TB) peer.ID {
	t.Helper()
	id, err := peer.Decode("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func signRecord(t testing.TB, dev *identity.DeviceKey, issued int64) *Record {
	t.Helper()
	id := testPeerID(t)
	r, err := SignRecord(dev, Record{
		PeerID: id,
		Relays: []string{"/ip4/127.0.0.1/tcp/4001/p2p/" + id.String()},
		Issued: issued,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newHost(t testing.TB) host.Host {
	t.Helper()
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.DisableRelay(),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// relay is a Server on a loopback host with its own DB.
type relay struct {
	h     host.Host
	dir   string
	db    *storage.DB
	srv   *Server
	reg   *prometheus.Registry
	cfg   Config // as given to NewServer, minus DB and Host
	clock *clock
}

// newRelay starts a relay whose clock stands still (see clock) and whose
// rate limits are off, so that tests of other rules make as many requests
// as they like; options change the Config.
func newRelay(t *testing.T, options ...func(*Config)) *relay {
	t.Helper()
	r := &relay{h: newHost(t), dir: t.TempDir(), clock: &clock{t: time.Unix(1_800_000_000, 0)}}
	r.cfg = Config{
		PublishRate: Unlimited, FetchRate: Unlimited, OneTimePerPeer: Unlimited, OneTimePerDevice: Unlimited,
		Now: r.clock.now,
	}
	for _, o := range options {
		o(&r.cfg)
	}
	r.start(t)
	t.Cleanup(func() { r.stop(t) })
	return r
}

// clock is a test clock: it moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// allowAll hands out every one-time prekey (no rate limit).
func allowAll(identity.DeviceID) bool { return true }

func (r *relay) start(t *testing.T) {
	t.Helper()
	db, err := storage.Open(storage.Options{Dir: r.dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	r.db = db
	r.reg = prometheus.NewRegistry()
	cfg := r.cfg
	cfg.DB, cfg.Host, cfg.Registerer = db, r.h, r.reg
	r.srv, err = NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.srv.Start(); err != nil {
		t.Fatal(err)
	}
}

func (r *relay) stop(t *testing.T) {
	t.Helper()
	if r.srv == nil {
		return
	}
	if err := r.srv.Close(); err != nil {
		t.Error(err)
	}
	if err := r.db.Close(); err != nil {
		t.Error(err)
	}
	r.srv, r.db = nil, nil
}

// restart closes the Server and the DB and opens both again, as after a
// relay restart.
func (r *relay) restart(t *testing.T) {
	t.Helper()
	r.stop(t)
	r.start(t)
}

// dump returns every stored key and value of the directory's keyspaces.
func (r *relay) dump(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := r.db.View(func(tx *storage.Txn) error {
		// Not marks (kept on purpose for devices deleted) nor meta.
		st := r.srv.st
		for _, ks := range []storage.Keyspace{st.lists, st.heads, st.prekeys, st.records, st.gone, st.cursors, st.touched, st.owners} {
			err := tx.Iterate(ks, nil, func(k, v []byte) error {
				out[ks.Name()+"/"+hex.EncodeToString(k)] = hex.EncodeToString(v)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// countPrekeys returns how many one-time prekeys of each kind the relay
// stores for a device.
func (r *relay) countPrekeys(t *testing.T, a identity.AccountID, d identity.DeviceID) [2]int {
	t.Helper()
	var n [2]int
	err := r.db.View(func(tx *storage.Txn) error {
		for i, kind := range kinds {
			c, err := tx.Count(r.srv.st.prekeys, append(deviceKey(a, d), kind))
			if err != nil {
				return err
			}
			n[i] = c
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// newClient returns a Client on its own host, connected to r.
func newClient(t *testing.T, r *relay) *Client {
	t.Helper()
	h := newHost(t)
	connect(t, h, r.h)
	return NewClient(h)
}

func connect(t *testing.T, from, to host.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := from.Connect(ctx, peer.AddrInfo{ID: to.ID(), Addrs: to.Addrs()}); err != nil {
		t.Fatal(err)
	}
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func ids(keys []pqxdh.SignedKey) []uint32 {
	out := make([]uint32, 0, len(keys))
	for _, k := range keys {
		out = append(out, k.ID)
	}
	return out
}

func sortedIDs(keys []pqxdh.SignedKey) []uint32 {
	out := ids(keys)
	slices.Sort(out)
	return out
}

var rng = rand.Reader

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

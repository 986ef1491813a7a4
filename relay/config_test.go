package relay_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"

	"github.com/peergram/peergram/relay"
	"github.com/peergram/peergram/relay/relaytest"
)

func TestInit(t *testing.T) {
	home := filepath.Join(t.TempDir(), "a", "home")
	if err := relay.Init(home); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
		dir  bool
	}{
		{home, 0o700, true},
		{filepath.Join(home, relay.IdentityFile), 0o600, false},
		{filepath.Join(home, relay.StoreDir), 0o700, true},
	} {
		st, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.IsDir() != c.dir || st.Mode().Perm() != c.mode {
			t.Errorf("%s: dir=%v mode %v, want dir=%v mode %v", c.path, st.IsDir(), st.Mode().Perm(), c.dir, c.mode)
		}
	}

	b, err := os.ReadFile(filepath.Join(home, relay.IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	sk, err := crypto.UnmarshalPrivateKey(b)
	if err != nil || sk.Type() != crypto.Ed25519 {
		t.Fatalf("identity key: %v, type %v; want an Ed25519 libp2p key", err, sk.Type())
	}

	r, err := relay.New(relay.Config{Home: home})
	if err != nil {
		t.Fatal(err)
	}
	if !r.ID().MatchesPrivateKey(sk) {
		t.Errorf("ID %s does not match the identity key", r.ID())
	}

	// A second Init must not replace the identity.
	if err := relay.Init(home); !errors.Is(err, relay.ErrAlreadyInitialised) {
		t.Fatalf("second Init: %v, want ErrAlreadyInitialised", err)
	}
	b2, err := os.ReadFile(filepath.Join(home, relay.IdentityFile))
	if err != nil || string(b2) != string(b) {
		t.Fatalf("identity changed by a refused Init (err %v)", err)
	}
	if m, _ := filepath.Glob(filepath.Join(home, ".*tmp*")); len(m) != 0 {
		t.Errorf("temporary files left in home: %v", m)
	}
}

func TestNewErrors(t *testing.T) {
	home := initHome(t)
	badKey := t.TempDir()
	if err := os.WriteFile(filepath.Join(badKey, relay.IdentityFile), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	otherHome := t.TempDir()
	otherKey, _, err := crypto.GenerateSecp256k1Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := crypto.MarshalPrivateKey(otherKey)
	if err := os.WriteFile(filepath.Join(otherHome, relay.IdentityFile), rb, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		cfg  relay.Config
		want error
	}{
		{"no home", relay.Config{}, relay.ErrInvalidConfig},
		{"uninitialised home", relay.Config{Home: t.TempDir()}, relay.ErrNotInitialised},
		{"missing home", relay.Config{Home: filepath.Join(t.TempDir(), "nope")}, relay.ErrNotInitialised},
		{"garbage key", relay.Config{Home: badKey}, relay.ErrBadIdentity},
		{"non-Ed25519 key", relay.Config{Home: otherHome}, relay.ErrBadIdentity},
		{"bad multiaddr", relay.Config{Home: home, Listen: []string{"/ip4/1.2.3"}}, relay.ErrInvalidConfig},
		{"duplicate listen", relay.Config{Home: home, Listen: []string{"/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/tcp/1"}}, relay.ErrInvalidConfig},
		{"metrics not host:port", relay.Config{Home: home, MetricsAddr: "9090"}, relay.ErrInvalidConfig},
		{"metrics on all interfaces", relay.Config{Home: home, MetricsAddr: ":9090"}, relay.ErrInvalidConfig},
		{"metrics on 0.0.0.0", relay.Config{Home: home, MetricsAddr: "0.0.0.0:9090"}, relay.ErrInvalidConfig},
		{"metrics on a hostname", relay.Config{Home: home, MetricsAddr: "example.org:9090"}, relay.ErrInvalidConfig},
		{"metrics on a private address", relay.Config{Home: home, MetricsAddr: "10.0.0.1:9090"}, relay.ErrInvalidConfig},
		{"metrics public allowed", relay.Config{Home: home, MetricsAddr: ":9090", MetricsPublic: true}, nil},
		{"metrics on 127.0.0.1", relay.Config{Home: home, MetricsAddr: "127.0.0.1:9090"}, nil},
		{"metrics on ::1", relay.Config{Home: home, MetricsAddr: "[::1]:9090"}, nil},
		{"metrics on localhost", relay.Config{Home: home, MetricsAddr: "localhost:0"}, nil},
		{"negative TTL", relay.Config{Home: home, TTL: -time.Second}, relay.ErrInvalidConfig},
		{"negative envelope size", relay.Config{Home: home, MaxEnvelopeSize: -1}, relay.ErrInvalidConfig},
		{"zero-slot resources", relay.Config{Home: home, Resources: relayv2.Resources{BufferSize: 1}}, relay.ErrInvalidConfig},
		{"library default resources", relay.Config{Home: home, Resources: relayv2.DefaultResources()}, nil},
		{"operator limits", relay.Config{Home: home, Limits: relay.OperatorLimits()}, nil},
		{"directory quota too small", relay.Config{Home: home, DirectoryAccountQuota: 1000}, relay.ErrInvalidConfig},
		{"negative directory expiry", relay.Config{Home: home, DirectoryExpiry: -time.Hour}, relay.ErrInvalidConfig},
		{"directory settings", relay.Config{Home: home, DirectoryAccountQuota: 4 << 20, DirectoryExpiry: 90 * 24 * time.Hour}, nil},
		{"zero mailbox streams", relay.Config{Home: home, Limits: func() relay.Limits {
			l := relay.OperatorLimits()
			l.Mailbox.Streams = 0
			return l
		}()}, relay.ErrInvalidConfig},
		{"per-peer memory over the total", relay.Config{Home: home, Limits: func() relay.Limits {
			l := relay.OperatorLimits()
			l.Directory.MemoryPerPeer = l.Directory.Memory + 1
			return l
		}()}, relay.ErrInvalidConfig},
		{"unlimited circuits", relay.Config{Home: home, Resources: func() relayv2.Resources {
			r := relay.OperatorResources()
			r.Limit = nil
			return r
		}()}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := relay.New(tt.cfg)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("New: %v, want %v", err, tt.want)
			}
		})
	}
}

// OperatorResources must be more generous than the library's defaults
// where the operator profile says so, and never stricter.
func TestOperatorResources(t *testing.T) {
	op, def := relay.OperatorResources(), relayv2.DefaultResources()
	if op.Limit == nil || def.Limit == nil {
		t.Fatal("limits must be set")
	}
	more := []struct {
		name    string
		op, def int64
	}{
		{"MaxReservations", int64(op.MaxReservations), int64(def.MaxReservations)},
		{"MaxCircuits", int64(op.MaxCircuits), int64(def.MaxCircuits)},
		{"Limit.Duration", int64(op.Limit.Duration), int64(def.Limit.Duration)},
		{"Limit.Data", op.Limit.Data, def.Limit.Data},
		{"BufferSize", int64(op.BufferSize), int64(def.BufferSize)},
		{"MaxReservationsPerIP", int64(op.MaxReservationsPerIP), int64(def.MaxReservationsPerIP)},
		{"MaxReservationsPerASN", int64(op.MaxReservationsPerASN), int64(def.MaxReservationsPerASN)},
	}
	for _, m := range more {
		if m.op <= m.def {
			t.Errorf("%s = %d, want more than the library's %d", m.name, m.op, m.def)
		}
	}
	if op.ReservationTTL != def.ReservationTTL {
		t.Errorf("ReservationTTL %v; want the library's %v", op.ReservationTTL, def.ReservationTTL)
	}
	// Each call returns its own Limit, so a caller may edit it.
	op.Limit.Data = 1
	if relay.OperatorResources().Limit.Data == 1 {
		t.Error("OperatorResources shares its Limit between calls")
	}
}

// A listen address that cannot be bound fails Run with an error naming
// it, and everything started before is stopped: the home can be used
// again at once.
func TestRunListenFailure(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port

	home := initHome(t)
	bad := "/ip4/127.0.0.1/tcp/" + strconv.Itoa(port)
	r, err := relay.New(relay.Config{Home: home, Listen: []string{"/ip4/127.0.0.1/tcp/0", bad}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	err = r.Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("Run: %v, want an error naming %s", err, bad)
	}
	select {
	case <-r.Ready():
		t.Fatal("Ready closed by a failed Run")
	default:
	}

	r2, err := relay.New(relay.Config{Home: home, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := runRelay(t, r2)(); err != nil {
		t.Fatal(err)
	}
}

// An unspecified listen address is written out as one address per
// interface, loopback included (and last), with the bound port.
func TestRunUnspecifiedListen(t *testing.T) {
	home := initHome(t)
	r := relaytest.Start(t, relay.Config{Home: home, Listen: []string{"/ip4/0.0.0.0/tcp/0"}})
	lines := readAddrsFile(t, home)
	var loopback bool
	for _, l := range lines {
		if strings.Contains(l, "/ip4/0.0.0.0/") || strings.Contains(l, "/tcp/0/") || !strings.HasSuffix(l, "/p2p/"+r.ID().String()) {
			t.Errorf("address %q: want an interface address with its port and /p2p/%s", l, r.ID())
		}
		isLoopback := strings.HasPrefix(l, "/ip4/127.")
		if loopback && !isLoopback {
			t.Errorf("addresses %q: loopback before %s", lines, l)
		}
		loopback = loopback || isLoopback
	}
	if !loopback {
		t.Errorf("addresses %q lack the loopback interface", lines)
	}
	if info := relaytest.AddrInfo(t, r); info.ID != r.ID() || len(info.Addrs) != len(lines) {
		t.Errorf("relaytest.AddrInfo = %v, want %s with %d addresses", info, r.ID(), len(lines))
	}
}

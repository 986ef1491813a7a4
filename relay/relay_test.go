package relay_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/host/autonat"
	"github.com/libp2p/go-libp2p/p2p/protocol/autonatv2"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	circuit "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/goleak"

	"github.com/peergram/peergram/relay"
	"github.com/peergram/peergram/relay/blobs"
	"github.com/peergram/peergram/relay/directory"
	"github.com/peergram/peergram/relay/history"
	"github.com/peergram/peergram/relay/mailbox"
)

const testTimeout = 30 * time.Second

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// initHome returns an initialised relay home in a temporary directory.
func initHome(t *testing.T) string {
	t.Helper()
	home := filepath.Join(t.TempDir(), "relay")
	if err := relay.Init(home); err != nil {
		t.Fatal(err)
	}
	return home
}

// clientHost is a plain libp2p host on loopback TCP, as a Peergram node
// would be minus its own services.
func clientHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.DisableMetrics(),
		libp2p.EnableRelay(),
	)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// runRelay starts r.Run in a goroutine and waits until it is ready.
// The returned function cancels it and returns Run's result.
func runRelay(t *testing.T, r *relay.Relay) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case <-r.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	case <-time.After(testTimeout):
		cancel()
		t.Fatal("relay not ready")
	}
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(testTimeout):
			t.Fatal("Run did not return after cancel")
			return nil
		}
	}
}

func TestRelayEndToEnd(t *testing.T) {
	// Goroutines alive now (other tests' leftovers, package-level workers
	// started at init) are not this test's.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	home := initHome(t)
	r, err := relay.New(relay.Config{
		Home:        home,
		Listen:      []string{"/ip4/127.0.0.1/tcp/0"},
		MetricsAddr: "127.0.0.1:0",
		Logger:      testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runRelay(t, r)
	stopped := false
	defer func() {
		if !stopped {
			_ = stop()
		}
	}()

	// The addrs file lists the addresses Addrs reports, each ending in
	// the relay's /p2p component, on the loopback listen address.
	lines := readAddrsFile(t, home)
	var want []string
	for _, a := range r.Addrs() {
		want = append(want, a.String())
	}
	if !slices.Equal(lines, want) || len(lines) != 1 {
		t.Fatalf("addrs file %q, Addrs() %q: want the same single address", lines, want)
	}
	if !strings.HasPrefix(lines[0], "/ip4/127.0.0.1/tcp/") || !strings.HasSuffix(lines[0], "/p2p/"+r.ID().String()) {
		t.Fatalf("address %q: want /ip4/127.0.0.1/tcp/<port>/p2p/%s", lines[0], r.ID())
	}
	relayInfo, err := peer.AddrInfoFromString(lines[0])
	if err != nil {
		t.Fatal(err)
	}

	if err := r.Run(context.Background()); !errors.Is(err, relay.ErrAlreadyRunning) {
		t.Errorf("second Run on a running relay: %v, want ErrAlreadyRunning", err)
	}

	t.Run("circuit", func(t *testing.T) { testCircuit(t, *relayInfo) })
	t.Run("protocols", func(t *testing.T) { testProtocols(t, *relayInfo) })
	t.Run("metrics", func(t *testing.T) { testMetrics(t, r) })
	t.Run("second relay on the same home", func(t *testing.T) {
		r2, err := relay.New(relay.Config{Home: home, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		err = r2.Run(context.Background())
		if !errors.Is(err, relay.ErrLocked) {
			t.Fatalf("Run: %v, want ErrLocked", err)
		}
		if !strings.Contains(err.Error(), "another relay is already running") || !strings.Contains(err.Error(), home) {
			t.Errorf("error %q does not say another relay runs on %s", err, home)
		}
		// The failed relay must not have removed the running one's file.
		if got := readAddrsFile(t, home); !slices.Equal(got, lines) {
			t.Errorf("addrs file after the failed second relay: %q, want %q", got, lines)
		}
	})

	stopped = true
	if err := stop(); err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	if r.Addrs() != nil || r.MetricsAddr() != "" {
		t.Errorf("after Run: Addrs %v, MetricsAddr %q; want none", r.Addrs(), r.MetricsAddr())
	}
	if _, err := os.Stat(filepath.Join(home, relay.AddrsFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("addrs file after a clean stop: %v, want it removed", err)
	}
}

func readAddrsFile(t *testing.T, home string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(home, relay.AddrsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

const echoProto = "/peergram/test/echo/1.0.0"

// testCircuit has host B reserve a slot on the relay and host A reach B
// through it, then exchange bytes over the relayed connection.
func testCircuit(t *testing.T, relayInfo peer.AddrInfo) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	a, b := clientHost(t), clientHost(t)
	defer a.Close()
	defer b.Close()
	b.SetStreamHandler(echoProto, func(s network.Stream) {
		defer s.Close()
		_, _ = io.Copy(s, s)
	})

	if err := b.Connect(ctx, relayInfo); err != nil {
		t.Fatalf("B connect to relay: %v", err)
	}
	rsvp, err := client.Reserve(ctx, b, relayInfo)
	if err != nil {
		t.Fatalf("reserve: %v", err)
	}
	want := relay.OperatorResources()
	if rsvp.LimitDuration != want.Limit.Duration || rsvp.LimitData != uint64(want.Limit.Data) {
		t.Errorf("reservation limits %v / %d bytes, want the operator's %v / %d",
			rsvp.LimitDuration, rsvp.LimitData, want.Limit.Duration, want.Limit.Data)
	}
	if time.Until(rsvp.Expiration) < 50*time.Minute {
		t.Errorf("reservation expires at %v, want about an hour from now", rsvp.Expiration)
	}

	circuitAddr, err := ma.NewMultiaddr(relayInfo.Addrs[0].String() + "/p2p/" + relayInfo.ID.String() + "/p2p-circuit")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(ctx, relayInfo); err != nil {
		t.Fatalf("A connect to relay: %v", err)
	}
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: []ma.Multiaddr{circuitAddr}}); err != nil {
		t.Fatalf("A connect to B through the relay: %v", err)
	}
	s, err := a.NewStream(network.WithAllowLimitedConn(ctx, "test"), b.ID(), echoProto)
	if err != nil {
		t.Fatalf("stream over the circuit: %v", err)
	}
	defer s.Close()
	if !s.Conn().Stat().Limited {
		t.Errorf("connection to B is not a limited (relayed) one: %v", s.Conn().RemoteMultiaddr())
	}
	if _, err := s.Conn().RemoteMultiaddr().ValueForProtocol(ma.P_CIRCUIT); err != nil {
		t.Errorf("remote address %v is not a circuit address", s.Conn().RemoteMultiaddr())
	}
	msg := []byte("sealed envelope bytes")
	if _, err := s.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = s.SetReadDeadline(time.Now().Add(testTimeout))
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(msg) {
		t.Fatalf("echo over the circuit: %q, want %q", got, msg)
	}
}

// testProtocols checks that the relay announces Peergram's protocols and
// the libp2p services it runs (identify tells a client what a peer speaks).
func testProtocols(t *testing.T, relayInfo peer.AddrInfo) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c := clientHost(t)
	defer c.Close()
	if err := c.Connect(ctx, relayInfo); err != nil {
		t.Fatal(err)
	}
	want := []protocol.ID{
		mailbox.ProtocolID,
		directory.ProtocolID,
		history.ProtocolID,
		blobs.ProtocolID,
		circuit.ProtoIDv2Hop,
		autonat.AutoNATProto,
		autonatv2.DialProtocol,
	}
	var got []protocol.ID
	for ctx.Err() == nil {
		got, _ = c.Peerstore().SupportsProtocols(relayInfo.ID, want...)
		if len(got) == len(want) {
			return
		}
		time.Sleep(20 * time.Millisecond) // identify runs right after the connection
	}
	t.Fatalf("relay announces %v of %v", got, want)
}

func testMetrics(t *testing.T, r *relay.Relay) {
	hc := &http.Client{Transport: &http.Transport{}, Timeout: testTimeout}
	defer hc.CloseIdleConnections()
	base := "http://" + r.MetricsAddr()

	get := func(path string) (int, string, string) {
		t.Helper()
		resp, err := hc.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}

	code, _, body := get("/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: status %d", code)
	}
	for _, name := range []string{
		"go_goroutines",              // Go collector
		"process_start_time_seconds", // process collector
		"libp2p_relaysvc_status",     // circuit relay service
		"libp2p_rcmgr_",              // resource manager
		"promhttp_metric_handler_requests_total",
		"peergram_mailbox_",          // mailbox server
		"peergram_directory_",        // directory server
		"peergram_blob_stored_bytes", // blob store
		`peergram_relay_streams{dir="inbound",name="/peergram/mailbox/1.0.0",scope="protocol"}`,
		`peergram_relay_streams{dir="inbound",name="",scope="transient"}`,
		"libp2p_eventbus_subscriber_queue_length", // its labels name source files
	} {
		if !strings.Contains(body, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	checkNoBuildPaths(t, body)

	code, ctype, body := get("/healthz")
	if code != http.StatusOK || ctype != "application/json" {
		t.Fatalf("/healthz: status %d, content type %q", code, ctype)
	}
	var h relay.Health
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatalf("/healthz body %q: %v", body, err)
	}
	var want []string
	for _, a := range r.Addrs() {
		want = append(want, a.String())
	}
	if h.Status != "ok" || h.PeerID != r.ID().String() || !slices.Equal(h.Addrs, want) {
		t.Errorf("/healthz = %+v, want ok, %s, %v", h, r.ID(), want)
	}

	if code, _, _ := get("/nope"); code != http.StatusNotFound {
		t.Errorf("/nope: status %d, want 404", code)
	}
}

// labelValue matches one label value of the text exposition format.
var labelValue = regexp.MustCompile(`="((?:[^"\\]|\\.)*)"`)

// checkNoBuildPaths fails if a label value of the exposition body names a
// directory of the machine that built or runs the relay: GOROOT, the
// module cache, this module's directory, the user's home, or any absolute
// path to a Go source file.
func checkNoBuildPaths(t *testing.T, body string) {
	t.Helper()
	var dirs []string
	if out, err := exec.Command("go", "env", "GOROOT", "GOMODCACHE").Output(); err == nil {
		dirs = append(dirs, strings.Fields(string(out))...)
	}
	if wd, err := os.Getwd(); err == nil {
		dirs = append(dirs, filepath.Dir(wd))
	}
	if home, err := os.UserHomeDir(); err == nil && home != "/" {
		dirs = append(dirs, home)
	}
	absSource := regexp.MustCompile(`^(/|[A-Za-z]:\\).*\.go\b`)
	for line := range strings.Lines(body) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		for _, m := range labelValue.FindAllStringSubmatch(line, -1) {
			v := m[1]
			if absSource.MatchString(v) {
				t.Errorf("label value %q is a path to a source file: %s", v, line)
			}
			for _, d := range dirs {
				if d != "" && strings.Contains(v, d) {
					t.Errorf("label value %q contains the build path %s: %s", v, d, line)
				}
			}
		}
	}
}

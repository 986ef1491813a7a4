package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/peergram/peergram/node/localapi"
	"github.com/peergram/peergram/node/localapi/localapitest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testToken = "cli-test-token-0123456789abcdef"

// cli runs commands in-process against a home directory; node calls are
// fakes unless a test sets them.
type cli struct {
	t    *testing.T
	home string
	env  map[string]string
	in   string

	initNode func(home, name string) (nodeInfo, error)
	runNode  func(ctx context.Context, cfg daemonConfig) error
	stops    []func() // stop the fake daemon
}

func newCLI(t *testing.T) *cli {
	home := t.TempDir()
	writeFile(t, filepath.Join(home, "identity.json"), `{"account_id":"acct-self","link":"peergram://acct-self","peer_id":"12D3KooWSelf","name":"me","device_id":"dev"}`)
	return &cli{
		t:    t,
		home: home,
		env:  map[string]string{},
		initNode: func(string, string) (nodeInfo, error) {
			return nodeInfo{}, errors.New("initNode not expected")
		},
		runNode: func(context.Context, daemonConfig) error { return errors.New("runNode not expected") },
	}
}

// run runs the peergram command line; --home is the test home unless args
// name one.
func (c *cli) run(args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	var out, errb bytes.Buffer
	code = c.app(&out, &errb).run(context.Background(), args)
	return out.String(), errb.String(), code
}

func (c *cli) app(stdout, stderr io.Writer) *app {
	return &app{
		stdin:    strings.NewReader(c.in),
		stdout:   stdout,
		stderr:   stderr,
		getenv:   func(k string) string { return c.env[k] },
		userHome: func() (string, error) { return "/home/test", nil },
		initNode: c.initNode,
		runNode:  c.runNode,
	}
}

// ok runs args with --home and fails the test on a non-zero exit.
func (c *cli) ok(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(append(args, "--home", c.home)...)
	if code != 0 {
		c.t.Fatalf("peergram %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// fail runs args with --home and returns stderr, failing the test on exit 0.
func (c *cli) fail(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(append(args, "--home", c.home)...)
	if code == 0 {
		c.t.Fatalf("peergram %s succeeded: %s", strings.Join(args, " "), out)
	}
	return errOut
}

// startDaemon serves a fake backend and writes DIR/api and DIR/token as a
// daemon would.
func (c *cli) startDaemon() *localapitest.Backend {
	c.t.Helper()
	b := localapitest.New(localapi.Identity{
		AccountID: "acct-self",
		Link:      "peergram://acct-self",
		PeerID:    "12D3KooWSelf",
		Addrs:     []string{"/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWSelf", "/ip6/::1/tcp/4001/p2p/12D3KooWSelf"},
		Name:      "me",
	})
	s, err := localapi.New(localapi.Config{Backend: b, Token: testToken})
	if err != nil {
		c.t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	c.t.Cleanup(srv.Close)
	c.stops = append(c.stops, srv.Close)
	// Like the daemon: the API on a Unix socket in the home, which the CLI
	// uses, and its TCP address in DIR/api.
	ln, err := net.Listen("unix", filepath.Join(c.home, "api.sock"))
	if err != nil {
		c.t.Fatal(err)
	}
	usrv := &http.Server{Handler: s.Handler()}
	go usrv.Serve(ln)
	c.t.Cleanup(func() { usrv.Close() })
	c.stops = append(c.stops, func() { usrv.Close() })
	writeFile(c.t, filepath.Join(c.home, "api"), srv.URL+"\n")
	writeFile(c.t, filepath.Join(c.home, "token"), testToken+"\n")
	return b
}

// stopDaemon stops what startDaemon started, as a daemon exit would.
func (c *cli) stopDaemon() {
	for _, stop := range c.stops {
		stop()
	}
	c.stops = nil
	os.Remove(filepath.Join(c.home, "api"))
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func matches(s, re string) bool { return regexp.MustCompile(re).MatchString(s) }

// notifyWriter collects output and signals each write.
type notifyWriter struct {
	mu    sync.Mutex // guards buf
	buf   bytes.Buffer
	wrote chan struct{}
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	select {
	case w.wrote <- struct{}{}:
	default:
	}
	return n, err
}

func (w *notifyWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// within waits for ch or fails the test.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	panic("unreachable")
}

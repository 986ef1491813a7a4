package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// marker is sent in every message; it must never show up in relay files.
const marker = "PEERGRAM-MARKER-7f3a9c"

type env struct {
	t    *testing.T
	bin  string
	root string
}

func build(t *testing.T) *env {
	t.Helper()
	readSources(t)
	root := t.TempDir()
	bin := filepath.Join(root, "bin")
	cmd := exec.Command("go", "build", "-o", bin+"/", "github.com/peergram/peergram/cmd/peergram", "github.com/peergram/peergram/cmd/peergram-relay")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("build binaries: %v", err)
	}
	return &env{t: t, bin: bin, root: root}
}

// readSources reads every Go file of the module. The binaries are built
// with `go build` inside the test, so without this go test's result cache
// (which tracks the files a test opens) would replay an old pass after the
// code changed.
func readSources(t *testing.T) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	root := strings.TrimSpace(string(out))
	n := 0
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".go") || d.Name() == "go.mod" || d.Name() == "go.sum") {
			if _, err := os.ReadFile(path); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil || n < 50 {
		t.Fatalf("reading module sources under %s: %d files, %v", root, n, err)
	}
}

func (e *env) run(name string, args ...string) (string, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(e.bin, name), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func (e *env) must(name string, args ...string) string {
	e.t.Helper()
	out, err := e.run(name, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// proc is a background daemon.
type proc struct {
	cmd    *exec.Cmd
	done   chan error
	exited chan struct{} // closed once Wait returned
	log    *bytes.Buffer
}

func (e *env) start(name string, args ...string) *proc {
	e.t.Helper()
	cmd := exec.Command(filepath.Join(e.bin, name), args...)
	log := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan error, 1), exited: make(chan struct{}), log: log}
	go func() {
		err := cmd.Wait()
		close(p.exited)
		p.done <- err
	}()
	e.t.Cleanup(func() { p.kill(syscall.SIGKILL) })
	return p
}

func (p *proc) kill(sig syscall.Signal) {
	select {
	case <-p.exited: // (not ProcessState: Wait writes it on another goroutine)
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func waitFile(t *testing.T, path string, p *proc) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) > 0 {
			return string(b)
		}
		select {
		case err := <-p.done:
			t.Fatalf("process exited (%v) before writing %s:\n%s", err, path, p.log)
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("%s not written in time:\n%s", path, p.log)
	return ""
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type message struct {
	ID     string `json:"id"`
	From   string `json:"from"`
	Text   string `json:"text"`
	SentAt string `json:"sent_at"`
	Status string `json:"status"`
}

func (e *env) messages(home, contact string) []message {
	e.t.Helper()
	out := e.must("peergram", "messages", "--home", home, contact, "--json")
	var ms []message
	if err := json.Unmarshal([]byte(out), &ms); err != nil {
		e.t.Fatalf("messages --json: %v: %s", err, out)
	}
	return ms
}

func eventually(t *testing.T, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s: %v", what, err)
}

// checkChat verifies that want arrived exactly once each, in order.
func checkChat(got []message, prefix string, want []string) error {
	var texts []string
	seen := map[string]int{}
	for _, m := range got {
		if strings.HasPrefix(m.Text, prefix) {
			texts = append(texts, m.Text)
			seen[m.Text]++
		}
	}
	for text, n := range seen {
		if n > 1 {
			return fmt.Errorf("FATAL: %q shown %d times", text, n)
		}
	}
	if len(texts) != len(want) {
		return fmt.Errorf("%d of %d messages", len(texts), len(want))
	}
	for i := range want {
		if texts[i] != want[i] {
			return fmt.Errorf("FATAL: position %d is %q, want %q", i, texts[i], want[i])
		}
	}
	return nil
}

// cluster is a relay and the initialised homes of Alice and Bob, run as
// the built binaries.
type cluster struct {
	t                            *testing.T
	e                            *env
	relayHome, listen, relayAddr string
	metrics                      string // the relay's metrics address
	relay                        *proc
	alice, bob                   string // homes
}

// newCluster initialises a relay home and two node homes and starts the
// relay.
func newCluster(t *testing.T, e *env) *cluster {
	c := &cluster{t: t, e: e, relayHome: filepath.Join(e.root, "relay"), listen: fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(t))}
	e.must("peergram-relay", "init", "--home", c.relayHome)
	c.relay = c.startRelay()
	c.relayAddr = strings.Fields(waitFile(t, filepath.Join(c.relayHome, "addrs"), c.relay))[0]
	c.alice, c.bob = filepath.Join(e.root, "alice"), filepath.Join(e.root, "bob")
	e.must("peergram", "init", "--home", c.alice, "--name", "alice")
	e.must("peergram", "init", "--home", c.bob, "--name", "bob")
	return c
}

// startRelay (re)starts the relay on its fixed listen address.
func (c *cluster) startRelay() *proc {
	os.Remove(filepath.Join(c.relayHome, "addrs"))
	c.metrics = fmt.Sprintf("127.0.0.1:%d", freePort(c.t))
	p := c.e.start("peergram-relay", "run", "--home", c.relayHome, "--listen", c.listen, "--metrics", c.metrics, "--sfu-loopback")
	waitFile(c.t, filepath.Join(c.relayHome, "addrs"), p)
	return p
}

// startDaemon starts the daemon of home (with extra flags) and waits for
// its API.
func (c *cluster) startDaemon(home string, extra ...string) *proc {
	os.Remove(filepath.Join(home, "api"))
	p := c.e.start("peergram", append([]string{"daemon", "--home", home, "--listen", "/ip4/127.0.0.1/tcp/0", "--relay", c.relayAddr}, extra...)...)
	waitFile(c.t, filepath.Join(home, "api"), p)
	return p
}

// addContacts makes Alice and Bob contacts of each other (both daemons
// running), once each other's keys are in the directory.
func (c *cluster) addContacts() {
	e := c.e
	aliceID := strings.TrimSpace(strings.SplitN(e.must("peergram", "id", "--home", c.alice), "\n", 2)[0])
	bobID := strings.TrimSpace(strings.SplitN(e.must("peergram", "id", "--home", c.bob), "\n", 2)[0])
	eventually(c.t, "contacts with keys", 30*time.Second, func() error {
		if _, err := e.run("peergram", "contacts", "add", "--home", c.alice, bobID, "--name", "bob"); err != nil {
			return err
		}
		_, err := e.run("peergram", "contacts", "add", "--home", c.bob, aliceID, "--name", "alice")
		return err
	})
}

func TestTwoPeopleOneRelay(t *testing.T) {
	e := build(t)
	c := newCluster(t, e)
	relay, relayHome, alice, bob := c.relay, c.relayHome, c.alice, c.bob
	startRelay, startDaemon := c.startRelay, c.startDaemon
	aliceD, bobD := startDaemon(alice), startDaemon(bob)
	_ = aliceD

	// A second daemon on the same home refuses to start.
	if out, err := e.run("peergram", "daemon", "--home", alice, "--listen", "/ip4/127.0.0.1/tcp/0"); err == nil {
		t.Fatalf("second daemon started: %s", out)
	}
	c.addContacts()

	// Online exchange.
	e.must("peergram", "send", "--home", alice, "bob", "hello bob "+marker)
	e.must("peergram", "send", "--home", bob, "alice", "hello alice "+marker)
	eventually(t, "online exchange", 30*time.Second, func() error {
		if err := checkChat(e.messages(bob, "alice"), "hello bob", []string{"hello bob " + marker}); err != nil {
			return err
		}
		return checkChat(e.messages(alice, "bob"), "hello alice", []string{"hello alice " + marker})
	})

	// Bob offline: 100 messages wait in his mailbox; the relay restarts
	// between deposit and fetch.
	bobD.kill(syscall.SIGTERM)
	var want []string
	for i := range 100 {
		text := fmt.Sprintf("offline %03d %s", i, marker)
		want = append(want, text)
		e.must("peergram", "send", "--home", alice, "bob", text)
	}
	allStatus := func(home, contact, prefix string, ok ...string) error {
		for _, m := range e.messages(home, contact) {
			if strings.HasPrefix(m.Text, prefix) && !contains(ok, m.Status) {
				return fmt.Errorf("%q is %s", m.Text, m.Status)
			}
		}
		return nil
	}
	eventually(t, "deposits", 60*time.Second, func() error { return allStatus(alice, "bob", "offline", "sent") })
	relay.kill(syscall.SIGTERM)
	relay = startRelay()
	bobD = startDaemon(bob)
	eventually(t, "100 offline messages", 90*time.Second, func() error {
		err := checkChat(e.messages(bob, "alice"), "offline", want)
		if err != nil && strings.HasPrefix(err.Error(), "FATAL") {
			t.Fatal(err)
		}
		return err
	})
	eventually(t, "delivered receipts", 60*time.Second, func() error {
		return allStatus(alice, "bob", "offline", "delivered", "read")
	})

	// kill -9 the relay while Bob drains his mailbox, then start it again.
	bobD.kill(syscall.SIGTERM)
	var want2 []string
	for i := range 50 {
		text := fmt.Sprintf("crash %03d %s", i, marker)
		want2 = append(want2, text)
		e.must("peergram", "send", "--home", alice, "bob", text)
	}
	eventually(t, "deposits before crash", 60*time.Second, func() error { return allStatus(alice, "bob", "crash", "sent") })
	bobD = startDaemon(bob)
	defer bobD.kill(syscall.SIGTERM)
	relay.kill(syscall.SIGKILL)
	relay = startRelay()
	eventually(t, "messages after relay crash", 90*time.Second, func() error {
		err := checkChat(e.messages(bob, "alice"), "crash", want2)
		if err != nil && strings.HasPrefix(err.Error(), "FATAL") {
			t.Fatal(err)
		}
		return err
	})
	eventually(t, "delivered after crash", 60*time.Second, func() error {
		return allStatus(alice, "bob", "crash", "delivered", "read")
	})

	// The relay only ever held ciphertext.
	relay.kill(syscall.SIGTERM)
	assertNoPlaintext(t, relayHome)
}

// assertNoPlaintext fails if any file under dir holds message plaintext.
func assertNoPlaintext(t *testing.T, dir string) {
	t.Helper()
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(marker)) || bytes.Contains(b, []byte("offline 0")) || bytes.Contains(b, []byte("round 0")) {
			t.Errorf("relay file %s contains message plaintext", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

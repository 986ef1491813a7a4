package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStoreAndForwardSenderGone is store-and-forward as a user meets it:
// Bob is offline; Alice sends 200 messages, which are all deposited on
// the relay within seconds; Alice's daemon stops; Bob starts and receives
// all 200, once each, in order, from the relay alone. The second round
// restarts the relay between the deposits and Bob's start.
func TestStoreAndForwardSenderGone(t *testing.T) {
	e := build(t)
	relayHome := filepath.Join(e.root, "relay")
	e.must("peergram-relay", "init", "--home", relayHome)
	listen := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(t))
	startRelay := func() *proc {
		os.Remove(filepath.Join(relayHome, "addrs"))
		p := e.start("peergram-relay", "run", "--home", relayHome, "--listen", listen, "--metrics", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
		waitFile(t, filepath.Join(relayHome, "addrs"), p)
		return p
	}
	relay := startRelay()
	relayAddr := strings.Fields(waitFile(t, filepath.Join(relayHome, "addrs"), relay))[0]
	alice, bob := filepath.Join(e.root, "alice"), filepath.Join(e.root, "bob")
	e.must("peergram", "init", "--home", alice, "--name", "alice")
	e.must("peergram", "init", "--home", bob, "--name", "bob")
	startDaemon := func(home string) *proc {
		os.Remove(filepath.Join(home, "api"))
		p := e.start("peergram", "daemon", "--home", home, "--listen", "/ip4/127.0.0.1/tcp/0", "--relay", relayAddr)
		waitFile(t, filepath.Join(home, "api"), p)
		return p
	}
	aliceD, bobD := startDaemon(alice), startDaemon(bob)
	aliceID := strings.TrimSpace(strings.SplitN(e.must("peergram", "id", "--home", alice), "\n", 2)[0])
	bobID := strings.TrimSpace(strings.SplitN(e.must("peergram", "id", "--home", bob), "\n", 2)[0])
	eventually(t, "contacts with keys", 30*time.Second, func() error {
		if _, err := e.run("peergram", "contacts", "add", "--home", alice, bobID, "--name", "bob"); err != nil {
			return err
		}
		_, err := e.run("peergram", "contacts", "add", "--home", bob, aliceID, "--name", "alice")
		return err
	})
	e.must("peergram", "send", "--home", bob, "alice", "hello alice "+marker)
	eventually(t, "Bob's first message", 30*time.Second, func() error {
		return checkChat(e.messages(alice, "bob"), "hello alice", []string{"hello alice " + marker})
	})

	for round, restartRelay := range []bool{false, true} {
		bobD.kill(syscall.SIGTERM)
		if aliceD == nil {
			aliceD = startDaemon(alice)
		}
		prefix := fmt.Sprintf("round %d", round)
		var want []string
		start := time.Now()
		for i := range 200 {
			text := fmt.Sprintf("%s %03d %s", prefix, i, marker)
			want = append(want, text)
			e.must("peergram", "send", "--home", alice, "bob", text)
		}
		posted := time.Since(start)
		eventually(t, "all 200 deposited", 30*time.Second, func() error {
			for _, m := range e.messages(alice, "bob") {
				if strings.HasPrefix(m.Text, prefix) && m.Status != "sent" {
					return fmt.Errorf("%q is %s", m.Text, m.Status)
				}
			}
			return nil
		})
		t.Logf("%s: 200 posted in %v, all sent after %v", prefix, posted.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		aliceD.kill(syscall.SIGTERM)
		aliceD = nil
		if restartRelay {
			relay.kill(syscall.SIGTERM)
			relay = startRelay()
		}
		bobD = startDaemon(bob)
		eventually(t, "200 messages from the relay alone", 60*time.Second, func() error {
			err := checkChat(e.messages(bob, "alice"), prefix, want)
			if err != nil && strings.HasPrefix(err.Error(), "FATAL") {
				t.Fatal(err)
			}
			return err
		})
	}
	bobD.kill(syscall.SIGTERM)
	relay.kill(syscall.SIGTERM)
	assertNoPlaintext(t, relayHome)
}

package e2e

import (
	"fmt"
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
	c := newCluster(t, e)
	relay, relayHome, alice, bob := c.relay, c.relayHome, c.alice, c.bob
	startRelay, startDaemon := c.startRelay, c.startDaemon
	aliceD, bobD := startDaemon(alice), startDaemon(bob)
	c.addContacts()
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

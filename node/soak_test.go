package node

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peergram/peergram/node/chat"
)

// TestSoak is both directions at volume through two daemons and a relay,
// with the recipient offline for part of it: 5,000 messages each way are
// stored once each (none lost, none doubled), every one reaches delivered
// at its sender, and the ratchets are still in step afterwards.
func TestSoak(t *testing.T) {
	const perSide = 5000
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	logs := &syncBuffer{}
	logTo := func(name string) func(*Config) {
		return func(c *Config) {
			c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", name)
		}
	}
	alice := startNodeWith(t, aliceHome, logTo("alice"), relay.addr)
	bob := startNodeWith(t, bobHome, logTo("bob"), relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	post := func(n *testNode, to, prefix string, from, count int) {
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := from + w; i < from+count; i += 8 {
					if _, err := n.Send(ctx, to, fmt.Sprintf("%s %05d", prefix, i)); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	// Both online, both sending.
	var wg sync.WaitGroup
	wg.Go(func() { post(alice, "bob", "a2b", 0, perSide/2) })
	wg.Go(func() { post(bob, "alice", "b2a", 0, perSide/2) })
	wg.Wait()
	// Bob offline while Alice sends the rest; then back, sending his.
	bob.stop()
	post(alice, "bob", "a2b", perSide/2, perSide/2)
	bob = startNodeWith(t, bobHome, logTo("bob"), relay.addr)
	post(bob, "alice", "b2a", perSide/2, perSide/2)

	received := func(n *testNode, contact, prefix string) (map[string]int, error) {
		msgs, err := n.Messages(ctx, contact, false)
		if err != nil {
			return nil, err
		}
		got := map[string]int{}
		for _, m := range msgs {
			if !m.Outgoing && strings.HasPrefix(m.Text, prefix) {
				got[m.Text]++
			}
		}
		return got, nil
	}
	for _, side := range []struct {
		n               *testNode
		contact, prefix string
	}{{bob, "alice", "a2b"}, {alice, "bob", "b2a"}} {
		deadline := time.Now().Add(3 * time.Minute)
		for {
			got, err := received(side.n, side.contact, side.prefix)
			if err != nil {
				t.Fatal(err)
			}
			for text, c := range got {
				if c > 1 {
					t.Fatalf("%q stored %d times", text, c)
				}
			}
			if len(got) == perSide {
				break
			}
			if time.Now().After(deadline) {
				sender := alice
				if side.n == alice {
					sender = bob
				}
				st := map[chat.Status]int{}
				for _, m := range mustMessages(t, sender, strings.TrimPrefix(strings.TrimPrefix(side.prefix, "a2b"), "b2a")+map[string]string{"a2b": "bob", "b2a": "alice"}[side.prefix]) {
					if m.Outgoing {
						st[m.Status]++
					}
				}
				var attempts []int
				for _, j := range jobs(t, sender) {
					attempts = append(attempts, j.Attempts)
				}
				var missing []int
				for i := range perSide {
					if got[fmt.Sprintf("%s %05d", side.prefix, i)] == 0 {
						missing = append(missing, i)
					}
				}
				t.Logf("missing %v", missing)
				t.Logf("logs (info and up):\n%s", logs.String())
				t.Fatalf("%s has %d of %d %s messages; the sender's statuses %v, outbox %d jobs (attempts %v)", side.contact, len(got), perSide, side.prefix, st, len(attempts), attempts)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for _, side := range []struct {
		n       *testNode
		contact string
	}{{alice, "bob"}, {bob, "alice"}} {
		deadline := time.Now().Add(3 * time.Minute)
		for {
			msgs, err := side.n.Messages(ctx, side.contact, false)
			if err != nil {
				t.Fatal(err)
			}
			behind := 0
			for _, m := range msgs {
				if m.Outgoing && m.Status != chat.StatusDelivered && m.Status != chat.StatusRead {
					behind++
				}
			}
			if behind == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d messages to %s not delivered", behind, side.contact)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// The ratchets are in step: one more each way goes through.
	if _, err := alice.Send(ctx, "bob", "after the soak, to bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Send(ctx, "alice", "after the soak, to alice"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a message each way after the soak", func() (bool, error) {
		a, err := received(bob, "alice", "after the soak")
		if err != nil {
			return false, err
		}
		b, err := received(alice, "bob", "after the soak")
		return len(a) == 1 && len(b) == 1, err
	})
}

func mustMessages(t *testing.T, n *testNode, contact string) []chat.Message {
	t.Helper()
	msgs, err := n.Messages(context.Background(), contact, false)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// syncBuffer is a bytes.Buffer safe for concurrent writers (the nodes'
// loggers).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

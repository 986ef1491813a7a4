package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMessageRequest drives the real binaries through what a stranger's
// first message looks like: it waits as a request, shown with the
// stranger's own name and marked as not a contact; the stranger sees no
// delivered receipt until Bob accepts; Bob can rename and remove contacts.
func TestMessageRequest(t *testing.T) {
	e := build(t)
	relayHome := filepath.Join(e.root, "relay")
	e.must("peergram-relay", "init", "--home", relayHome)
	relay := e.start("peergram-relay", "run", "--home", relayHome, "--listen", "/ip4/127.0.0.1/tcp/0")
	defer relay.kill(syscall.SIGTERM)
	relayAddr := strings.Fields(waitFile(t, filepath.Join(relayHome, "addrs"), relay))[0]
	bob, carol := filepath.Join(e.root, "bob"), filepath.Join(e.root, "carol")
	e.must("peergram", "init", "--home", bob, "--name", "Bob")
	e.must("peergram", "init", "--home", carol, "--name", "Carol Stranger")
	for _, home := range []string{bob, carol} {
		p := e.start("peergram", "daemon", "--home", home, "--listen", "/ip4/127.0.0.1/tcp/0", "--relay", relayAddr)
		defer p.kill(syscall.SIGTERM)
	}
	e.must("peergram", "wait", "--home", bob)
	e.must("peergram", "wait", "--home", carol)
	bobID := strings.TrimSpace(strings.SplitN(e.must("peergram", "id", "--home", bob), "\n", 2)[0])
	carolID := strings.TrimSpace(strings.SplitN(e.must("peergram", "id", "--home", carol), "\n", 2)[0])

	// Carol adds Bob without a name: the alias is Bob's own name.
	if out := e.must("peergram", "contacts", "add", "--home", carol, bobID); !strings.Contains(out, "added Bob ") {
		t.Fatalf("contacts add without --name: %q", out)
	}
	if out, err := e.run("peergram", "send", "--home", carol, "Bob", "hi, we have not met", "--wait", "3s"); err == nil {
		t.Fatalf("a stranger's message was confirmed before Bob accepted it: %s", out)
	}
	var reqs []struct {
		AccountID string `json:"account_id"`
		Display   string `json:"display_name"`
	}
	eventually(t, "the request", 30*time.Second, func() error {
		out := e.must("peergram", "requests", "list", "--home", bob, "--json")
		if err := json.Unmarshal([]byte(out), &reqs); err != nil {
			return err
		}
		if len(reqs) != 1 || reqs[0].AccountID != carolID || reqs[0].Display != "Carol Stranger" {
			return fmt.Errorf("requests: %s", out)
		}
		return nil
	})
	if out := e.must("peergram", "contacts", "list", "--home", bob, "--json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("a stranger is in Bob's contacts: %s", out)
	}
	if out := e.must("peergram", "messages", "--home", bob, carolID); !strings.Contains(out, "Carol Stranger (not a contact)") || !strings.Contains(out, "hi, we have not met") {
		t.Fatalf("Bob's view of the request: %q", out)
	}
	for _, m := range e.messages(carol, "Bob") {
		if m.Status != "sent" {
			t.Fatalf("Carol's message is %s before Bob accepted", m.Status)
		}
	}
	e.must("peergram", "requests", "accept", "--home", bob, carolID)
	eventually(t, "the delivered receipt after accepting", 30*time.Second, func() error {
		for _, m := range e.messages(carol, "Bob") {
			if m.Status != "delivered" && m.Status != "read" {
				return fmt.Errorf("status %s", m.Status)
			}
		}
		return nil
	})
	e.must("peergram", "contacts", "rename", "--home", bob, "Carol Stranger", "carol")
	if out, err := e.run("peergram", "contacts", "add", "--home", bob, carolID, "--name", "someone else"); err == nil || !strings.Contains(err.Error(), "already a contact") {
		t.Fatalf("re-adding under another name: %v: %s", err, out)
	}
	e.must("peergram", "contacts", "remove", "--home", bob, "carol")
	if out := e.must("peergram", "contacts", "list", "--home", bob, "--json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("contacts after remove: %s", out)
	}
	if ms := e.messages(bob, carolID); len(ms) != 1 {
		t.Fatalf("the chat did not survive removing the contact: %+v", ms)
	}
}

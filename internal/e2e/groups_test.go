package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// groupInfo is what `peergram group info --json` prints.
type groupInfo struct {
	ID      string `json:"group_id"`
	Title   string `json:"title"`
	Members []struct {
		AccountID string `json:"account_id"`
		Name      string `json:"name"`
		Role      string `json:"role"`
	} `json:"members"`
}

// TestGroupCreateAndAdd drives the binaries: Alice creates a group and
// adds Bob; Bob's daemon holds the same group with Alice as owner; each
// posts, and each daemon shows both messages; neither the group's title
// nor a message is in any file of the relay's data directory.
func TestGroupCreateAndAdd(t *testing.T) {
	e := build(t)
	c := newCluster(t, e)
	aliceD, bobD := c.startDaemon(c.alice), c.startDaemon(c.bob)
	c.addContacts()
	title := "club " + marker
	out := e.must("peergram", "group", "create", "--home", c.alice, title)
	id := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	if len(id) != 64 {
		t.Fatalf("group create printed %q", out)
	}
	e.must("peergram", "group", "add", "--home", c.alice, id, "bob")
	var g groupInfo
	eventually(t, "the group at Bob", 30*time.Second, func() error {
		out, err := e.run("peergram", "group", "info", "--home", c.bob, id, "--json")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return json.Unmarshal([]byte(out), &g)
	})
	if g.ID != id || g.Title != title || len(g.Members) != 2 || g.Members[0].Role != "owner" || g.Members[0].Name != "alice" || g.Members[1].Role != "member" {
		t.Fatalf("Bob's group: %+v", g)
	}
	// Gossip needs a direct connection and a heartbeat: post until the
	// first message reaches Bob, then one from him.
	type gmsg struct {
		ID     string `json:"id"`
		From   string `json:"from"`
		Text   string `json:"text"`
		SentAt string `json:"sent_at"`
	}
	messages := func(home string) []gmsg {
		var ms []gmsg
		if err := json.Unmarshal([]byte(e.must("peergram", "group", "messages", "--home", home, id, "--json")), &ms); err != nil {
			t.Fatal(err)
		}
		return ms
	}
	has := func(ms []gmsg, prefix string) bool {
		for _, m := range ms {
			if strings.HasPrefix(m.Text, prefix) && m.ID != "" && m.From != "" && m.SentAt != "" {
				return true
			}
		}
		return false
	}
	sent := 0
	eventually(t, "a group message at Bob", 60*time.Second, func() error {
		if has(messages(c.bob), "from alice") {
			return nil
		}
		sent++
		e.must("peergram", "group", "send", "--home", c.alice, id, fmt.Sprintf("from alice %d %s", sent, marker))
		return fmt.Errorf("not yet")
	})
	t.Logf("%d posted before the first reached Bob (gossip keeps no history; relays will)", sent)
	e.must("peergram", "group", "send", "--home", c.bob, title, "from bob "+marker)
	eventually(t, "Bob's message at Alice", 30*time.Second, func() error {
		if !has(messages(c.alice), "from bob") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	aliceD.kill(syscall.SIGTERM)
	bobD.kill(syscall.SIGTERM)
	c.relay.kill(syscall.SIGTERM)
	assertNoPlaintext(t, c.relayHome)
}

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
// adds Bob; Bob's daemon holds the same group with Alice as owner; the
// group's title is in no file of the relay's data directory.
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
	aliceD.kill(syscall.SIGTERM)
	bobD.kill(syscall.SIGTERM)
	c.relay.kill(syscall.SIGTERM)
	assertNoPlaintext(t, c.relayHome)
}

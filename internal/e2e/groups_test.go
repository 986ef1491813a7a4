package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"os"
	"path/filepath"
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
	// One post is enough: gossip, or else the relay's history, brings it.
	e.must("peergram", "group", "send", "--home", c.alice, id, "from alice "+marker)
	eventually(t, "a group message at Bob", 30*time.Second, func() error {
		if has(messages(c.bob), "from alice") {
			return nil
		}
		return fmt.Errorf("not yet")
	})
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

// TestGroupThreeDaemons drives the binaries with a relay and three
// daemons. Carol is offline while Alice posts 50 messages and gets all
// 50 from the relay's history when she starts, once each and in order.
// Then Alice removes Carol: what Alice posts after that never shows at
// Carol and its text is in no file of Carol's home nor of the relay's;
// what Carol posts after that shows at nobody.
func TestGroupThreeDaemons(t *testing.T) {
	e := build(t)
	c := newCluster(t, e)
	carol := filepath.Join(e.root, "carol")
	e.must("peergram", "init", "--home", carol, "--name", "carol")
	aliceD, bobD, carolD := c.startDaemon(c.alice), c.startDaemon(c.bob), c.startDaemon(carol)
	ids := map[string]string{}
	for name, home := range map[string]string{"alice": c.alice, "bob": c.bob, "carol": carol} {
		ids[name] = strings.TrimSpace(strings.SplitN(e.must("peergram", "id", "--home", home), "\n", 2)[0])
	}
	homes := map[string]string{"alice": c.alice, "bob": c.bob, "carol": carol}
	// Everyone a contact of everyone (members know each other's devices).
	for a, ha := range homes {
		for b := range homes {
			if a == b {
				continue
			}
			eventually(t, a+" adds "+b, 30*time.Second, func() error {
				out, err := e.run("peergram", "contacts", "add", "--home", ha, ids[b], "--name", b)
				if err != nil {
					return fmt.Errorf("%v: %s", err, out)
				}
				return nil
			})
		}
	}
	title := "three " + marker
	id := strings.TrimSpace(strings.SplitN(e.must("peergram", "group", "create", "--home", c.alice, title), "\n", 2)[0])
	e.must("peergram", "group", "add", "--home", c.alice, id, "bob", "carol")
	for _, home := range []string{c.bob, carol} {
		eventually(t, "the group at "+filepath.Base(home), 30*time.Second, func() error {
			var g groupInfo
			out, err := e.run("peergram", "group", "info", "--home", home, id, "--json")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if err := json.Unmarshal([]byte(out), &g); err != nil {
				return err
			}
			if g.Title != title || len(g.Members) != 3 {
				return fmt.Errorf("group %+v", g)
			}
			return nil
		})
	}
	type gmsg struct {
		ID   string `json:"id"`
		From string `json:"from"`
		Text string `json:"text"`
	}
	texts := func(home string) []string {
		var ms []gmsg
		if err := json.Unmarshal([]byte(e.must("peergram", "group", "messages", "--home", home, id, "--json")), &ms); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range ms {
			out = append(out, m.Text)
		}
		return out
	}

	// Carol offline during 50 messages.
	carolD.kill(syscall.SIGTERM)
	var want []string
	for i := range 50 {
		text := fmt.Sprintf("while carol was away %02d %s", i, marker)
		e.must("peergram", "group", "send", "--home", c.alice, id, text)
		want = append(want, text)
	}
	carolD = c.startDaemon(carol)
	eventually(t, "all 50 at Carol", 60*time.Second, func() error {
		got := texts(carol)
		if len(got) < 50 {
			return fmt.Errorf("%d of 50", len(got))
		}
		return nil
	})
	if got := texts(carol); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("Carol holds %d messages: %q", len(got), got)
	}
	eventually(t, "all 50 at Bob", 60*time.Second, func() error {
		if got := texts(c.bob); len(got) != 50 {
			return fmt.Errorf("%d of 50", len(got))
		}
		return nil
	})

	// Carol removed.
	e.must("peergram", "group", "remove", "--home", c.alice, id, "carol")
	eventually(t, "Carol out at Bob and at Carol", 30*time.Second, func() error {
		for _, home := range []string{c.bob, carol} {
			var g groupInfo
			if err := json.Unmarshal([]byte(e.must("peergram", "group", "info", "--home", home, id, "--json")), &g); err != nil {
				return err
			}
			if len(g.Members) != 2 {
				return fmt.Errorf("%s sees %d members", filepath.Base(home), len(g.Members))
			}
		}
		return nil
	})
	const after = "PEERGRAM-AFTER-REMOVAL-4b1e"
	e.must("peergram", "group", "send", "--home", c.alice, id, "alice after "+after)
	if out, err := e.run("peergram", "group", "send", "--home", carol, id, "carol after removal"); err == nil {
		t.Logf("Carol's post after her removal was accepted locally: %s", out)
	}
	e.must("peergram", "group", "send", "--home", c.bob, id, "bob after")
	for _, home := range []string{c.alice, c.bob} {
		eventually(t, "the posts after the removal at "+filepath.Base(home), 30*time.Second, func() error {
			got := texts(home)
			if !contains(got, "alice after "+after) || !contains(got, "bob after") {
				return fmt.Errorf("not yet: %d messages", len(got))
			}
			return nil
		})
	}
	// A title set after the removal: sealed with the key that turned
	// when Carol left, so Bob reads it and the relay (which keeps the
	// log) and Carol do not.
	renamed := "renamed " + after
	if out := e.must("peergram", "group", "edit", "--home", c.alice, id, "--title", renamed, "--description", "about "+after); !strings.Contains(out, renamed) {
		t.Fatalf("group edit: %q", out)
	}
	eventually(t, "the new title at Bob", 30*time.Second, func() error {
		var g struct {
			Title       string `json:"title"`
			Description string `json:"description"`
		}
		if err := json.Unmarshal([]byte(e.must("peergram", "group", "info", "--home", c.bob, id, "--json")), &g); err != nil {
			return err
		}
		if g.Title != renamed || g.Description != "about "+after {
			return fmt.Errorf("Bob sees %q, %q", g.Title, g.Description)
		}
		return nil
	})
	// Alice sets the group's photo with the CLI; Bob's daemon fetches it
	// unasked, and Bob saves the same 480 × 480 JPEG Alice's shows.
	pic := filepath.Join(e.root, "group-photo.jpg")
	photo(t, pic)
	if out := e.must("peergram", "group", "photo", "--home", c.alice, id, pic); !strings.Contains(out, "photo: ") {
		t.Fatalf("group photo: %q", out)
	}
	alicePhoto := filepath.Join(e.root, "alice-photo.jpg")
	e.must("peergram", "group", "photo", "--home", c.alice, id, "--save", alicePhoto)
	bobPhoto := filepath.Join(e.root, "bob-photo.jpg")
	eventually(t, "the photo at Bob", 60*time.Second, func() error {
		if out := e.must("peergram", "group", "info", "--home", c.bob, id); !strings.Contains(out, "photo: ") {
			return fmt.Errorf("no photo in Bob's group info: %q", out)
		}
		_, err := e.run("peergram", "group", "photo", "--home", c.bob, id, "--save", bobPhoto)
		return err
	})
	a, errA := os.ReadFile(alicePhoto)
	b, errB := os.ReadFile(bobPhoto)
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		t.Fatalf("Bob's photo (%d bytes, %v) is not Alice's (%d bytes, %v)", len(b), errB, len(a), errA)
	}
	if img, err := jpeg.Decode(bytes.NewReader(b)); err != nil || img.Bounds().Dx() != 480 || img.Bounds().Dy() != 480 {
		t.Fatalf("Bob's photo: %v", err)
	}
	time.Sleep(2 * time.Second) // Carol's history loop and gossip have had their chance
	if out, err := e.run("peergram", "group", "info", "--home", carol, id); err == nil && strings.Contains(out, after) {
		t.Errorf("Carol reads the title set after her removal: %q", out)
	}
	for _, home := range []string{c.alice, c.bob, carol} {
		got := texts(home)
		if contains(got, "carol after removal") {
			t.Errorf("%s shows Carol's post after her removal", filepath.Base(home))
		}
		if home == carol && (contains(got, "alice after "+after) || contains(got, "bob after")) {
			t.Errorf("Carol shows a post sent after her removal")
		}
	}
	for _, p := range []*proc{aliceD, bobD, carolD, c.relay} {
		p.kill(syscall.SIGTERM)
	}
	for _, dir := range []string{carol, c.relayHome} {
		assertNoString(t, dir, after)
	}
	assertNoPlaintext(t, c.relayHome)
}

// assertNoString fails if any file under dir holds s.
func assertNoString(t *testing.T, dir, s string) {
	t.Helper()
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(s)) {
			t.Errorf("%s holds %q", path, s)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestChannelByLink drives the binaries: Alice creates a channel and an
// invite link; Bob, who is not her contact, joins by the link, reads her
// posts, cannot post himself; Alice makes the channel public and Carol
// joins by its name and reads its history; the channel's title and posts
// are in no file of the relay's.
func TestChannelByLink(t *testing.T) {
	e := build(t)
	c := newCluster(t, e)
	aliceD, bobD := c.startDaemon(c.alice), c.startDaemon(c.bob)
	title := "news " + marker
	id := strings.TrimSpace(strings.SplitN(e.must("peergram", "channel", "create", "--home", c.alice, title), "\n", 2)[0])
	if len(id) != 64 {
		t.Fatalf("channel create printed %q", id)
	}
	link := strings.TrimSpace(strings.SplitN(e.must("peergram", "channel", "invite", "--home", c.alice, id), "\n", 2)[0])
	if !strings.HasPrefix(link, "peergram://join/"+id+"/") {
		t.Fatalf("channel invite printed %q", link)
	}
	eventually(t, "Bob joins by the link", 60*time.Second, func() error {
		out, err := e.run("peergram", "channel", "join", "--home", c.bob, link)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		// The title comes after the log (from an admin's node): until
		// then the channel is named by its ID.
		if !strings.Contains(out, "joined "+title) && !strings.Contains(out, "joined group "+id) {
			t.Errorf("channel join printed %q", out)
		}
		return nil
	})
	type info struct {
		Title       string `json:"title"`
		Channel     bool   `json:"channel"`
		Subscribers int    `json:"subscribers"`
		Role        string `json:"role"`
	}
	eventually(t, "the channel at Bob, titled", 30*time.Second, func() error {
		var g info
		out, err := e.run("peergram", "channel", "info", "--home", c.bob, id, "--json")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if err := json.Unmarshal([]byte(out), &g); err != nil {
			return err
		}
		if !g.Channel || g.Title != title || g.Subscribers != 2 || g.Role != "member" {
			return fmt.Errorf("channel %+v", g)
		}
		return nil
	})
	e.must("peergram", "channel", "post", "--home", c.alice, id, "first post "+marker)
	eventually(t, "the post at Bob", 30*time.Second, func() error {
		var ms []struct {
			Text string `json:"text"`
		}
		if err := json.Unmarshal([]byte(e.must("peergram", "channel", "messages", "--home", c.bob, id, "--json")), &ms); err != nil {
			return err
		}
		if len(ms) != 1 || ms[0].Text != "first post "+marker {
			return fmt.Errorf("Bob holds %+v", ms)
		}
		return nil
	})
	if out, err := e.run("peergram", "channel", "post", "--home", c.bob, id, "a subscriber's post"); err == nil || !strings.Contains(err.Error(), "admins") {
		t.Errorf("a subscriber posts: %v: %s", err, out)
	}
	// A group is not a channel; two groups of one title are named by ID,
	// and the daemon's words say so.
	e.must("peergram", "group", "create", "--home", c.alice, "Twins")
	e.must("peergram", "group", "create", "--home", c.alice, "Twins")
	e.must("peergram", "group", "create", "--home", c.alice, "Readers")
	if out, err := e.run("peergram", "channel", "post", "--home", c.alice, "Readers", "x"); err == nil || !strings.Contains(err.Error(), "not a channel") {
		t.Errorf("channel post to a group: %v: %s", err, out)
	}
	if out, err := e.run("peergram", "group", "info", "--home", c.alice, "Twins"); err == nil || !strings.Contains(err.Error(), `2 groups are titled "Twins"`) {
		t.Errorf("group info of a shared title: %v: %s", err, out)
	}
	// Public: Carol finds it by name and reads its history from the start.
	if out := e.must("peergram", "channel", "publish", "--home", c.alice, id, "news_e2e"); !strings.Contains(out, "@news_e2e") {
		t.Errorf("channel publish printed %q", out)
	}
	carol := filepath.Join(e.root, "carol")
	e.must("peergram", "init", "--home", carol, "--name", "carol")
	carolD := c.startDaemon(carol)
	eventually(t, "Carol joins by name", 60*time.Second, func() error {
		out, err := e.run("peergram", "channel", "join", "--home", carol, "@news_e2e")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	eventually(t, "the first post at Carol", 30*time.Second, func() error {
		var ms []struct {
			Text string `json:"text"`
		}
		if err := json.Unmarshal([]byte(e.must("peergram", "channel", "messages", "--home", carol, id, "--json")), &ms); err != nil {
			return err
		}
		if len(ms) != 1 || ms[0].Text != "first post "+marker {
			return fmt.Errorf("Carol holds %+v", ms)
		}
		return nil
	})
	carolD.kill(syscall.SIGTERM)
	aliceD.kill(syscall.SIGTERM)
	bobD.kill(syscall.SIGTERM)
	c.relay.kill(syscall.SIGTERM)
	assertNoPlaintext(t, c.relayHome)
}

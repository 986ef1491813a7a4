package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peergram/peergram/node/chat"
)

func TestHomeResolution(t *testing.T) {
	tests := []struct {
		name string
		flag string
		env  string
		want string
	}{
		{"flag wins", "/flag/home", "/env/home", "/flag/home"},
		{"env", "", "/env/home", "/env/home"},
		{"default", "", "", "/home/test/.peergram"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCLI(t)
			c.env["PEERGRAM_HOME"] = tt.env
			var got string
			c.initNode = func(home, _ string) (nodeInfo, error) {
				got = home
				return nodeInfo{AccountID: "x"}, nil
			}
			args := []string{"init", "--name", "me"}
			if tt.flag != "" {
				args = append(args, "--home", tt.flag)
			}
			if _, errOut, code := c.run(args...); code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if got != tt.want {
				t.Errorf("home %q, want %q", got, tt.want)
			}
		})
	}
}

func TestInit(t *testing.T) {
	c := newCLI(t)
	c.initNode = func(home, name string) (nodeInfo, error) {
		if home != c.home || name != "Alice Doe" {
			t.Errorf("initNode(%q, %q)", home, name)
		}
		return nodeInfo{AccountID: "acct-new", Link: "peergram://acct-new", PeerID: "12D3"}, nil
	}
	if out := c.ok("init", "--name", "Alice Doe"); out != "acct-new\n" {
		t.Errorf("stdout %q, want the account ID alone", out)
	}
	if errOut := c.fail("init"); !strings.Contains(errOut, `"name" not set`) {
		t.Errorf("init without --name: %q", errOut)
	}
	c.initNode = func(string, string) (nodeInfo, error) {
		return nodeInfo{}, errors.New("node: home is already initialised")
	}
	if errOut := c.fail("init", "--name", "x"); errOut != "peergram: node: home is already initialised\n" {
		t.Errorf("stderr %q", errOut)
	}
}

func TestDaemonFlags(t *testing.T) {
	c := newCLI(t)
	var got daemonConfig
	c.runNode = func(ctx context.Context, cfg daemonConfig) error {
		got = cfg
		if ctx == nil || cfg.Logger == nil {
			t.Error("no context or logger")
		}
		return nil
	}
	c.ok("daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--listen", "/ip4/127.0.0.1/udp/0/quic-v1",
		"--api", "127.0.0.1:7777", "--relay", "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWR", "--log-level", "debug")
	want := daemonConfig{
		Home:    c.home,
		Listen:  []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		APIAddr: "127.0.0.1:7777",
		Relays:  []string{"/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWR"},
	}
	if got.Home != want.Home || got.APIAddr != want.APIAddr || strings.Join(got.Listen, ",") != strings.Join(want.Listen, ",") || strings.Join(got.Relays, ",") != strings.Join(want.Relays, ",") {
		t.Errorf("config %+v, want %+v", got, want)
	}
	c.runNode = func(context.Context, daemonConfig) error {
		return errors.New("node: another daemon is running on this home: " + c.home)
	}
	if errOut := c.fail("daemon"); !strings.Contains(errOut, "another daemon is running") {
		t.Errorf("stderr %q", errOut)
	}
	if errOut := c.fail("daemon", "--log-level", "loud"); !strings.Contains(errOut, "--log-level") {
		t.Errorf("stderr %q", errOut)
	}
}

func TestID(t *testing.T) {
	c := newCLI(t)
	// No daemon: addrs empty.
	lines := strings.Split(strings.TrimSpace(c.ok("id")), "\n")
	if len(lines) != 3 || lines[0] != "acct-self" || lines[1] != "peergram://acct-self" || lines[2] != "12D3KooWSelf" {
		t.Errorf("id = %q", lines)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(c.ok("id", "--json")), &got); err != nil {
		t.Fatal(err)
	}
	if got["account_id"] != "acct-self" || got["link"] != "peergram://acct-self" || got["peer_id"] != "12D3KooWSelf" {
		t.Errorf("id --json = %v", got)
	}
	if addrs, ok := got["addrs"].([]any); !ok || len(addrs) != 0 {
		t.Errorf("addrs = %#v, want []", got["addrs"])
	}

	// A stale DIR/api (nothing listening) still answers from the file.
	writeFile(t, filepath.Join(c.home, "api"), "http://"+closedAddr(t)+"\n")
	writeFile(t, filepath.Join(c.home, "token"), testToken)
	if out := c.ok("id"); strings.Count(out, "\n") != 3 {
		t.Errorf("id with stale api = %q", out)
	}

	// A running daemon adds its addresses.
	c.startDaemon()
	lines = strings.Split(strings.TrimSpace(c.ok("id")), "\n")
	if len(lines) != 5 || lines[0] != "acct-self" || lines[3] != "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWSelf" {
		t.Errorf("id = %q", lines)
	}
	var out idOutput
	if err := json.Unmarshal([]byte(c.ok("id", "--json")), &out); err != nil || len(out.Addrs) != 2 {
		t.Errorf("id --json = %+v, %v", out, err)
	}

	other := newCLI(t)
	other.home = t.TempDir()
	if errOut := other.fail("id"); !strings.Contains(errOut, "peergram init --home "+other.home) {
		t.Errorf("id without identity: %q", errOut)
	}
}

func TestDaemonNotRunning(t *testing.T) {
	c := newCLI(t)
	commands := [][]string{
		{"contacts", "list"},
		{"contacts", "add", "acct-bob"},
		{"send", "alice", "hi"},
		{"messages", "alice"},
		{"events"},
	}
	want := "peergram: daemon not running (no " + filepath.Join(c.home, "api.sock") + "; start it with 'peergram daemon --home " + c.home + "')\n"
	for _, args := range commands {
		if errOut := c.fail(args...); errOut != want {
			t.Errorf("%s: stderr %q, want %q", args, errOut, want)
		}
	}
	// A daemon killed with -9 leaves its socket behind: nothing answers.
	staleSocket(t, filepath.Join(c.home, "api.sock"))
	writeFile(t, filepath.Join(c.home, "token"), testToken)
	for _, args := range commands {
		errOut := c.fail(args...)
		if !strings.HasPrefix(errOut, "peergram: daemon not running (nothing answers at unix:") || !strings.Contains(errOut, "start it with 'peergram daemon --home "+c.home+"'") {
			t.Errorf("%s: stderr %q", args, errOut)
		}
	}
}

// staleSocket leaves a Unix socket file at path that nobody listens on.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
}

// TestTokenNotSentToSquatter is the attack of issue 6: after a daemon was
// killed with -9, DIR/api still names its old port, and another local user
// listens there. Before, the CLI sent the bearer token to whoever answered.
// Now the CLI talks to the socket in the home (which nobody else can
// create), and uses DIR/api only while a daemon holds the home's lock.
func TestTokenNotSentToSquatter(t *testing.T) {
	for _, withSocket := range []bool{true, false} {
		t.Run(map[bool]string{true: "stale socket", false: "no socket"}[withSocket], func(t *testing.T) {
			c := newCLI(t)
			var seen atomic.Int32
			squatter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != "" {
					seen.Add(1)
				}
				w.Write([]byte(`[]`))
			}))
			defer squatter.Close()
			writeFile(t, filepath.Join(c.home, "api"), squatter.URL+"\n")
			writeFile(t, filepath.Join(c.home, "token"), testToken)
			writeFile(t, filepath.Join(c.home, "daemon.lock"), "")
			if withSocket {
				staleSocket(t, filepath.Join(c.home, "api.sock"))
			}
			for _, args := range [][]string{{"contacts", "list"}, {"messages", "alice"}, {"events"}} {
				if errOut := c.fail(args...); !strings.Contains(errOut, "daemon not running") {
					t.Errorf("%s: stderr %q", args, errOut)
				}
			}
			if n := seen.Load(); n != 0 {
				t.Fatalf("the token was sent to the squatter %d times", n)
			}
		})
	}
}

func TestWrongToken(t *testing.T) {
	c := newCLI(t)
	c.startDaemon()
	writeFile(t, filepath.Join(c.home, "token"), "not-the-token-0123456789")
	if errOut := c.fail("contacts", "list"); !strings.Contains(errOut, "refused the token in "+filepath.Join(c.home, "token")) {
		t.Errorf("stderr %q", errOut)
	}
}

func TestChat(t *testing.T) {
	c := newCLI(t)
	b := c.startDaemon()

	if out, errOut, code := c.run("contacts", "list", "--home", c.home); code != 0 || out != "" || !strings.Contains(errOut, "no contacts") {
		t.Errorf("empty list: %q %q %d", out, errOut, code)
	}
	if out := c.ok("contacts", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("empty list --json: %q", out)
	}
	if out := c.ok("contacts", "add", "peergram://acct-alice", "--name", "alice"); !strings.HasPrefix(out, "added alice acct-alice\n") {
		t.Errorf("contacts add: %q", out)
	}
	c.ok("contacts", "add", "acct-bob")
	out := c.ok("contacts", "list")
	if !strings.Contains(out, "alice") || !strings.Contains(out, "acct-alice") || !strings.Contains(out, "acct-bob") {
		t.Errorf("contacts list: %q", out)
	}
	var cs []chat.Contact
	if err := json.Unmarshal([]byte(c.ok("contacts", "list", "--json")), &cs); err != nil || len(cs) != 2 || cs[0].Name != "alice" {
		t.Errorf("contacts list --json: %+v %v", cs, err)
	}
	if errOut := c.fail("contacts", "add", "not an id"); !strings.Contains(errOut, "invalid input") {
		t.Errorf("bad contact: %q", errOut)
	}

	id := strings.TrimSpace(c.ok("send", "alice", "hello alice"))
	if _, err := chat.ParseMessageID(id); err != nil {
		t.Errorf("send printed %q, want a message ID", id)
	}
	c.in = "from stdin\nsecond line\n"
	c.ok("send", "acct-alice", "-")
	c.in = ""
	if _, err := b.Receive("alice", "hi \x1b[2Jthere\u202e"); err != nil {
		t.Fatal(err)
	}

	var ms []chat.Message
	if err := json.Unmarshal([]byte(c.ok("messages", "alice", "--json", "--mark-read=false")), &ms); err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 || ms[0].ID != id || ms[0].Text != "hello alice" || ms[1].Text != "from stdin\nsecond line" || ms[2].Status != chat.StatusReceived {
		t.Fatalf("messages --json = %+v", ms)
	}
	if len(b.Marked()) != 0 {
		t.Errorf("--mark-read=false marked %v", b.Marked())
	}
	lines := strings.Split(strings.TrimSuffix(c.ok("messages", "alice"), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("messages = %q", lines)
	}
	for i, want := range []string{`you +pending +hello alice$`, `you +pending +from stdin\\nsecond line$`, `alice +received +hi \\x1b\[2Jthere\\u202e$`} {
		if !matches(lines[i], `^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +`+want) {
			t.Errorf("line %d = %q, want %s", i, lines[i], want)
		}
	}
	if len(b.Marked()) != 1 {
		t.Errorf("messages marked %v, want the incoming one", b.Marked())
	}

	for _, args := range [][]string{{"send", "carol", "hi"}, {"messages", "carol"}} {
		if errOut := c.fail(args...); !strings.HasPrefix(errOut, `peergram: unknown contact "carol"`) {
			t.Errorf("%s: %q", args, errOut)
		}
	}
	c.in = "\n"
	if errOut := c.fail("send", "alice", "-"); !strings.Contains(errOut, "empty message") {
		t.Errorf("empty stdin: %q", errOut)
	}
	if errOut := c.fail("send", "alice", strings.Repeat("x", 5000)); !strings.Contains(errOut, "too large") {
		t.Errorf("long text: %q", errOut)
	}
	if errOut := c.fail("send", "alice"); !strings.Contains(errOut, "usage: peergram send CONTACT TEXT") {
		t.Errorf("missing arg: %q", errOut)
	}
	b.FailWith(errors.New("disk on fire"))
	if errOut := c.fail("contacts", "list"); errOut != "peergram: internal error\n" {
		t.Errorf("internal: %q", errOut)
	}
}

func TestEventsCommand(t *testing.T) {
	c := newCLI(t)
	b := c.startDaemon()
	c.ok("contacts", "add", "acct-alice", "--name", "alice")
	out := &notifyWriter{wrote: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- c.app(out, io.Discard).run(ctx, []string{"events", "--home", c.home}) }()
	for deadline := time.Now().Add(10 * time.Second); b.Subscribers() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("events never subscribed")
		}
	}
	if _, err := b.Receive("alice", "ping"); err != nil {
		t.Fatal(err)
	}
	within(t, out.wrote, "an event line")
	// The daemon restarts (with a new token): the command reconnects.
	c.stopDaemon()
	b = c.startDaemon()
	if _, err := b.AddContact(ctx, "acct-alice", "alice"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); b.Subscribers() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("events never reconnected")
		}
	}
	if _, err := b.Receive("alice", "pong"); err != nil {
		t.Fatal(err)
	}
	within(t, out.wrote, "an event line after the restart")
	cancel()
	if code := within(t, done, "events to end"); code != 0 {
		t.Fatalf("events exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	for i, want := range []string{"ping", "pong"} {
		var ev chat.Event
		if i >= len(lines) {
			t.Fatalf("events printed %q", out.String())
		}
		if err := json.Unmarshal([]byte(lines[i]), &ev); err != nil || ev.Type != chat.EventMessage || ev.Message.Text != want {
			t.Errorf("event %d: %q (%v)", i, lines[i], err)
		}
	}
}

func TestContactsRenameRemoveRequests(t *testing.T) {
	c := newCLI(t)
	b := c.startDaemon()
	c.ok("contacts", "add", "acct-bob", "--name", "bob")
	c.ok("contacts", "add", "acct-carol", "--name", "carol")
	if errOut := c.fail("contacts", "add", "acct-bob", "--name", "robert"); !strings.Contains(errOut, "already a contact") {
		t.Errorf("re-add under another name: %q", errOut)
	}
	if out := c.ok("contacts", "rename", "bob", "robert"); !strings.Contains(out, "renamed acct-bob to robert") {
		t.Errorf("rename: %q", out)
	}
	if errOut := c.fail("contacts", "rename", "robert", "carol"); !strings.Contains(errOut, "taken") {
		t.Errorf("rename onto a taken name: %q", errOut)
	}
	c.ok("contacts", "remove", "carol")
	var cs []chat.Contact
	if err := json.Unmarshal([]byte(c.ok("contacts", "list", "--json")), &cs); err != nil || len(cs) != 1 || cs[0].Name != "robert" {
		t.Fatalf("contacts after rename and remove: %+v (%v)", cs, err)
	}
	if errOut := c.fail("contacts", "remove", "carol"); !strings.Contains(errOut, "unknown contact") {
		t.Errorf("remove twice: %q", errOut)
	}
	b.AddRequest("acct-stranger", "Stranger")
	b.AddRequest("acct-spam", "Spam")
	if out := c.ok("requests", "list"); !strings.Contains(out, "Stranger") || !strings.Contains(out, "acct-spam") {
		t.Errorf("requests list: %q", out)
	}
	c.ok("requests", "ignore", "acct-spam")
	if out := c.ok("requests", "accept", "acct-stranger", "--name", "friend"); !strings.Contains(out, "added friend acct-stranger") {
		t.Errorf("requests accept: %q", out)
	}
	var rs []chat.Contact
	if err := json.Unmarshal([]byte(c.ok("requests", "list", "--json")), &rs); err != nil || len(rs) != 0 {
		t.Fatalf("requests left: %+v (%v)", rs, err)
	}
}

func TestVersion(t *testing.T) {
	c := newCLI(t)
	if out := c.ok("version"); !strings.HasPrefix(out, "peergram ") || !strings.Contains(out, "go1.") {
		t.Errorf("version = %q", out)
	}
}

func TestClean(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain text, ünïcode 😀 中文", "plain text, ünïcode 😀 中文"},
		{"a\nb\tc\r", `a\nb\tc\r`},
		{"\x1b[31mred\x07", `\x1b[31mred\x07`},
		{"\u202egnp.exe", `\u202egnp.exe`},
		{"\u0085next", `\u0085next`},
		{"bad \xff utf8", "bad \ufffd utf8"},
	}
	for _, tt := range tests {
		if got := clean(tt.in); got != tt.want {
			t.Errorf("clean(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestCompletion(t *testing.T) {
	c := newCLI(t)
	c.startDaemon()
	c.ok("contacts", "add", "acct-alice", "--name", "alice")
	out, _, code := c.run("__complete", "send", "--home", c.home, "")
	if code != 0 || !strings.HasPrefix(out, "alice\tacct-alice\n") {
		t.Errorf("complete send: %q (exit %d)", out, code)
	}
	if out := c.ok("completion", "bash"); !strings.Contains(out, "__start_peergram") {
		t.Errorf("completion bash: %.100q", out)
	}
}

// TestChannelCommands drives channel create|post|messages|info|list|
// invite|join|forward against the fake daemon.
func TestChannelCommands(t *testing.T) {
	c := newCLI(t)
	c.startDaemon()
	if out := c.ok("channel", "list"); !strings.Contains(out, "no channels yet") {
		t.Errorf("empty list: %q", out)
	}
	out := c.ok("channel", "create", "News")
	id := strings.SplitN(out, "\n", 2)[0]
	if len(id) != 64 || !strings.Contains(out, "created channel News") {
		t.Fatalf("create: %q", out)
	}
	var info chat.Group
	if err := json.Unmarshal([]byte(c.ok("channel", "info", "News", "--json")), &info); err != nil || !info.Channel || info.Subscribers != 1 || info.ID != id {
		t.Fatalf("info --json: %+v (%v)", info, err)
	}
	if out := c.ok("channel", "edit", "News", "--description", "Daily news"); !strings.Contains(out, "description: Daily news") {
		t.Errorf("channel edit: %q", out)
	}
	post := strings.TrimSpace(c.ok("channel", "post", "News", "hello subscribers"))
	if len(post) != 64 {
		t.Fatalf("post: %q", post)
	}
	var ms []chat.GroupMessage
	if err := json.Unmarshal([]byte(c.ok("channel", "messages", "News", "--json")), &ms); err != nil || len(ms) != 1 || ms[0].Text != "hello subscribers" {
		t.Fatalf("messages --json: %+v (%v)", ms, err)
	}
	if out := c.ok("channel", "list"); !strings.Contains(out, "News") || !strings.Contains(out, "1 subscriber,") {
		t.Errorf("list: %q", out)
	}
	link := strings.TrimSpace(c.ok("channel", "invite", "News"))
	if !strings.HasPrefix(link, "peergram://join/"+id+"/") {
		t.Errorf("invite: %q", link)
	}
	c.ok("group", "create", "Readers")
	if out := strings.TrimSpace(c.ok("channel", "forward", "News", post, "Readers")); len(out) != 64 {
		t.Errorf("forward: %q", out)
	}
	if out := c.ok("group", "messages", "Readers"); !strings.Contains(out, "[forwarded from News] hello subscribers") {
		t.Errorf("the forwarded post: %q", out)
	}
	if out := c.ok("channel", "publish", "News", "@dailynews"); !strings.Contains(out, "join @dailynews") {
		t.Errorf("publish: %q", out)
	}
	if out := c.ok("channel", "create", "Public", "--public", "public_one"); !strings.Contains(out, "join @public_one") {
		t.Errorf("create --public: %q", out)
	}
	if errOut := c.fail("channel", "publish", "News", "bad name"); !strings.Contains(errOut, "invalid") {
		t.Errorf("publish a bad name: %q", errOut)
	}
	if errOut := c.fail("channel", "info", "Nowhere"); !strings.Contains(errOut, "unknown group") {
		t.Errorf("unknown channel: %q", errOut)
	}
}

func TestGroupCommands(t *testing.T) {
	c := newCLI(t)
	b := c.startDaemon()
	if out := c.ok("group", "list"); !strings.Contains(out, "no groups yet") {
		t.Errorf("empty list: %q", out)
	}
	out := c.ok("group", "create", "Book club")
	id := strings.SplitN(out, "\n", 2)[0]
	if len(id) != 64 || !strings.Contains(out, "created group Book club") {
		t.Fatalf("create: %q", out)
	}
	var g chat.Group
	if err := json.Unmarshal([]byte(c.ok("group", "create", "Hikers", "--json")), &g); err != nil || g.Title != "Hikers" || g.ID == "" || g.Role != "owner" {
		t.Fatalf("create --json: %+v (%v)", g, err)
	}
	var gs []chat.Group
	if err := json.Unmarshal([]byte(c.ok("group", "list", "--json")), &gs); err != nil || len(gs) != 2 {
		t.Fatalf("list --json: %+v (%v)", gs, err)
	}
	for _, name := range []string{"Book club", id} {
		var info chat.Group
		if err := json.Unmarshal([]byte(c.ok("group", "info", name, "--json")), &info); err != nil || info.ID != id || len(info.Members) != 1 || info.Members[0].Role != "owner" {
			t.Fatalf("info %q: %+v (%v)", name, info, err)
		}
	}
	if out := c.ok("group", "info", "Hikers"); !strings.Contains(out, "your role: owner") || !strings.Contains(out, "ROLE") {
		t.Errorf("info: %q", out)
	}
	if errOut := c.fail("group", "info", "Nobody's"); !strings.Contains(errOut, "unknown group") {
		t.Errorf("unknown group: %q", errOut)
	}
	// Usage mistakes fail with words that say what is wrong.
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"group", "bogus"}, `unknown command "bogus" for "peergram group"`},
		{[]string{"group", "poll", "bogus"}, `unknown command "bogus" for "peergram group poll"`},
		{[]string{"channel", "bogus"}, `unknown command "bogus" for "peergram channel"`},
		{[]string{"group", "create", "Book", "club"}, "got 2 arguments: quote a text with spaces"},
		{[]string{"group", "add", "Book club"}, "need a group and at least one contact"},
		{[]string{"group", "poll", "close", "Book club"}, "need a group and a poll ID"},
		{[]string{"group", "send", "--bogus", "Book club", "x"}, "see 'peergram group send --help'"},
	} {
		if errOut := c.fail(bad.args...); !strings.Contains(errOut, bad.want) {
			t.Errorf("%q: %q, want %q", bad.args, errOut, bad.want)
		}
	}
	if out := c.ok("group"); !strings.Contains(out, "Available Commands") {
		t.Errorf("group alone prints its help: %q", out)
	}
	if out := c.ok("group", "edit", "Hikers", "--description", "Trails and huts"); !strings.Contains(out, "description: Trails and huts") {
		t.Errorf("edit --description: %q", out)
	}
	if out := c.ok("group", "info", "Hikers"); !strings.Contains(out, "description: Trails and huts") {
		t.Errorf("info after edit: %q", out)
	}
	var edited chat.Group
	if err := json.Unmarshal([]byte(c.ok("group", "edit", "Hikers", "--title", "Walkers", "--json")), &edited); err != nil || edited.Title != "Walkers" || edited.Description != "Trails and huts" {
		t.Fatalf("edit --title --json: %+v (%v)", edited, err)
	}
	if errOut := c.fail("group", "edit", "Walkers"); !strings.Contains(errOut, "nothing to change") {
		t.Errorf("edit without a change: %q", errOut)
	}
	if errOut := c.fail("group", "edit", "Nobody's", "--title", "x"); !strings.Contains(errOut, "unknown group") {
		t.Errorf("edit an unknown group: %q", errOut)
	}
	c.ok("group", "edit", "Walkers", "--title", "Hikers", "--description", "")
	if out := c.ok("group", "info", "Hikers"); strings.Contains(out, "description:") {
		t.Errorf("info after the description was removed: %q", out)
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "hut.jpg")
	if err := os.WriteFile(img, []byte("\xff\xd8\xff a hut"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := c.ok("group", "photo", "Hikers", img); !strings.Contains(out, "photo: ") {
		t.Errorf("photo: %q", out)
	}
	if out := c.ok("group", "info", "Hikers"); !strings.Contains(out, "photo: ") {
		t.Errorf("info after the photo: %q", out)
	}
	saved := filepath.Join(dir, "saved.jpg")
	c.ok("group", "photo", "Hikers", "--save", saved)
	if got, err := os.ReadFile(saved); err != nil || string(got) != "\xff\xd8\xff a hut" {
		t.Errorf("saved photo: %q (%v)", got, err)
	}
	for _, bad := range [][]string{{"Hikers"}, {"Hikers", img, "--remove"}, {"Hikers", "--remove", "--save", saved}} {
		if errOut := c.fail(append([]string{"group", "photo"}, bad...)...); !strings.Contains(errOut, "give one of") {
			t.Errorf("photo %v: %q", bad, errOut)
		}
	}
	if out := c.ok("group", "photo", "Hikers", "--remove"); !strings.Contains(out, "photo removed") {
		t.Errorf("photo --remove: %q", out)
	}
	if errOut := c.fail("group", "photo", "Hikers", "--save", saved); !strings.Contains(errOut, "no photo") {
		t.Errorf("save without a photo: %q", errOut)
	}
	if errOut := c.fail("group", "create", " "); !strings.Contains(errOut, "invalid") && !strings.Contains(errOut, "title") {
		t.Errorf("empty title: %q", errOut)
	}
	c.ok("contacts", "add", "acct-bob", "--name", "bob")
	if out := c.ok("group", "add", "Book club", "bob"); !strings.Contains(out, "Book club has 2 members") {
		t.Errorf("add: %q", out)
	}
	if errOut := c.fail("group", "add", "Book club", "nobody"); !strings.Contains(errOut, "contacts list") {
		t.Errorf("add an unknown contact: %q", errOut)
	}
	if errOut := c.fail("group", "add", "Nobody's", "bob"); !strings.Contains(errOut, "unknown group") {
		t.Errorf("add to an unknown group: %q", errOut)
	}
	if out := c.ok("group", "send", "Book club", "hello club"); len(strings.TrimSpace(out)) != 64 {
		t.Errorf("send: %q", out)
	}
	var ms []chat.GroupMessage
	if err := json.Unmarshal([]byte(c.ok("group", "messages", id, "--json")), &ms); err != nil || len(ms) != 1 || ms[0].Text != "hello club" || ms[0].ID == "" || ms[0].From == "" || ms[0].SentAt.IsZero() {
		t.Fatalf("messages --json: %+v (%v)", ms, err)
	}
	if out := c.ok("group", "messages", "Book club"); !strings.Contains(out, "hello club") {
		t.Errorf("messages: %q", out)
	}
	first := ms[0].ID
	if out := c.ok("group", "send", "Book club", "a reply", "--reply-to", first); len(strings.TrimSpace(out)) != 64 {
		t.Errorf("send --reply-to: %q", out)
	}
	if out := c.ok("group", "messages", "Book club"); !strings.Contains(out, "(reply to "+first[:12]+") a reply") {
		t.Errorf("messages with a reply: %q", out)
	}
	poll := strings.TrimSpace(c.ok("group", "poll", "create", "Book club", "Lunch?", "pizza", "sushi"))
	if len(poll) != 64 {
		t.Fatalf("poll create: %q", poll)
	}
	if out := c.ok("group", "poll", "vote", "Book club", poll, "2"); !strings.Contains(out, "[2*] sushi: 1") {
		t.Errorf("vote by number: %q", out)
	}
	if out := c.ok("group", "poll", "vote", "Book club", poll, "pizza"); !strings.Contains(out, "[1*] pizza: 1") || !strings.Contains(out, "sushi: 0") {
		t.Errorf("vote by text: %q", out)
	}
	if errOut := c.fail("group", "poll", "vote", "Book club", poll, "3"); !strings.Contains(errOut, "not an option") {
		t.Errorf("vote out of range: %q", errOut)
	}
	var pr chat.Poll
	if err := json.Unmarshal([]byte(c.ok("group", "poll", "results", "Book club", poll, "--json")), &pr); err != nil || pr.Voters != 1 || pr.Options[0].Votes != 1 || pr.ID != poll {
		t.Fatalf("results --json: %+v (%v)", pr, err)
	}
	if out := c.ok("group", "poll", "close", "Book club", poll); !strings.Contains(out, "closed") {
		t.Errorf("close: %q", out)
	}
	if out := c.ok("group", "ban", "Book club", "bob"); !strings.Contains(out, "1 banned") {
		t.Errorf("ban: %q", out)
	}
	if errOut := c.fail("group", "ban", "Book club", "bob"); !strings.Contains(errOut, "banned already") {
		t.Errorf("ban twice: %q", errOut)
	}
	if out := c.ok("group", "unban", "Book club", "bob"); !strings.Contains(out, "0 banned") {
		t.Errorf("unban: %q", out)
	}
	c.ok("group", "add", "Book club", "bob")
	if out := c.ok("group", "pin", "Book club", first); !strings.Contains(out, "1 pinned") {
		t.Errorf("pin: %q", out)
	}
	if out := c.ok("group", "unpin", "Book club", first); !strings.Contains(out, "0 pinned") {
		t.Errorf("unpin: %q", out)
	}
	if errOut := c.fail("group", "send", "Nobody's", "x"); !strings.Contains(errOut, "unknown group") {
		t.Errorf("send to an unknown group: %q", errOut)
	}
	if out := c.ok("group", "promote", "Book club", "bob"); !strings.Contains(out, "bob is now an admin of Book club") {
		t.Errorf("promote: %q", out)
	}
	var promoted chat.Group
	if err := json.Unmarshal([]byte(c.ok("group", "info", "Book club", "--json")), &promoted); err != nil || len(promoted.Members) != 2 || promoted.Members[1].Role != "admin" {
		t.Fatalf("after promote: %+v (%v)", promoted, err)
	}
	if errOut := c.fail("group", "promote", "Book club", "bob"); !strings.Contains(errOut, "admin") {
		t.Errorf("promote twice: %q", errOut)
	}
	if out := c.ok("group", "demote", "Book club", "bob", "--json"); !strings.Contains(out, `"role": "member"`) && !strings.Contains(out, `"role":"member"`) {
		t.Errorf("demote --json: %q", out)
	}
	if out := c.ok("group", "remove", "Book club", "bob"); !strings.Contains(out, "Book club has 1 member\n") {
		t.Errorf("remove: %q", out)
	}
	if errOut := c.fail("group", "remove", "Book club", "bob"); !strings.Contains(errOut, "not a member") {
		t.Errorf("remove twice: %q", errOut)
	}
	if errOut := c.fail("group", "leave", "Book club"); !strings.Contains(errOut, "owner") {
		t.Errorf("owner leaves: %q", errOut)
	}
	b.Invite(chat.Group{ID: strings.Repeat("ab", 32), Title: "Strangers", Members: []chat.GroupMember{{AccountID: "acct-x", Role: "owner"}}})
	if out := c.ok("group", "list"); !strings.Contains(out, "Strangers") || !strings.Contains(out, "invited") {
		t.Errorf("list with an invitation: %q", out)
	}
	link := strings.SplitN(c.ok("group", "invite", "create", "Book club", "--expires", "24h"), "\n", 2)[0]
	if !strings.HasPrefix(link, "peergram://join/"+id+"/") {
		t.Errorf("invite create: %q", link)
	}
	if out := c.ok("group", "invite", "revoke", "Book club", link); !strings.Contains(out, "revoked") {
		t.Errorf("invite revoke: %q", out)
	}
	if errOut := c.fail("group", "join", "https://example.com/x"); !strings.Contains(errOut, "invalid") {
		t.Errorf("join by a foreign link: %q", errOut)
	}
	if out := c.ok("group", "join", "Strangers"); !strings.Contains(out, "joined Strangers") {
		t.Errorf("join: %q", out)
	}
	if errOut := c.fail("group", "join", "Strangers"); !strings.Contains(errOut, "already") {
		t.Errorf("join twice: %q", errOut)
	}
	b.Invite(chat.Group{ID: strings.Repeat("cd", 32), Title: "Spam", Members: []chat.GroupMember{{AccountID: "acct-y", Role: "owner"}}})
	if out := c.ok("group", "decline", "Spam"); !strings.Contains(out, "declined Spam") {
		t.Errorf("decline: %q", out)
	}
	if out := c.ok("group", "list"); strings.Contains(out, "Spam") {
		t.Errorf("a declined invitation listed: %q", out)
	}
	if errOut := c.fail("group", "decline", "Spam"); !strings.Contains(errOut, "unknown group") {
		t.Errorf("decline twice: %q", errOut)
	}
	if errOut := c.fail("group", "decline", "Strangers"); !strings.Contains(errOut, "already") {
		t.Errorf("decline a group joined: %q", errOut)
	}
}

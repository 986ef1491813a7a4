package localapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/node/localapi"
)

// TestEventsInOrder streams events through the Client and checks order,
// then that cancelling ends the stream on both sides, leaking nothing.
func TestEventsInOrder(t *testing.T) {
	f := newFixture(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := f.client.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := f.backend.Subscribers(); n != 1 {
		t.Fatalf("%d subscribers once Events returned, want 1", n)
	}
	const n = 50
	var want []string
	for i := range n {
		var m chat.Message
		if i%2 == 0 {
			m = f.receive(t, "in "+string(rune('a'+i%26)))
		} else {
			m, err = f.client.Send(ctx, "alice", "out\nline two")
			if err != nil {
				t.Fatal(err)
			}
		}
		want = append(want, m.ID)
	}
	f.backend.Publish(chat.Event{Type: chat.EventStatus, Message: chat.Message{ID: want[1], Status: chat.StatusSent}})
	for i, id := range want {
		ev := next(t, events)
		if ev.Type != chat.EventMessage || ev.Message.ID != id {
			t.Fatalf("event %d = %s %s, want message %s", i, ev.Type, ev.Message.ID, id)
		}
		if i%2 == 1 && ev.Message.Text != "out\nline two" {
			t.Fatalf("event %d text %q", i, ev.Message.Text)
		}
	}
	if ev := next(t, events); ev.Type != chat.EventStatus || ev.Message.Status != chat.StatusSent {
		t.Fatalf("status event = %+v", ev)
	}

	cancel()
	for range events { // drains, then closes
	}
	waitFor(t, "server to drop the subscription", func() bool { return f.backend.Subscribers() == 0 })
	f.client.Close()
	f.srv.Close()
	goleak.VerifyNone(t)
}

// TestEventsEndWhenClientGoes checks a raw client that hangs up: the handler
// returns and unsubscribes.
func TestEventsEndWhenClientGoes(t *testing.T) {
	f := newFixture(t, func(c *localapi.Config) { c.KeepAlive = 10 * time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	r := bufio.NewReader(resp.Body)
	lines := readLines(t, r, 4)
	if lines[0] != ": connected" || lines[1] != "" || lines[2] != ": keepalive" || lines[3] != "" {
		t.Fatalf("stream starts %q", lines)
	}
	m := f.receive(t, "hello")
	for {
		line := readLines(t, r, 1)[0]
		if line == "" || line == ": keepalive" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("line %q", line)
		}
		var ev chat.Event
		if err := json.Unmarshal([]byte(data), &ev); err != nil || ev.Message.ID != m.ID {
			t.Fatalf("data %s: %v", data, err)
		}
		break
	}
	cancel()
	resp.Body.Close()
	waitFor(t, "server to drop the subscription", func() bool { return f.backend.Subscribers() == 0 })
}

// TestServeShutdown checks that Serve ends open event streams and returns
// once its context is done.
func TestServeShutdown(t *testing.T) {
	f := newFixture(t, nil)
	s, err := localapi.New(localapi.Config{Backend: f.backend, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := localapi.Listen("")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()

	c := localapi.NewClient("http://"+ln.Addr().String(), token)
	defer c.Close()
	events, err := c.Events(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Health(context.Background()); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	select {
	case _, ok := <-events:
		if ok {
			t.Fatal("event after shutdown")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("event stream not closed by shutdown")
	}
	if err := c.Health(context.Background()); err == nil {
		t.Fatal("Health after shutdown succeeded")
	}
}

func next(t *testing.T, ch <-chan chat.Event) chat.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("event stream closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	panic("unreachable")
}

func readLines(t *testing.T, r *bufio.Reader, n int) []string {
	t.Helper()
	var out []string
	for range n {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read stream: %v (after %q)", err, out)
		}
		out = append(out, strings.TrimSuffix(line, "\n"))
	}
	return out
}

// waitFor polls cond; the server side of a closed stream ends asynchronously.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

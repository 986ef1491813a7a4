package localapi_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/node/localapi"
)

// TestClientRoundTrip drives every Backend method through the Client.
func TestClientRoundTrip(t *testing.T) {
	f := newFixture(t, nil)
	c := f.client
	ctx := context.Background()

	if err := c.Health(ctx); err != nil {
		t.Fatalf("Health: %v", err)
	}
	id, err := c.Identity(ctx)
	if err != nil || id.AccountID != testIdentity.AccountID || id.Link != testIdentity.Link || id.Addrs[0] != testIdentity.Addrs[0] {
		t.Fatalf("Identity = %+v, %v", id, err)
	}
	// An alias with characters that need escaping in a path.
	const alias = "bob / ünïcode?#%"
	ct, err := c.AddContact(ctx, "peergram://acct-bob", alias)
	if err != nil || ct.AccountID != "acct-bob" || ct.Name != alias {
		t.Fatalf("AddContact = %+v, %v", ct, err)
	}
	cs, err := c.Contacts(ctx)
	if err != nil || len(cs) != 2 || cs[1].Name != alias {
		t.Fatalf("Contacts = %+v, %v", cs, err)
	}
	sent, err := c.Send(ctx, alias, "hello bob")
	if err != nil || sent.Text != "hello bob" || sent.Chat != "acct-bob" || sent.Status != chat.StatusPending {
		t.Fatalf("Send = %+v, %v", sent, err)
	}
	ms, err := c.Messages(ctx, alias, true)
	if err != nil || len(ms) != 1 || ms[0].ID != sent.ID {
		t.Fatalf("Messages = %+v, %v", ms, err)
	}

	in1, in2 := f.receive(t, "one"), f.receive(t, "two")
	ms, err = c.Messages(ctx, "alice", false)
	if err != nil || len(ms) != 2 || ms[0].ID != in1.ID || ms[1].ID != in2.ID {
		t.Fatalf("Messages(alice) = %+v, %v", ms, err)
	}
	id2, _ := chat.ParseMessageID(in2.ID)
	if err := c.MarkRead(ctx, "alice", []chat.MessageID{id2}); err != nil {
		t.Fatalf("MarkRead: %v", err)
	}
	if got := f.backend.Marked(); len(got) != 1 || got[0] != id2 {
		t.Fatalf("marked %v", got)
	}
	ms, _ = c.Messages(ctx, "alice", false)
	if ms[0].Status != chat.StatusReceived || ms[1].Status != chat.StatusSeen {
		t.Fatalf("statuses %s %s", ms[0].Status, ms[1].Status)
	}

	// Errors come back as the chat sentinels with the server's message.
	if _, err := c.Send(ctx, "carol", "x"); !errors.Is(err, chat.ErrUnknownContact) || !strings.Contains(err.Error(), `"carol"`) {
		t.Errorf("Send to unknown: %v", err)
	}
	if _, err := c.Send(ctx, "alice", ""); !errors.Is(err, chat.ErrInvalid) {
		t.Errorf("Send empty: %v", err)
	}
	if _, err := c.Send(ctx, "alice", strings.Repeat("x", 5000)); !errors.Is(err, chat.ErrTooLarge) {
		t.Errorf("Send long: %v", err)
	}
	if _, err := c.AddContact(ctx, "", ""); !errors.Is(err, chat.ErrInvalid) {
		t.Errorf("AddContact empty: %v", err)
	}
	if err := c.MarkRead(ctx, "alice", nil); !errors.Is(err, chat.ErrInvalid) {
		t.Errorf("MarkRead none: %v", err)
	}
	if _, err := c.Messages(ctx, "nobody", true); !errors.Is(err, chat.ErrUnknownContact) {
		t.Errorf("Messages unknown: %v", err)
	}
}

func TestClientErrors(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()

	bad := localapi.NewClient(f.srv.URL, "wrong-token-0123456789")
	defer bad.Close()
	if _, err := bad.Identity(ctx); !errors.Is(err, localapi.ErrUnauthorized) {
		t.Errorf("wrong token: %v", err)
	}
	if _, err := bad.Events(ctx); !errors.Is(err, localapi.ErrUnauthorized) {
		t.Errorf("wrong token events: %v", err)
	}

	// Nothing listening: the dial error is kept for callers to inspect.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	gone := localapi.NewClient(url, token)
	defer gone.Close()
	if err := gone.Health(ctx); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("no daemon: %v, want ECONNREFUSED", err)
	}

	// Something else on the port answers with non-JSON errors.
	other := localapi.NewClient(f.srv.URL+"/elsewhere", token)
	defer other.Close()
	err = other.Health(ctx)
	var ae *localapi.Error
	if !errors.As(err, &ae) || ae.Status != 404 || ae.Code != "not_found" {
		t.Errorf("wrong base path: %#v", err)
	}
}

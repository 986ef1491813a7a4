package localapi_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/node/localapi"
	"github.com/peergram/peergram/node/localapi/localapitest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const token = "test-token-0123456789"

var testIdentity = localapi.Identity{
	AccountID: "acct-self",
	Link:      "peergram://acct-self",
	PeerID:    "12D3KooWSelf",
	Addrs:     []string{"/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWSelf"},
	Name:      "me",
}

// fixture is an API server over a fake backend with one contact, "alice".
type fixture struct {
	backend *localapitest.Backend
	srv     *httptest.Server
	client  *localapi.Client
}

func newFixture(t *testing.T, edit func(*localapi.Config)) *fixture {
	t.Helper()
	b := localapitest.New(testIdentity)
	if _, err := b.AddContact(context.Background(), "acct-alice", "alice"); err != nil {
		t.Fatal(err)
	}
	return serve(t, b, edit)
}

// serve serves b over HTTP for the test.
func serve(t *testing.T, b *localapitest.Backend, edit func(*localapi.Config)) *fixture {
	t.Helper()
	cfg := localapi.Config{Backend: b, Token: token}
	if edit != nil {
		edit(&cfg)
	}
	s, err := localapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	c := localapi.NewClient(srv.URL, token)
	t.Cleanup(func() {
		c.Close()
		srv.Close()
	})
	return &fixture{backend: b, srv: srv, client: c}
}

// do sends a raw request with the given headers; body "" sends none.
func (f *fixture) do(t *testing.T, method, path, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	// A bounded wait, so a regression that streams (an unguarded
	// /v1/events) fails instead of hanging.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, f.srv.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func auth() map[string]string { return map[string]string{"Authorization": "Bearer " + token} }

// receive injects an incoming message from alice.
func (f *fixture) receive(t *testing.T, text string) chat.Message {
	t.Helper()
	m, err := f.backend.Receive("alice", text)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

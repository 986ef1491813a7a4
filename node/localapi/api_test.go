package localapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/node/localapi"
	"github.com/peergram/peergram/node/localapi/localapitest"
)

func TestNewValidates(t *testing.T) {
	b := localapitest.New(testIdentity)
	tests := []struct {
		name string
		cfg  localapi.Config
	}{
		{"no backend", localapi.Config{Token: token}},
		{"no token", localapi.Config{Backend: b}},
		{"short token", localapi.Config{Backend: b, Token: "short"}},
		{"origin with path", localapi.Config{Backend: b, Token: token, AllowedOrigins: []string{"http://x/app"}}},
		{"origin without scheme", localapi.Config{Backend: b, Token: token, AllowedOrigins: []string{"example.com"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := localapi.New(tt.cfg); !errors.Is(err, localapi.ErrConfig) {
				t.Fatalf("New: %v, want ErrConfig", err)
			}
		})
	}
	if _, err := localapi.New(localapi.Config{Backend: b, Token: localapi.NewToken()}); err != nil {
		t.Fatalf("New with NewToken: %v", err)
	}
}

// TestRoutes exercises every route of the table over raw HTTP.
func TestRoutes(t *testing.T) {
	f := newFixture(t, nil)
	in := f.receive(t, "hi")
	tests := []struct {
		method, path, body string
		want               int
		check              func(t *testing.T, body string)
	}{
		{"GET", "/v1/health", "", 200, func(t *testing.T, body string) {
			wantJSON(t, body, `{"status":"ok"}`)
		}},
		{"GET", "/v1/identity", "", 200, func(t *testing.T, body string) {
			var id localapi.Identity
			decodeInto(t, body, &id)
			if id.AccountID != "acct-self" || id.PeerID != "12D3KooWSelf" || len(id.Addrs) != 1 || id.Name != "me" {
				t.Errorf("identity = %+v", id)
			}
		}},
		{"POST", "/v1/contacts", `{"account_id":"peergram://acct-bob","name":"bob"}`, 201, func(t *testing.T, body string) {
			var c chat.Contact
			decodeInto(t, body, &c)
			if c.AccountID != "acct-bob" || c.Name != "bob" {
				t.Errorf("contact = %+v", c)
			}
		}},
		{"GET", "/v1/contacts", "", 200, func(t *testing.T, body string) {
			var cs []chat.Contact
			decodeInto(t, body, &cs)
			if len(cs) != 2 || cs[0].Name != "alice" || cs[1].Name != "bob" {
				t.Errorf("contacts = %+v", cs)
			}
		}},
		{"POST", "/v1/messages", `{"contact":"bob","text":"hello"}`, 201, func(t *testing.T, body string) {
			var m chat.Message
			decodeInto(t, body, &m)
			if m.Text != "hello" || m.Chat != "acct-bob" || !m.Outgoing || m.Status != chat.StatusPending || m.ID == "" {
				t.Errorf("message = %+v", m)
			}
		}},
		{"GET", "/v1/chats/alice/messages?mark_read=false", "", 200, func(t *testing.T, body string) {
			var ms []chat.Message
			decodeInto(t, body, &ms)
			if len(ms) != 1 || ms[0].Text != "hi" || ms[0].Status != chat.StatusReceived {
				t.Errorf("messages = %+v", ms)
			}
			if got := f.backend.Marked(); len(got) != 0 {
				t.Errorf("mark_read=false marked %v", got)
			}
		}},
		{"POST", "/v1/chats/alice/read", `{"ids":["` + in.ID + `"]}`, 204, func(t *testing.T, body string) {
			if body != "" {
				t.Errorf("body = %q, want none", body)
			}
			if got := f.backend.Marked(); len(got) != 1 || got[0].String() != in.ID {
				t.Errorf("marked %v, want [%s]", got, in.ID)
			}
		}},
		{"GET", "/v1/chats/acct-bob/messages", "", 200, func(t *testing.T, body string) {
			var ms []chat.Message
			decodeInto(t, body, &ms)
			if len(ms) != 1 || ms[0].Text != "hello" {
				t.Errorf("messages = %+v", ms)
			}
		}},
		{"GET", "/v1/chats/nobody/messages", "", 404, func(t *testing.T, body string) {
			wantCode(t, body, "unknown_contact")
		}},
		{"POST", "/v1/contacts", `{"account_id":"acct-bob","name":"robert"}`, 409, func(t *testing.T, body string) {
			wantCode(t, body, "exists")
		}},
		{"POST", "/v1/contacts/bob/rename", `{"name":"robert"}`, 200, func(t *testing.T, body string) {
			var c chat.Contact
			decodeInto(t, body, &c)
			if c.AccountID != "acct-bob" || c.Name != "robert" {
				t.Errorf("contact = %+v", c)
			}
		}},
		{"POST", "/v1/contacts/robert/rename", `{"name":"alice"}`, 409, func(t *testing.T, body string) {
			wantCode(t, body, "exists")
		}},
		{"DELETE", "/v1/contacts/robert", "", 204, func(t *testing.T, body string) {
			if cs, _ := f.backend.Contacts(context.Background()); len(cs) != 1 {
				t.Errorf("contacts after remove: %+v", cs)
			}
		}},
		{"GET", "/v1/requests", "", 200, func(t *testing.T, body string) {
			var cs []chat.Contact
			decodeInto(t, body, &cs)
			if len(cs) != 2 || cs[0].AccountID != "acct-stranger" || cs[0].Display != "Stranger" {
				t.Errorf("requests = %+v", cs)
			}
		}},
		{"POST", "/v1/requests/acct-stranger/accept", `{"name":"new friend"}`, 200, func(t *testing.T, body string) {
			var c chat.Contact
			decodeInto(t, body, &c)
			if c.AccountID != "acct-stranger" || c.Name != "new friend" {
				t.Errorf("contact = %+v", c)
			}
		}},
		{"POST", "/v1/requests/acct-spammer/ignore", "", 204, func(t *testing.T, body string) {
			if rs, _ := f.backend.Requests(context.Background()); len(rs) != 0 {
				t.Errorf("requests left: %+v", rs)
			}
		}},
		{"POST", "/v1/requests/acct-nobody/ignore", "", 404, func(t *testing.T, body string) { wantCode(t, body, "unknown_contact") }},
		{"GET", "/v1/nope", "", 404, func(t *testing.T, body string) { wantCode(t, body, "not_found") }},
		{"POST", "/v1/identity", "{}", 404, func(t *testing.T, body string) { wantCode(t, body, "not_found") }},
	}
	f.backend.AddRequest("acct-stranger", "Stranger")
	f.backend.AddRequest("acct-spammer", "Spammer")
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			resp, body := f.do(t, tt.method, tt.path, tt.body, auth())
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.want, body)
			}
			if ct := resp.Header.Get("Content-Type"); body != "" && ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			tt.check(t, body)
		})
	}
}

func TestMessagesMarkReadByDefault(t *testing.T) {
	f := newFixture(t, nil)
	in := f.receive(t, "unread")
	resp, body := f.do(t, "GET", "/v1/chats/alice/messages", "", auth())
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if got := f.backend.Marked(); len(got) != 1 || got[0].String() != in.ID {
		t.Fatalf("marked %v, want [%s]", got, in.ID)
	}
}

func TestEmptyListsAreArrays(t *testing.T) {
	b := localapitest.New(localapi.Identity{AccountID: "x"})
	f := serve(t, b, nil)
	if _, body := f.do(t, "GET", "/v1/contacts", "", auth()); strings.TrimSpace(body) != "[]" {
		t.Errorf("contacts = %s, want []", body)
	}
	if _, body := f.do(t, "GET", "/v1/identity", "", auth()); !strings.Contains(body, `"addrs":[]`) {
		t.Errorf("identity = %s, want addrs []", body)
	}
	if _, err := b.AddContact(context.Background(), "acct-z", "z"); err != nil {
		t.Fatal(err)
	}
	if _, body := f.do(t, "GET", "/v1/chats/z/messages", "", auth()); strings.TrimSpace(body) != "[]" {
		t.Errorf("messages = %s, want []", body)
	}
}

func TestBadRequests(t *testing.T) {
	f := newFixture(t, nil)
	in := f.receive(t, "hi")
	tests := []struct {
		name, method, path, body string
		want                     int
		code                     string
	}{
		{"send no body", "POST", "/v1/messages", "", 400, "invalid"},
		{"send not JSON", "POST", "/v1/messages", "hello", 400, "invalid"},
		{"send unknown field", "POST", "/v1/messages", `{"contact":"alice","text":"x","to":"bob"}`, 400, "invalid"},
		{"send trailing data", "POST", "/v1/messages", `{"contact":"alice","text":"x"}{}`, 400, "invalid"},
		{"send wrong type", "POST", "/v1/messages", `{"contact":"alice","text":5}`, 400, "invalid"},
		{"send no contact", "POST", "/v1/messages", `{"text":"x"}`, 400, "invalid"},
		{"send no text", "POST", "/v1/messages", `{"contact":"alice"}`, 400, "invalid"},
		{"send null", "POST", "/v1/messages", `null`, 400, "invalid"},
		{"send unknown contact", "POST", "/v1/messages", `{"contact":"carol","text":"x"}`, 404, "unknown_contact"},
		{"send text too long", "POST", "/v1/messages", `{"contact":"alice","text":"` + strings.Repeat("a", localapitest.MaxText+1) + `"}`, 413, "too_large"},
		{"add no id", "POST", "/v1/contacts", `{"name":"x"}`, 400, "invalid"},
		{"add bad id", "POST", "/v1/contacts", `{"account_id":"a b"}`, 400, "invalid"},
		{"mark_read not bool", "GET", "/v1/chats/alice/messages?mark_read=maybe", "", 400, "invalid"},
		{"read no ids", "POST", "/v1/chats/alice/read", `{"ids":[]}`, 400, "invalid"},
		{"read bad id", "POST", "/v1/chats/alice/read", `{"ids":["zz"]}`, 400, "invalid"},
		{"read short id", "POST", "/v1/chats/alice/read", `{"ids":["` + in.ID[:30] + `"]}`, 400, "invalid"},
		{"read unknown contact", "POST", "/v1/chats/carol/read", `{"ids":["` + in.ID + `"]}`, 404, "unknown_contact"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.do(t, tt.method, tt.path, tt.body, auth())
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.want, body)
			}
			wantCode(t, body, tt.code)
		})
	}
}

func TestBodyTooLarge(t *testing.T) {
	f := newFixture(t, nil)
	for _, path := range []string{"/v1/messages", "/v1/contacts", "/v1/chats/alice/read"} {
		t.Run(path, func(t *testing.T) {
			// Valid JSON start, so only the size can be the reason.
			body := `{"text":"` + strings.Repeat("a", localapi.MaxBodyBytes) + `"}`
			resp, got := f.do(t, "POST", path, body, auth())
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d, want 413; body %.200s", resp.StatusCode, got)
			}
			wantCode(t, got, "too_large")
		})
	}
	// Just under the cap is decoded (and then refused for its content).
	body := `{"contact":"alice","text":"` + strings.Repeat("a", localapi.MaxBodyBytes-40) + `"}`
	resp, got := f.do(t, "POST", "/v1/messages", body, auth())
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(got, "localapitest") {
		t.Fatalf("status %d body %.200s, want the backend's too_large", resp.StatusCode, got)
	}
}

// TestAuth checks the token on every route of the table, and on unknown
// routes, so that nothing is learned without it.
func TestAuth(t *testing.T) {
	f := newFixture(t, nil)
	routes := []struct{ method, path string }{
		{"GET", "/v1/health"},
		{"GET", "/v1/identity"},
		{"GET", "/v1/contacts"},
		{"POST", "/v1/contacts"},
		{"POST", "/v1/messages"},
		{"GET", "/v1/chats/alice/messages"},
		{"POST", "/v1/chats/alice/read"},
		{"GET", "/v1/events"},
		{"GET", "/v1/nope"},
	}
	headers := map[string]map[string]string{
		"missing":      nil,
		"wrong":        {"Authorization": "Bearer " + token + "x"},
		"prefix":       {"Authorization": "Bearer " + token[:len(token)-1]},
		"empty":        {"Authorization": "Bearer "},
		"basic scheme": {"Authorization": "Basic " + token},
		"bare token":   {"Authorization": token},
	}
	for _, rt := range routes {
		for name, h := range headers {
			t.Run(rt.method+" "+rt.path+" "+name, func(t *testing.T) {
				resp, body := f.do(t, rt.method, rt.path, `{"contact":"alice","text":"x"}`, h)
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401; body %s", resp.StatusCode, body)
				}
				wantCode(t, body, "unauthorized")
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Error("no WWW-Authenticate header")
				}
			})
		}
	}
	// Scheme is case-insensitive (RFC 9110 §11.1).
	if resp, body := f.do(t, "GET", "/v1/health", "", map[string]string{"Authorization": "bearer " + token}); resp.StatusCode != 200 {
		t.Errorf("lowercase scheme: status %d: %s", resp.StatusCode, body)
	}
}

// TestHostCheck is DNS rebinding: a web page on evil.example whose name
// is made to resolve to 127.0.0.1 reaches the API with its own Host
// header. Only loopback names are served, whatever the token.
func TestHostCheck(t *testing.T) {
	f := newFixture(t, nil)
	for _, tt := range []struct {
		host string
		want int
	}{
		{"evil.example:7777", http.StatusForbidden},
		{"evil.example", http.StatusForbidden},
		{"127.0.0.1.evil.example", http.StatusForbidden},
		{"localhost.evil.example:80", http.StatusForbidden},
		{"10.0.0.1:7777", http.StatusForbidden},
		{"localhost:7777", http.StatusOK},
		{"LOCALHOST", http.StatusOK},
		{"127.0.0.1:7777", http.StatusOK},
		{"127.1.2.3", http.StatusOK},
		{"[::1]:7777", http.StatusOK},
	} {
		t.Run(tt.host, func(t *testing.T) {
			h := auth()
			h["Host"] = tt.host
			resp, body := f.do(t, "GET", "/v1/identity", "", h)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.want, body)
			}
			if tt.want == http.StatusForbidden {
				wantCode(t, body, "forbidden")
				if strings.Contains(body, "acct-self") {
					t.Fatal("identity served to a foreign host")
				}
			}
		})
	}
}

func TestCORS(t *testing.T) {
	const ui = "http://127.0.0.1:5173"
	withToken := func(origin string) map[string]string {
		h := auth()
		h["Origin"] = origin
		return h
	}
	t.Run("closed by default", func(t *testing.T) {
		f := newFixture(t, nil)
		for _, origin := range []string{ui, "null", "https://evil.example"} {
			resp, body := f.do(t, "GET", "/v1/identity", "", withToken(origin))
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("Origin %s: status %d, want 403", origin, resp.StatusCode)
			}
			wantCode(t, body, "forbidden")
			wantNoCORS(t, resp.Header)
		}
		resp, _ := f.do(t, "OPTIONS", "/v1/messages", "", map[string]string{"Origin": ui, "Access-Control-Request-Method": "POST"})
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("preflight: status %d, want 403", resp.StatusCode)
		}
		wantNoCORS(t, resp.Header)
		resp, _ = f.do(t, "GET", "/v1/identity", "", auth())
		if resp.StatusCode != 200 {
			t.Fatalf("no Origin: status %d", resp.StatusCode)
		}
		wantNoCORS(t, resp.Header)
	})
	t.Run("allowed origin", func(t *testing.T) {
		f := newFixture(t, func(c *localapi.Config) { c.AllowedOrigins = []string{ui} })
		resp, _ := f.do(t, "GET", "/v1/identity", "", withToken(ui))
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != ui {
			t.Errorf("Access-Control-Allow-Origin = %q", got)
		}
		// Preflight needs no token; browsers send none.
		resp, _ = f.do(t, "OPTIONS", "/v1/messages", "", map[string]string{"Origin": ui, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"})
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("preflight status %d", resp.StatusCode)
		}
		for k, want := range map[string]string{
			"Access-Control-Allow-Origin":  ui,
			"Access-Control-Allow-Methods": "GET, POST, PUT, DELETE",
			"Access-Control-Allow-Headers": "Authorization, Content-Type",
		} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
		// The token is still required for the request itself.
		resp, _ = f.do(t, "GET", "/v1/identity", "", map[string]string{"Origin": ui})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("allowed origin without token: status %d", resp.StatusCode)
		}
		resp, _ = f.do(t, "GET", "/v1/identity", "", withToken("http://127.0.0.1:5174"))
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("other origin: status %d, want 403", resp.StatusCode)
		}
		wantNoCORS(t, resp.Header)
	})
}

// TestErrorMapping checks the one table from backend errors to status codes,
// and back through the Client to the same sentinels.
func TestErrorMapping(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		err     error
		status  int
		code    string
		message string // what the client sees
		is      error
	}{
		{fmt.Errorf("node: send: %w", chat.ErrUnknownContact), 404, "unknown_contact", "node: send: unknown contact", chat.ErrUnknownContact},
		{fmt.Errorf("node: bad id: %w", chat.ErrInvalid), 400, "invalid", "node: bad id: invalid input", chat.ErrInvalid},
		{fmt.Errorf("node: %w", chat.ErrTooLarge), 413, "too_large", "node: message too large", chat.ErrTooLarge},
		{fmt.Errorf("node: no relay: %w", chat.ErrUnavailable), 503, "unavailable", "node: no relay: unavailable", chat.ErrUnavailable},
		{fmt.Errorf("node: %w", context.DeadlineExceeded), 503, "unavailable", "node: context deadline exceeded", chat.ErrUnavailable},
		{errors.New("badger: disk on fire"), 500, "internal", "internal error", localapi.ErrInternal},
	}
	for _, tt := range tests {
		t.Run(tt.code+" "+tt.err.Error(), func(t *testing.T) {
			f.backend.FailWith(tt.err)
			defer f.backend.FailWith(nil)
			resp, body := f.do(t, "GET", "/v1/contacts", "", auth())
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			var e struct{ Error, Code string }
			decodeInto(t, body, &e)
			if e.Code != tt.code || e.Error != tt.message {
				t.Errorf("body %s, want code %q error %q", body, tt.code, tt.message)
			}
			_, err := f.client.Contacts(context.Background())
			if !errors.Is(err, tt.is) {
				t.Errorf("client error %v is not %v", err, tt.is)
			}
			var ae *localapi.Error
			if !errors.As(err, &ae) || ae.Status != tt.status || ae.Code != tt.code || err.Error() != tt.message {
				t.Errorf("client error %#v, want status %d code %q message %q", err, tt.status, tt.code, tt.message)
			}
		})
	}
}

func wantCode(t *testing.T, body, code string) {
	t.Helper()
	var e struct{ Error, Code string }
	decodeInto(t, body, &e)
	if e.Code != code || e.Error == "" {
		t.Errorf("error body %s, want code %q and a message", body, code)
	}
}

func wantNoCORS(t *testing.T, h http.Header) {
	t.Helper()
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			t.Errorf("CORS header %s: %s", k, h.Get(k))
		}
	}
}

func wantJSON(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	decodeInto(t, got, &g)
	decodeInto(t, want, &w)
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Errorf("body %s, want %s", got, want)
	}
}

func decodeInto(t *testing.T, body string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
}

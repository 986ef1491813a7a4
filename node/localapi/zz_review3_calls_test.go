package localapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/peergram/peergram/calls"
	"github.com/peergram/peergram/node/localapi"
	"github.com/peergram/peergram/node/localapi/localapitest"
)

type review3Calls struct {
	*localapitest.Backend
	hits atomic.Int32
}

func (b *review3Calls) StartCall(context.Context, string, calls.Media) (calls.Call, error) {
	b.hits.Add(1)
	return calls.Call{ID: "x"}, nil
}
func (b *review3Calls) AnswerCall(context.Context, string, calls.Media) (calls.Call, error) {
	b.hits.Add(1)
	return calls.Call{}, nil
}
func (b *review3Calls) DeclineCall(context.Context, string) error { b.hits.Add(1); return nil }
func (b *review3Calls) HangupCall(context.Context, string) error  { b.hits.Add(1); return nil }
func (b *review3Calls) ShareScreen(context.Context, string, string) error {
	b.hits.Add(1)
	return nil
}
func (b *review3Calls) UnshareScreen(context.Context, string) error { b.hits.Add(1); return nil }
func (b *review3Calls) Call(context.Context, string) (calls.Call, error) {
	b.hits.Add(1)
	return calls.Call{}, nil
}
func (b *review3Calls) Calls(context.Context) ([]calls.Call, error) { b.hits.Add(1); return nil, nil }

// TestReview3CallsRoutes: every calls route refuses a request without
// the token, with a wrong token, with a non-loopback Host (DNS
// rebinding) or a foreign Origin; the backend is never reached.
func TestReview3CallsRoutes(t *testing.T) {
	b := &review3Calls{Backend: localapitest.New(testIdentity)}
	token := localapi.NewToken()
	s, err := localapi.New(localapi.Config{Backend: b, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	id := strings.Repeat("ab", 16)
	reqs := []struct{ method, path, body string }{
		{"POST", "/v1/calls", `{"contact":"bob","record":"/tmp"}`},
		{"GET", "/v1/calls", ""},
		{"GET", "/v1/calls/" + id, ""},
		{"POST", "/v1/calls/" + id + "/answer", `{"record":"/"}`},
		{"POST", "/v1/calls/" + id + "/decline", ""},
		{"POST", "/v1/calls/" + id + "/hangup", ""},
		{"POST", "/v1/calls/" + id + "/share", `{"file":"/etc/passwd"}`},
		{"POST", "/v1/calls/" + id + "/unshare", ""},
		{"POST", "/v1/calls/" + id + "/hangup/", ""},
		{"POST", "//v1/calls/" + id + "/hangup", ""},
	}
	variants := []struct {
		name string
		mod  func(r *http.Request)
	}{
		{"no token", func(r *http.Request) {}},
		{"wrong token", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token+"x") }},
		{"basic scheme", func(r *http.Request) { r.Header.Set("Authorization", "Basic "+token) }},
		{"rebound host", func(r *http.Request) { r.Host = "evil.example"; r.Header.Set("Authorization", "Bearer "+token) }},
		{"foreign origin", func(r *http.Request) {
			r.Header.Set("Origin", "http://evil.example")
			r.Header.Set("Authorization", "Bearer "+token)
		}},
	}
	for _, rq := range reqs {
		for _, v := range variants {
			r := httptest.NewRequest(rq.method, "http://127.0.0.1"+rq.path, strings.NewReader(rq.body))
			r.Header.Set("Content-Type", "application/json")
			v.mod(r)
			w := httptest.NewRecorder()
			before := b.hits.Load()
			h.ServeHTTP(w, r)
			if w.Code < 400 || b.hits.Load() != before {
				t.Errorf("ATTACK WORKS: %s %s with %s: %d, backend reached %v", rq.method, rq.path, v.name, w.Code, b.hits.Load() != before)
			}
		}
	}
	// Control: with the token the routes work.
	r := httptest.NewRequest("GET", "http://127.0.0.1/v1/calls", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 200 {
		t.Fatalf("control: %d %s", w.Code, w.Body)
	}
}

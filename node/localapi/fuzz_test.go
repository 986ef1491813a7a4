package localapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/peergram/peergram/node/localapi"
	"github.com/peergram/peergram/node/localapi/localapitest"
)

// fuzzHandler serves a fake backend with contact "alice" in memory.
func fuzzHandler(f *testing.F) (http.Handler, *localapitest.Backend) {
	b := localapitest.New(testIdentity)
	if _, err := b.AddContact(context.Background(), "acct-alice", "alice"); err != nil {
		f.Fatal(err)
	}
	s, err := localapi.New(localapi.Config{Backend: b, Token: token})
	if err != nil {
		f.Fatal(err)
	}
	return s.Handler(), b
}

// post sends body to path and checks the answer is well formed: a known
// status, JSON, and an error code on failure.
func post(t *testing.T, h http.Handler, path string, body []byte, ok int) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", path, bytes.NewReader(body))
	req.Host = "127.0.0.1:7777"
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	switch rec.Code {
	case ok:
		return rec
	case 400, 404, 409, 413:
		var e struct{ Error, Code string }
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code == "" || e.Error == "" {
			t.Fatalf("status %d with body %q", rec.Code, rec.Body)
		}
		return rec
	default:
		t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body)
	}
	return rec
}

func FuzzPostMessage(f *testing.F) {
	h, _ := fuzzHandler(f)
	// More seeds in testdata/fuzz/FuzzPostMessage.
	f.Add([]byte(`{"contact":"alice","text":"hi"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := post(t, h, "/v1/messages", body, http.StatusCreated)
		if rec.Code != http.StatusCreated {
			return
		}
		var req localapi.SendRequest
		var m struct{ Text string }
		if err := json.Unmarshal(body, &req); err != nil {
			t.Fatalf("201 for a body that does not decode: %v", err)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || m.Text != req.Text {
			t.Fatalf("sent text %q, stored %q (%v)", req.Text, m.Text, err)
		}
	})
}

func FuzzMarkRead(f *testing.F) {
	h, b := fuzzHandler(f)
	m, err := b.Receive("alice", "hi")
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"ids":["` + m.ID + `"]}`))
	f.Add([]byte(`{"ids":["` + m.ID + `","zz"]}`))
	f.Add([]byte(`{"ids":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		post(t, h, "/v1/chats/alice/read", body, http.StatusNoContent)
	})
}

func FuzzAddContact(f *testing.F) {
	h, _ := fuzzHandler(f)
	f.Add([]byte(`{"account_id":"peergram://acct-bob","name":"bob"}`))
	f.Add([]byte(`{"account_id":"acct-bob"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		post(t, h, "/v1/contacts", body, http.StatusCreated)
	})
}

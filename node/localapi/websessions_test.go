package localapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/peergram/peergram/node/localapi"
)

// restart serves wf's backend from a new server (a restarted daemon) with
// wf's clock, and renames the browser's cookie for the new server's port
// (a restarted daemon keeps its port; a test server cannot).
func (wf *webFixture) restart(t *testing.T, c *http.Cookie) (*webFixture, *http.Cookie) {
	t.Helper()
	wf.mu.Lock()
	now := wf.now
	wf.mu.Unlock()
	nf := newWebFixtureOn(t, wf.backend, now)
	port := nf.srv.URL[strings.LastIndex(nf.srv.URL, ":")+1:]
	return nf, &http.Cookie{Name: "peergram_session_" + port, Value: c.Value}
}

// TestWebSessionSurvivesRestart: a browser stays logged in across a
// restart of the daemon (the backend keeps the sessions); a session
// logged out, or idle past its time, does not come back; the backend
// never holds the cookie itself.
func TestWebSessionSurvivesRestart(t *testing.T) {
	wf := newWebFixture(t)
	cookie, csrf := wf.login(t)
	gone, goneCSRF := wf.login(t)
	h := func(csrf string) map[string]string {
		return map[string]string{"Sec-Fetch-Site": "same-origin", localapi.CSRFHeader: csrf}
	}
	if resp, _ := wf.raw(t, "POST", "/v1/web/logout", "", h(goneCSRF), gone); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	kept, err := wf.backend.WebData(t.Context(), "sessions")
	if err != nil || len(kept) == 0 {
		t.Fatalf("no sessions kept: %v", err)
	}
	if strings.Contains(string(kept), cookie.Value) {
		t.Fatal("the backend holds a session cookie itself")
	}

	nf, moved := wf.restart(t, cookie)
	if resp, body := nf.raw(t, "GET", "/v1/contacts", "", h(csrf), moved); resp.StatusCode != http.StatusOK {
		t.Fatalf("after a restart the session is gone: %d %s", resp.StatusCode, body)
	}
	if resp, _ := nf.raw(t, "GET", "/v1/contacts", "", h("wrong"+csrf), moved); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("ATTACK WORKS: a kept session without its CSRF token: %d", resp.StatusCode)
	}
	if resp, _ := nf.raw(t, "GET", "/v1/contacts", "", h(goneCSRF), &http.Cookie{Name: moved.Name, Value: gone.Value}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("ATTACK WORKS: a session logged out before the restart came back: %d", resp.StatusCode)
	}

	// Idle past its time across a restart: gone.
	nf.advance(localapi.SessionIdleTTL + time.Hour)
	late, lateCookie := nf.restart(t, moved)
	if resp, _ := late.raw(t, "GET", "/v1/contacts", "", h(csrf), lateCookie); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("ATTACK WORKS: a session idle past %v came back after a restart: %d", localapi.SessionIdleTTL, resp.StatusCode)
	}
}

// TestWebSessionUseIsKept: a session's last use reaches the backend (at
// most an hour late), so that one used every day survives restarts past
// the idle time counted from its login.
func TestWebSessionUseIsKept(t *testing.T) {
	wf := newWebFixture(t)
	cookie, csrf := wf.login(t)
	h := map[string]string{"Sec-Fetch-Site": "same-origin", localapi.CSRFHeader: csrf}
	for range 40 { // 40 days of daily use
		wf.advance(24 * time.Hour)
		if resp, _ := wf.raw(t, "GET", "/v1/contacts", "", h, cookie); resp.StatusCode != http.StatusOK {
			t.Fatalf("a session used daily: %d", resp.StatusCode)
		}
	}
	nf, moved := wf.restart(t, cookie)
	if resp, _ := nf.raw(t, "GET", "/v1/contacts", "", h, moved); resp.StatusCode != http.StatusOK {
		t.Fatalf("a session used daily did not survive a restart 40 days after its login: %d", resp.StatusCode)
	}
}

// TestWebPrefs: the shared preferences round-trip; only a JSON object of
// at most 64 KiB is kept.
func TestWebPrefs(t *testing.T) {
	wf := newWebFixture(t)
	cookie, csrf := wf.login(t)
	h := map[string]string{"Sec-Fetch-Site": "same-origin", localapi.CSRFHeader: csrf}
	if resp, body := wf.raw(t, "GET", "/v1/web/prefs", "", h, cookie); resp.StatusCode != http.StatusOK || body != "{}" {
		t.Fatalf("no prefs yet: %d %q", resp.StatusCode, body)
	}
	want := `{"pinned":["c:abc"],"archived":[]}`
	if resp, body := wf.raw(t, "PUT", "/v1/web/prefs", want, h, cookie); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT prefs: %d %s", resp.StatusCode, body)
	}
	if resp, body := wf.raw(t, "GET", "/v1/web/prefs", "", h, cookie); resp.StatusCode != http.StatusOK || body != want {
		t.Fatalf("prefs: %d %q", resp.StatusCode, body)
	}
	for name, tc := range map[string]struct {
		body string
		code int
	}{
		"array":     {`["x"]`, http.StatusBadRequest},
		"null":      {`null`, http.StatusBadRequest},
		"not JSON":  {`{"a":`, http.StatusBadRequest},
		"too large": {`{"a":"` + strings.Repeat("x", 70<<10) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		if resp, body := wf.raw(t, "PUT", "/v1/web/prefs", tc.body, h, cookie); resp.StatusCode != tc.code {
			t.Errorf("%s: %d %s, want %d", name, resp.StatusCode, body, tc.code)
		}
	}
	if resp, body := wf.raw(t, "GET", "/v1/web/prefs", "", h, cookie); body != want {
		t.Fatalf("a refused PUT changed the prefs: %d %q", resp.StatusCode, body)
	}
	if resp, _ := wf.raw(t, "PUT", "/v1/web/prefs", want, map[string]string{"Sec-Fetch-Site": "same-origin"}, cookie); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("ATTACK WORKS: prefs written with the cookie alone: %d", resp.StatusCode)
	}
}

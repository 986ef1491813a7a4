package localapi_test

// Review 5: attacks on the web client's door (login links, browser
// sessions, Host/Origin/Sec-Fetch-Site checks, path tricks, uploads,
// slow clients). Every test fails with "ATTACK WORKS: ..." when the attack
// succeeds.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/peergram/peergram/node/localapi"
	"github.com/peergram/peergram/node/localapi/localapitest"
)

// rawHTTP writes one request exactly as given (request line, headers,
// body) to the fixture's listener and returns the parsed answer.
func (wf *webFixture) rawHTTP(t *testing.T, req string) (*http.Response, string) {
	t.Helper()
	addr := strings.TrimPrefix(wf.srv.URL, "http://")
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", strings.SplitN(req, "\r\n", 2)[0], err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (wf *webFixture) hostPort() string { return strings.TrimPrefix(wf.srv.URL, "http://") }

// Cookies ignore ports (RFC 6265 §8.5; every browser, and Go's cookiejar,
// does this). So any program listening on another port of 127.0.0.1 that
// the browser visits receives the session cookie. With only that cookie,
// a plain local process (no browser, so no Sec-Fetch-Site and no Origin)
// asks GET /v1/web/session for the CSRF token and then has the whole API.
func TestReview5StolenCookieFromOtherPortGivesFullAPI(t *testing.T) {
	wf := newWebFixture(t)

	// The victim's browser: a cookie jar, logged in through a login link.
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := browser.Get(wf.srv.URL + wf.loginPath(t))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	// The attacker: an unprivileged local program on another port.
	var mu sync.Mutex
	var stolen []*http.Cookie
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		stolen = append(stolen, r.Cookies()...)
		mu.Unlock()
		_, _ = io.WriteString(w, "hello")
	}))
	defer evil.Close()
	// The browser visits it (a link, a redirect, a local dev tool page …).
	resp, err = browser.Get(evil.URL + "/pixel.png")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	browser.CloseIdleConnections()

	mu.Lock()
	var session *http.Cookie
	for _, c := range stolen {
		if strings.HasPrefix(c.Name, "peergram_session_") {
			session = c
		}
	}
	mu.Unlock()
	if session == nil {
		t.Fatal("the session cookie did not reach another port: cookie jars ignore ports, so this attack's premise holds in browsers")
	}
	t.Logf("another port of 127.0.0.1 received the session cookie %s", session.Name)

	// The attacker's process uses it directly, with no browser headers and
	// no CSRF token (or a guessed one): the API must refuse every call.
	// (Before the fix, GET /v1/web/session handed out the token for the
	// cookie alone; that route is gone, and the token only ever reaches
	// the client's origin in the login redirect's fragment.)
	for _, try := range []struct{ method, path, body, csrf string }{
		{"GET", "/v1/web/session", "", ""},
		{"GET", "/v1/contacts", "", ""},
		{"GET", "/v1/identity", "", "x"},
		{"POST", "/v1/messages", `{"contact":"alice","text":"forged"}`, ""},
	} {
		h := map[string]string{}
		if try.csrf != "" {
			h[localapi.CSRFHeader] = try.csrf
		}
		resp, body := wf.raw(t, try.method, try.path, try.body, h, session)
		if resp.StatusCode < 400 {
			t.Errorf("ATTACK WORKS: a session cookie received on another port of 127.0.0.1 alone gives a local process %s %s = %d %s",
				try.method, try.path, resp.StatusCode, strings.TrimSpace(body))
		}
	}
}

// A browser session is as strong as the bearer token: it can make the
// daemon read any file of the user (POST /v1/files with a path, sent to a
// contact) and write any file (POST /v1/files/{id}/download with out,
// which renames over an existing file). Any XSS in the client or any stolen
// cookie becomes arbitrary file read/write.
func TestReview5BrowserSessionReadsAndWritesAnyPath(t *testing.T) {
	wf := newWebFixture(t)
	cookie, csrf := wf.login(t)
	h := map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": wf.own(), localapi.CSRFHeader: csrf, "Content-Type": "application/json"}

	secret := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(secret, []byte("PRIVATE KEY"), 0o600); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"chat": "alice", "path": secret})
	resp, got := wf.raw(t, "POST", "/v1/files", string(body), h, cookie)
	if resp.StatusCode == http.StatusCreated {
		t.Errorf("ATTACK WORKS: a browser session sends an arbitrary local file (%s) to a contact via POST /v1/files: %d %s",
			secret, resp.StatusCode, strings.TrimSpace(got))
	}
	var m struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal([]byte(got), &m)
	if m.ID == "" {
		return
	}
	out := filepath.Join(t.TempDir(), ".bashrc")
	body, _ = json.Marshal(map[string]string{"out": out})
	resp, got = wf.raw(t, "POST", "/v1/files/"+m.ID+"/download", string(body), h, cookie)
	if resp.StatusCode == http.StatusOK {
		t.Errorf("ATTACK WORKS: a browser session picks any output path for a download (out=%s): %d %s", out, resp.StatusCode, strings.TrimSpace(got))
	}
}

// Host header variants: none that is not a loopback name may pass, even
// with a valid session cookie.
func TestReview5HostVariants(t *testing.T) {
	wf := newWebFixture(t)
	cookie, _ := wf.login(t)
	_, port, _ := net.SplitHostPort(wf.hostPort())
	bad := []string{
		"localhost.", "localhost.:" + port, "127.0.0.1.", "127.0.0.1.evil.example", "127.0.0.1.nip.io:" + port,
		"evil.example", "localhost.evil.example", "evil.localhost", "127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1",
		"0.0.0.0:" + port, "[::]:" + port, "[fe80::1]:" + port, "[::1%25lo]:" + port, "evil.example:" + port + "@127.0.0.1",
		"%31%32%37.0.0.1", // (a trailing space is trimmed by the server's header parser: that Host is loopback)
	}
	for _, host := range bad {
		req := "GET /v1/web/session HTTP/1.1\r\nHost: " + host + "\r\nCookie: " + cookie.Name + "=" + cookie.Value + "\r\nConnection: close\r\n\r\n"
		resp, body := wf.rawHTTP(t, req)
		if resp.StatusCode == http.StatusOK {
			t.Errorf("ATTACK WORKS: Host %q passes the loopback check: %d %s", host, resp.StatusCode, strings.TrimSpace(body))
		}
		req = "GET / HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n"
		if resp, _ := wf.rawHTTP(t, req); resp.StatusCode == http.StatusOK {
			t.Errorf("ATTACK WORKS: Host %q gets the client's files", host)
		}
	}
	// Absolute-form request target naming another host, Host header ours.
	req := "GET http://evil.example/v1/web/session HTTP/1.1\r\nHost: " + wf.hostPort() + "\r\nCookie: " + cookie.Name + "=" + cookie.Value + "\r\nConnection: close\r\n\r\n"
	if resp, body := wf.rawHTTP(t, req); resp.StatusCode == http.StatusOK {
		t.Errorf("ATTACK WORKS: absolute-form target http://evil.example passes: %s", body)
	}
}

// Path tricks to reach API routes without credentials.
func TestReview5PathTricksNeedAuth(t *testing.T) {
	wf := newWebFixture(t)
	targets := []string{
		"//v1/contacts", "/v1//contacts", "/v1/../v1/contacts", "/./v1/contacts", "/x/../v1/contacts",
		"/v1%2fcontacts", "/v1%2Fcontacts", "/%76%31/contacts", "/%2e/v1/contacts", "/v1/contacts/", "/v1/contacts?",
		"/v1/contacts#x", "/V1/contacts", "/v1", "/v1/", "/login/../v1/contacts", "/login%2f..%2fv1/contacts",
		"/v1/contacts%00", "/v1/identity;x", "/v1/./identity", "/v1/events", "/v1/web/session",
	}
	for _, method := range []string{"GET", "HEAD", "OPTIONS", "POST"} {
		for _, p := range targets {
			req := method + " " + p + " HTTP/1.1\r\nHost: " + wf.hostPort() + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
			resp, body := wf.rawHTTP(t, req)
			if resp.StatusCode >= 200 && resp.StatusCode < 300 {
				t.Errorf("ATTACK WORKS: %s %s without credentials: %d %.200s", method, p, resp.StatusCode, body)
			}
			if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode/100 == 3 && method != "GET" {
				t.Logf("%s %s redirects to %s", method, p, loc)
			}
		}
	}
	// A preflight from the server's own origin or with no Origin is not a
	// way around auth either.
	req := "OPTIONS /v1/contacts HTTP/1.1\r\nHost: " + wf.hostPort() + "\r\nOrigin: " + wf.own() +
		"\r\nAccess-Control-Request-Method: DELETE\r\nConnection: close\r\n\r\n"
	if resp, _ := wf.rawHTTP(t, req); resp.StatusCode/100 == 2 {
		t.Errorf("ATTACK WORKS: preflight from own origin answered 2xx without auth")
	}
	// CONNECT and the asterisk form.
	for _, req := range []string{
		"CONNECT " + wf.hostPort() + " HTTP/1.1\r\nHost: " + wf.hostPort() + "\r\nConnection: close\r\n\r\n",
		"CONNECT /v1/contacts HTTP/1.1\r\nHost: " + wf.hostPort() + "\r\nConnection: close\r\n\r\n",
	} {
		if resp, body := wf.rawHTTP(t, req); resp.StatusCode/100 == 2 {
			t.Errorf("ATTACK WORKS: %q: %d %s", strings.SplitN(req, "\r\n", 2)[0], resp.StatusCode, body)
		}
	}
}

// Cross-origin variants riding the cookie: the daemon reached as
// localhost, another port, a sandboxed (null) origin, an old browser that
// sends no Sec-Fetch-Site, and near-miss spellings of the own origin.
func TestReview5CrossOriginVariants(t *testing.T) {
	wf := newWebFixture(t)
	cookie, csrf := wf.login(t)
	_, port, _ := net.SplitHostPort(wf.hostPort())
	origins := []string{
		"http://localhost:" + port, "http://127.0.0.1:1", "null", "http://127.0.0.1", "https://" + wf.hostPort(),
		wf.own() + "/", wf.own() + ".evil.example", "http://[::1]:" + port, "HTTP://" + wf.hostPort(),
		"http://127.0.0.1:0" + port,
	}
	for _, o := range origins {
		for _, site := range []string{"", "same-origin", "same-site", "cross-site", "none"} {
			h := map[string]string{"Origin": o}
			if site != "" {
				h["Sec-Fetch-Site"] = site
			}
			if resp, body := wf.raw(t, "GET", "/v1/web/session", "", h, cookie); resp.StatusCode == http.StatusOK {
				t.Errorf("ATTACK WORKS: CSRF token handed to Origin %q (Sec-Fetch-Site %q): %s", o, site, strings.TrimSpace(body))
			}
			h[localapi.CSRFHeader] = csrf
			if resp, _ := wf.raw(t, "POST", "/v1/messages", `{"contact":"alice","text":"csrf"}`, h, cookie); resp.StatusCode == http.StatusCreated {
				t.Errorf("ATTACK WORKS: cookie POST accepted from Origin %q (Sec-Fetch-Site %q)", o, site)
			}
		}
	}
	// Sec-Fetch-Site same-site/cross-site without Origin (no-cors GET,
	// navigation from another port): refused, static files included.
	for _, site := range []string{"same-site", "cross-site", "Same-Origin ", "same-origin, cross-site"} {
		h := map[string]string{"Sec-Fetch-Site": site, localapi.CSRFHeader: csrf}
		if resp, _ := wf.raw(t, "GET", "/v1/events", "", h, cookie); resp.StatusCode == http.StatusOK {
			t.Errorf("ATTACK WORKS: event stream opened with Sec-Fetch-Site %q", site)
		}
	}
	// The event stream and HEAD /v1/web/session need the CSRF token.
	for _, m := range []string{"GET", "HEAD"} {
		p := "/v1/events"
		if m == "HEAD" {
			p = "/v1/web/session"
		}
		if resp, _ := wf.raw(t, m, p, "", map[string]string{"Sec-Fetch-Site": "same-origin"}, cookie); resp.StatusCode == http.StatusOK {
			t.Errorf("ATTACK WORKS: %s %s with the cookie and no CSRF token", m, p)
		}
	}
}

// One login code redeemed by many at once yields exactly one session.
func TestReview5LoginCodeRace(t *testing.T) {
	wf := newWebFixture(t)
	path := wf.loginPath(t)
	const n = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", wf.srv.URL+path, nil)
			cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := cl.Do(req)
			if err != nil {
				return
			}
			resp.Body.Close()
			if len(resp.Cookies()) > 0 {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("ATTACK WORKS: one login code opened %d sessions", wins)
	}
	// Variants of the spent code do not work either.
	code := strings.TrimPrefix(path, "/login?code=")
	dec, _ := url.QueryUnescape(code)
	for _, p := range []string{
		"/login?code=" + strings.ToLower(code), "/login?code=" + code + "%20", "/login?code=" + code + "&code=" + code,
		"/login?code=%20" + code, "/login?code=" + url.QueryEscape(dec+"\n"),
	} {
		if resp, _ := wf.raw(t, "GET", p, "", nil); len(resp.Cookies()) > 0 {
			t.Errorf("ATTACK WORKS: a variant of a spent code (%s) opens a session", p)
		}
	}
}

// A page on another port of 127.0.0.1 may set cookies for 127.0.0.1 (no
// port isolation). A cookie of the same name with a longer Path is sent
// first by browsers; the server reads only the first one, so the page logs
// the user's web client out (or, were the value a session of the
// attacker's, would fixate it).
func TestReview5CookieTossingShadowsSession(t *testing.T) {
	wf := newWebFixture(t)
	cookie, csrf := wf.login(t)
	h := map[string]string{"Sec-Fetch-Site": "same-origin", localapi.CSRFHeader: csrf}
	// Browser order for "name=junk; Path=/v1" set by 127.0.0.1:OTHER and
	// the real "name=…; Path=/": longer path first.
	resp, _ := wf.raw(t, "GET", "/v1/contacts", "", h, &http.Cookie{Name: cookie.Name, Value: "junk"}, cookie)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("ATTACK WORKS: a cookie of the same name tossed by another port of 127.0.0.1 (Path=/v1) shadows the session: %d (web client logged out)", resp.StatusCode)
	}
}

// Upload names: nothing lands outside the private spool, whatever the
// name, and nothing is left behind.
func TestReview5UploadSpoolNames(t *testing.T) {
	wf := newWebFixture(t)
	cookie, csrf := wf.login(t)
	h := map[string]string{"Sec-Fetch-Site": "same-origin", localapi.CSRFHeader: csrf, "Content-Type": "application/octet-stream"}
	parent := filepath.Dir(wf.uploads)
	if err := os.MkdirAll(wf.uploads, 0o700); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadDir(parent)
	for _, name := range []string{
		"...", ". .", "..\u2215x", "..%2fx", "%2e%2e%2fx", "x\x01", "a\nb", "-rf", "\u202egpj.exe", "con", "aux.txt",
		strings.Repeat("a", 255), strings.Repeat("é", 128), "..\\", "./", "x/.", "/etc/passwd",
	} {
		resp, body := wf.raw(t, "POST", "/v1/chats/alice/upload?name="+url.QueryEscape(name), "x", h, cookie)
		if resp.StatusCode >= 500 {
			t.Errorf("upload named %q: %d %s", name, resp.StatusCode, body)
		}
	}
	after, _ := os.ReadDir(parent)
	if len(after) != len(before) {
		t.Errorf("ATTACK WORKS: uploads created entries next to the spool: before %v after %v", before, after)
	}
	if left, _ := os.ReadDir(wf.uploads); len(left) != 0 {
		t.Errorf("spool left behind: %v", left)
	}
	// Content-Length over the limit is refused before reading.
	req := fmt.Sprintf("POST /v1/chats/alice/upload?name=big HTTP/1.1\r\nHost: %s\r\nCookie: %s=%s\r\n%s: %s\r\nSec-Fetch-Site: same-origin\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
		wf.hostPort(), cookie.Name, cookie.Value, localapi.CSRFHeader, csrf, int64(localapi.MaxUploadBytes)+1)
	if resp, _ := wf.rawHTTP(t, req); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("an upload announcing %d bytes: %d, want 413", int64(localapi.MaxUploadBytes)+1, resp.StatusCode)
	}
}

// Serve sets ReadHeaderTimeout but no ReadTimeout and no limit on
// connections. An unauthenticated local process sends headers in time and
// then trickles a small body: the server, discarding the unread body
// before it writes its 404/401, waits forever, holding a goroutine and a
// file descriptor per connection (repeat to exhaust the daemon's fds).
func TestReview5SlowBodyPinsConnection(t *testing.T) {
	b := localapitest.New(testIdentity)
	s, err := localapi.New(localapi.Config{Backend: b, Token: token, WebFiles: fstest.MapFS{"index.html": {Data: []byte("x")}}, BaseURL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := localapi.Listen("")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// No token, no cookie: a public path.
	if _, err := io.WriteString(c, "POST /login HTTP/1.1\r\nHost: "+ln.Addr().String()+"\r\nContent-Length: 1000\r\n\r\nx"); err != nil {
		t.Fatal(err)
	}
	const wait = 12 * time.Second // past readHeaderTimeout (10s)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	if n == 0 && errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("ATTACK WORKS: an unauthenticated connection trickling its body got no answer and was not closed within %v "+
			"(no ReadTimeout / body deadline; unbounded connections)", wait)
	}
}

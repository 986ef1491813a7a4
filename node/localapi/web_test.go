package localapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/node/localapi"
	"github.com/peergram/peergram/node/localapi/localapitest"
)

// webFixture is a server with a web client and a settable clock.
type webFixture struct {
	*fixture
	mu      sync.Mutex
	now     time.Time
	uploads string
}

func newWebFixture(t *testing.T) *webFixture {
	t.Helper()
	return newWebFixtureOn(t, nil, time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
}

// newWebFixtureOn serves backend b (a new one if nil) with the clock at
// now.
func newWebFixtureOn(t *testing.T, b *localapitest.Backend, now time.Time) *webFixture {
	t.Helper()
	wf := &webFixture{now: now, uploads: filepath.Join(t.TempDir(), "uploads")}
	edit := func(c *localapi.Config) {
		c.WebFiles = fstest.MapFS{
			"index.html": {Data: []byte("<!doctype html><title>Peergram</title>")},
			"app.js":     {Data: []byte("export {}")},
		}
		c.BaseURL = "http://127.0.0.1:1" // the test server's address is not known yet; only path and query are used
		c.UploadDir = wf.uploads
		c.Now = func() time.Time { wf.mu.Lock(); defer wf.mu.Unlock(); return wf.now }
	}
	if b == nil {
		wf.fixture = newFixture(t, edit)
	} else {
		wf.fixture = serve(t, b, edit)
	}
	return wf
}

func (wf *webFixture) advance(d time.Duration) { wf.mu.Lock(); wf.now = wf.now.Add(d); wf.mu.Unlock() }

// loginPath asks for a login link with the bearer token (as `peergram
// open` does) and returns its path and query.
func (wf *webFixture) loginPath(t *testing.T) string {
	t.Helper()
	resp, body := wf.do(t, "POST", "/v1/web/login", "", auth())
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/web/login: %d %s", resp.StatusCode, body)
	}
	var l localapi.LoginLink
	decodeInto(t, body, &l)
	u, err := url.Parse(l.URL)
	if err != nil || u.Path != "/login" || u.Query().Get("code") == "" {
		t.Fatalf("login link %q", l.URL)
	}
	return u.RequestURI()
}

// raw sends a request without following redirects.
func (wf *webFixture) raw(t *testing.T, method, path, body string, header map[string]string, cookies ...*http.Cookie) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, wf.srv.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := cl.Do(req)
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

// login visits a login link as a browser would and returns the session
// cookie and the CSRF token.
func (wf *webFixture) login(t *testing.T) (*http.Cookie, string) {
	t.Helper()
	resp, body := wf.raw(t, "GET", wf.loginPath(t), "", map[string]string{"Sec-Fetch-Site": "none"})
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || err != nil || loc.Path != "/" {
		t.Fatalf("login: %d %q %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	frag, err := url.ParseQuery(loc.Fragment)
	csrf := frag.Get("csrf")
	if err != nil || len(csrf) < 32 {
		t.Fatalf("login redirect %q carries no CSRF token in its fragment", resp.Header.Get("Location"))
	}
	cs := resp.Cookies()
	if len(cs) != 1 {
		t.Fatalf("login set %d cookies", len(cs))
	}
	c := cs[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || !strings.HasPrefix(c.Name, "peergram_session_") {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/", c)
	}
	return &http.Cookie{Name: c.Name, Value: c.Value}, csrf
}

func (wf *webFixture) own() string { return wf.srv.URL } // http://127.0.0.1:PORT

func TestWebLoginLinkWorksOnce(t *testing.T) {
	wf := newWebFixture(t)
	path := wf.loginPath(t)
	resp, _ := wf.raw(t, "GET", path, "", nil)
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 || !strings.HasPrefix(resp.Header.Get("Location"), "/#csrf=") {
		t.Fatalf("first use: %d, %d cookies, to %q", resp.StatusCode, len(resp.Cookies()), resp.Header.Get("Location"))
	}
	resp, body := wf.raw(t, "GET", path, "", nil)
	if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Fatalf("ATTACK WORKS: second use of a login link: %d, %d cookies: %s", resp.StatusCode, len(resp.Cookies()), body)
	}

	expired := wf.loginPath(t)
	wf.advance(localapi.LoginLinkTTL + time.Second)
	if resp, _ := wf.raw(t, "GET", expired, "", nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("ATTACK WORKS: an expired login link: %d", resp.StatusCode)
	}
	for _, code := range []string{"", "x", strings.Repeat("A", 52)} {
		if resp, _ := wf.raw(t, "GET", "/login?code="+code, "", nil); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("ATTACK WORKS: made-up code %q: %d", code, resp.StatusCode)
		}
	}
	// A login link opened from another page as a top-level load (peergram
	// open's redirect file) works; fetched by another page, it does not.
	path = wf.loginPath(t)
	if resp, _ := wf.raw(t, "GET", path, "", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("ATTACK WORKS: a login link loaded by another site's page: %d", resp.StatusCode)
	}
	if resp, _ := wf.raw(t, "GET", path, "", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a login link opened from a file: %d", resp.StatusCode)
	}
	// An API call as a top-level navigation from elsewhere is still refused.
	if resp, _ := wf.raw(t, "GET", "/v1/contacts", "", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("ATTACK WORKS: the API opened as a page from another site: %d", resp.StatusCode)
	}
}

func TestWebSessionNeedsCSRFAndOwnOrigin(t *testing.T) {
	wf := newWebFixture(t)
	cookie, csrf := wf.login(t)
	send := `{"contact":"alice","text":"hi"}`
	ok := map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": wf.own(), localapi.CSRFHeader: csrf, "Content-Type": "application/json"}
	if resp, body := wf.raw(t, "POST", "/v1/messages", send, ok, cookie); resp.StatusCode != http.StatusCreated {
		t.Fatalf("the client's own send: %d %s", resp.StatusCode, body)
	}
	if resp, body := wf.raw(t, "GET", "/v1/contacts", "", map[string]string{"Sec-Fetch-Site": "same-origin", localapi.CSRFHeader: csrf}, cookie); resp.StatusCode != http.StatusOK {
		t.Fatalf("the client's own GET: %d %s", resp.StatusCode, body)
	}

	with := func(edit func(h map[string]string)) map[string]string {
		h := map[string]string{}
		for k, v := range ok {
			h[k] = v
		}
		edit(h)
		return h
	}
	attacks := []struct {
		name   string
		method string
		path   string
		header map[string]string
		cookie *http.Cookie
		want   int
	}{
		{"no csrf header", "POST", "/v1/messages", with(func(h map[string]string) { delete(h, localapi.CSRFHeader) }), cookie, 401},
		{"wrong csrf header", "POST", "/v1/messages", with(func(h map[string]string) { h[localapi.CSRFHeader] = csrf[:len(csrf)-1] + "x" }), cookie, 401},
		{"GET with side effects without csrf", "GET", "/v1/chats/alice/messages?mark_read=true", with(func(h map[string]string) { delete(h, localapi.CSRFHeader) }), cookie, 401},
		{"another port of 127.0.0.1", "POST", "/v1/messages", with(func(h map[string]string) { h["Origin"] = "http://127.0.0.1:1"; h["Sec-Fetch-Site"] = "same-site" }), cookie, 403},
		{"another origin, same-origin claimed", "POST", "/v1/messages", with(func(h map[string]string) { h["Origin"] = "http://evil.example" }), cookie, 403},
		{"no-cors GET from another site", "GET", "/v1/contacts", map[string]string{"Sec-Fetch-Site": "cross-site"}, cookie, 403},
		{"client files to another site", "GET", "/app.js", map[string]string{"Sec-Fetch-Site": "cross-site"}, nil, 403},
		{"client files to another port", "GET", "/", map[string]string{"Sec-Fetch-Site": "same-site"}, nil, 403},
		{"made-up session", "POST", "/v1/messages", ok, &http.Cookie{Name: cookie.Name, Value: "x" + cookie.Value[1:]}, 401},
		{"session cannot mint login links", "POST", "/v1/web/login", ok, cookie, 401},
		{"the cookie alone", "GET", "/v1/contacts", nil, cookie, 401},
		{"path to send from a browser", "POST", "/v1/files", ok, cookie, 403},
		{"media files from a browser", "POST", "/v1/calls", ok, cookie, 403},
		{"media files to answer from a browser", "POST", "/v1/calls/00000000000000000000000000000000/answer", ok, cookie, 403},
		{"media files for a group call from a browser", "POST", "/v1/groups/g/call/join", ok, cookie, 403},
		{"download path from a browser", "POST", "/v1/files/00000000000000000000000000000000/download", ok, cookie, 403},
		{"media file to share from a browser", "POST", "/v1/calls/00000000000000000000000000000000/share", ok, cookie, 403},
		{"rebinding host", "GET", "/v1/contacts", with(func(h map[string]string) { h["Host"] = "evil.example" }), cookie, 403},
	}
	bodies := map[string]string{
		"/v1/files": `{"chat":"alice","path":"/etc/passwd"}`,
		"/v1/calls": `{"contact":"alice","audio":"/etc/passwd","record":"/tmp"}`,
		"/v1/calls/00000000000000000000000000000000/answer":   `{"video":"/etc/passwd"}`,
		"/v1/groups/g/call/join":                              `{"record":"/tmp"}`,
		"/v1/files/00000000000000000000000000000000/download": `{"out":"/tmp/.bashrc"}`,
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			var cs []*http.Cookie
			if a.cookie != nil {
				cs = append(cs, a.cookie)
			}
			h := a.header
			var req func() (*http.Response, string)
			if host, ok := h["Host"]; ok {
				req = func() (*http.Response, string) {
					hh := map[string]string{}
					for k, v := range h {
						hh[k] = v
					}
					hh["Host"] = host
					return wf.do(t, a.method, a.path, "", hh) // do sets req.Host
				}
			} else {
				body := ""
				if a.method == "POST" {
					body = send
					if b, ok := bodies[a.path]; ok {
						body = b
					}
				}
				req = func() (*http.Response, string) { return wf.raw(t, a.method, a.path, body, h, cs...) }
			}
			resp, body := req()
			if resp.StatusCode != a.want {
				t.Fatalf("ATTACK WORKS? %s %s: %d, want %d: %s", a.method, a.path, resp.StatusCode, a.want, body)
			}
		})
	}
	// Logged out: the cookie is dead.
	if resp, _ := wf.raw(t, "POST", "/v1/web/logout", "", ok, cookie); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if resp, _ := wf.raw(t, "GET", "/v1/contacts", "", ok, cookie); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("ATTACK WORKS: a logged-out cookie: %d", resp.StatusCode)
	}
}

// An origin allowed for bearer-token apps (Config.AllowedOrigins) does not
// get to use the browser session.
func TestWebSessionNotForAllowedOrigins(t *testing.T) {
	wf := newWebFixture(t)
	app := "http://app.example"
	wf.fixture = serve(t, wf.backend, func(c *localapi.Config) {
		c.WebFiles = fstest.MapFS{"index.html": {Data: []byte("x")}}
		c.BaseURL = "http://127.0.0.1:1"
		c.AllowedOrigins = []string{app}
	})
	cookie, csrf := wf.login(t)
	h := map[string]string{"Origin": app, localapi.CSRFHeader: csrf}
	if resp, body := wf.raw(t, "GET", "/v1/contacts", "", h, cookie); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("ATTACK WORKS: an allowed origin rides the browser session: %d %s", resp.StatusCode, body)
	}
	h["Authorization"] = "Bearer " + token
	if resp, body := wf.raw(t, "GET", "/v1/contacts", "", h); resp.StatusCode != http.StatusOK {
		t.Fatalf("the allowed origin with the token: %d %s", resp.StatusCode, body)
	}
}

func TestWebSessionExpiresWhenIdle(t *testing.T) {
	wf := newWebFixture(t)
	cookie, csrf := wf.login(t)
	h := map[string]string{"Sec-Fetch-Site": "same-origin", localapi.CSRFHeader: csrf}
	wf.advance(localapi.SessionIdleTTL - time.Hour)
	if resp, _ := wf.raw(t, "GET", "/v1/contacts", "", h, cookie); resp.StatusCode != http.StatusOK {
		t.Fatalf("a session used within its idle time: %d", resp.StatusCode)
	}
	wf.advance(localapi.SessionIdleTTL + time.Hour)
	if resp, _ := wf.raw(t, "GET", "/v1/contacts", "", h, cookie); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("ATTACK WORKS: a session idle past %v: %d", localapi.SessionIdleTTL, resp.StatusCode)
	}
}

func TestWebClientFiles(t *testing.T) {
	wf := newWebFixture(t)
	resp, body := wf.raw(t, "GET", "/", "", map[string]string{"Sec-Fetch-Site": "none"})
	if resp.StatusCode != 200 || !strings.Contains(body, "<title>Peergram</title>") {
		t.Fatalf("GET /: %d %q", resp.StatusCode, body)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "frame-ancestors 'none'", "script-src 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("Cross-Origin-Resource-Policy") != "same-origin" {
		t.Errorf("headers %v", resp.Header)
	}
	resp, _ = wf.raw(t, "GET", "/app.js", "", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
		t.Fatalf("GET /app.js: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, p := range []string{"/nope.js", "/../main_test.go", "/%2e%2e/main_test.go", "//etc/passwd"} {
		if resp, body := wf.raw(t, "GET", p, "", nil); resp.StatusCode == 200 {
			t.Errorf("GET %s: 200 %q", p, body)
		}
	}
	// Without a web client the daemon serves none, and the API still
	// wants its token everywhere.
	plain := newFixture(t, nil)
	if resp, _ := plain.do(t, "GET", "/", "", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET / without a client: %d", resp.StatusCode)
	}
	if resp, _ := plain.do(t, "POST", "/v1/web/login", "", auth()); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("POST /v1/web/login without a client: %d", resp.StatusCode)
	}
}

func TestWebUpload(t *testing.T) {
	wf := newWebFixture(t)
	cookie, csrf := wf.login(t)
	h := map[string]string{"Sec-Fetch-Site": "same-origin", localapi.CSRFHeader: csrf, "Content-Type": "application/octet-stream"}
	resp, body := wf.raw(t, "POST", "/v1/chats/alice/upload?name=photo.png&caption=look", "PNGDATA", h, cookie)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %d %s", resp.StatusCode, body)
	}
	var m struct {
		Text string `json:"text"`
		File struct {
			Name string `json:"name"`
			Size int64  `json:"size"`
		} `json:"file"`
	}
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	if m.Text != "look" || m.File.Name != "photo.png" || m.File.Size != 7 {
		t.Fatalf("uploaded message %+v", m)
	}
	left, err := os.ReadDir(wf.uploads)
	if err != nil || len(left) != 0 {
		t.Fatalf("spool left behind: %v %v", left, err)
	}
	for _, name := range []string{"", "..", "../../x", "a/b", `a\b`} {
		if resp, body := wf.raw(t, "POST", "/v1/chats/alice/upload?name="+url.QueryEscape(name), "x", h, cookie); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("ATTACK WORKS? upload named %q: %d %s", name, resp.StatusCode, body)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(wf.uploads), "x")); err == nil {
		t.Fatal("ATTACK WORKS: an upload escaped its spool directory")
	}
	if resp, _ := wf.raw(t, "POST", "/v1/chats/alice/upload?name=a.txt", "x", map[string]string{"Sec-Fetch-Site": "same-origin"}, cookie); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("ATTACK WORKS: upload without the CSRF token: %d", resp.StatusCode)
	}
}

// A local program that opens connections by the thousand gets MaxConns of
// them served; the rest wait until one closes.
func TestServeLimitsConnections(t *testing.T) {
	s, err := localapi.New(localapi.Config{Backend: localapitest.New(testIdentity), Token: token})
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
	t.Cleanup(func() { cancel(); <-done })
	addr := ln.Addr().String()
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range localapi.MaxConns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	health := func(timeout time.Duration) error {
		cl := &http.Client{Timeout: timeout}
		req, _ := http.NewRequest("GET", "http://"+addr+"/v1/health", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := cl.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	if err := health(time.Second); err == nil {
		t.Fatalf("ATTACK WORKS: a request was served with %d idle connections open", localapi.MaxConns)
	}
	held[0].Close()
	held = held[1:]
	if err := health(5 * time.Second); err != nil {
		t.Fatalf("a connection freed, the next request still waits: %v", err)
	}
}

func TestIdentityQR(t *testing.T) {
	wf := newWebFixture(t)
	resp, body := wf.do(t, "GET", "/v1/identity/qr.png", "", auth())
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("GET /v1/identity/qr.png: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	img, err := png.Decode(strings.NewReader(body))
	if err != nil || img.Bounds().Dx() < 100 {
		t.Fatalf("not a QR image: %v", err)
	}
	if resp, _ := wf.do(t, "GET", "/v1/identity/qr.png", "", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without credentials: %d", resp.StatusCode)
	}
}

// Pages of a chat: the newest first page, then the ones before it, oldest
// first within a page, with no gap and no repeat.
func TestMessagesPaged(t *testing.T) {
	f := newFixture(t, nil)
	var want []string
	for i := range 25 {
		want = append(want, f.receive(t, fmt.Sprintf("m%02d", i)).Text)
	}
	var got []string
	before := ""
	for range 10 {
		path := "/v1/chats/alice/messages?mark_read=false&limit=10"
		if before != "" {
			path += "&before=" + before
		}
		resp, body := f.do(t, "GET", path, "", auth())
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		var ms []struct{ ID, Text string }
		decodeInto(t, body, &ms)
		if len(ms) == 0 {
			break
		}
		var texts []string
		for _, m := range ms {
			texts = append(texts, m.Text)
		}
		got = append(texts, got...)
		before = ms[0].ID
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("paged chat %v, want %v", got, want)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "before=00000000000000000000000000000000", "limit=5&before=nope"} {
		if resp, _ := f.do(t, "GET", "/v1/chats/alice/messages?"+q, "", auth()); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("?%s: %d, want 400", q, resp.StatusCode)
		}
	}
}

// contentBackend serves one received file from disk.
type contentBackend struct {
	*localapitest.Backend
	file chat.File
}

func (b contentBackend) Download(_ context.Context, id, out string) (chat.File, error) {
	if id != b.file.ID {
		return chat.File{}, fmt.Errorf("no file %q: %w", id, chat.ErrInvalid)
	}
	return b.file, nil
}

// A peer's file goes to the browser as a download, never as a page of the
// API's origin: an HTML file with a script in it is not rendered there.
func TestFileContentIsAnAttachment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "invoice.html")
	const evil = "<script>fetch('/v1/contacts')</script>"
	if err := os.WriteFile(path, []byte(evil), 0o600); err != nil {
		t.Fatal(err)
	}
	b := contentBackend{localapitest.New(testIdentity), chat.File{ID: "00112233445566778899aabbccddeeff", Name: "invoice.html", Mime: "text/html", Path: path, State: chat.FileDownloaded}}
	s, err := localapi.New(localapi.Config{Backend: b, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/v1/files/"+b.file.ID+"/content", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != evil {
		t.Fatalf("content: %d %q", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("ATTACK WORKS: a peer's HTML file served as %q", ct)
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment") || !strings.Contains(cd, "invoice.html") {
		t.Errorf("ATTACK WORKS: Content-Disposition %q is not an attachment", cd)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "sandbox") {
		t.Errorf("ATTACK WORKS: no sandbox CSP on a peer's file: %q", csp)
	}
}

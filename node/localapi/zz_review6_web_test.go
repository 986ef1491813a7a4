package localapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/peergram/peergram/calls"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/node/localapi"
	"github.com/peergram/peergram/node/localapi/localapitest"
)

// review6Backend adds calls (client calls too), one file and a chat with
// an entry whose ID repeats (what the node lists when a contact opens a
// call whose ID is a message's: node/zz_review6_callid_test.go).
type review6Backend struct {
	*localapitest.Backend
	file chat.File
	dup  []chat.Message

	mu      sync.Mutex
	hits    int
	media   []calls.Media
	signals []calls.Signal
}

func (b *review6Backend) hit() { b.mu.Lock(); b.hits++; b.mu.Unlock() }
func (b *review6Backend) StartCall(_ context.Context, _ string, m calls.Media) (calls.Call, error) {
	b.mu.Lock()
	b.hits++
	b.media = append(b.media, m)
	b.mu.Unlock()
	return calls.Call{ID: "00000000000000000000000000000001"}, nil
}
func (b *review6Backend) AnswerCall(_ context.Context, _ string, m calls.Media) (calls.Call, error) {
	b.mu.Lock()
	b.hits++
	b.media = append(b.media, m)
	b.mu.Unlock()
	return calls.Call{}, nil
}
func (b *review6Backend) DeclineCall(context.Context, string) error { b.hit(); return nil }
func (b *review6Backend) HangupCall(context.Context, string) error  { b.hit(); return nil }
func (b *review6Backend) ShareScreen(context.Context, string, string) error {
	b.hit()
	return nil
}
func (b *review6Backend) UnshareScreen(context.Context, string) error { b.hit(); return nil }
func (b *review6Backend) Call(context.Context, string) (calls.Call, error) {
	return calls.Call{}, nil
}
func (b *review6Backend) Calls(context.Context) ([]calls.Call, error) { return nil, nil }
func (b *review6Backend) CallOffer(_ context.Context, id string) (calls.ClientOffer, error) {
	b.hit()
	if id != "00000000000000000000000000000001" {
		return calls.ClientOffer{}, fmt.Errorf("no call: %w", chat.ErrUnknownCall)
	}
	return calls.ClientOffer{SDP: "v=0"}, nil
}
func (b *review6Backend) CallSignal(_ context.Context, id string, s calls.Signal) error {
	b.mu.Lock()
	b.hits++
	b.signals = append(b.signals, s)
	b.mu.Unlock()
	return nil
}
func (b *review6Backend) Download(_ context.Context, id, out string) (chat.File, error) {
	if id != b.file.ID {
		return chat.File{}, fmt.Errorf("no file %q: %w", id, chat.ErrInvalid)
	}
	return b.file, nil
}
func (b *review6Backend) Messages(ctx context.Context, contact string, markRead bool) ([]chat.Message, error) {
	if b.dup != nil {
		return append([]chat.Message(nil), b.dup...), nil
	}
	return b.Backend.Messages(ctx, contact, markRead)
}

// newReview6Web serves b with a web client, as newWebFixture does.
func newReview6Web(t *testing.T, b *review6Backend) *webFixture {
	t.Helper()
	if _, err := b.AddContact(context.Background(), "acct-alice", "alice"); err != nil {
		t.Fatal(err)
	}
	wf := &webFixture{now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), uploads: filepath.Join(t.TempDir(), "uploads")}
	s, err := localapi.New(localapi.Config{Backend: b, Token: token,
		WebFiles:  fstest.MapFS{"index.html": {Data: []byte("<!doctype html>")}},
		BaseURL:   "http://127.0.0.1:1",
		UploadDir: wf.uploads,
		Now:       func() time.Time { wf.mu.Lock(); defer wf.mu.Unlock(); return wf.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	wf.fixture = &fixture{backend: b.Backend, srv: srv}
	return wf
}

// TestReview6BrowserCallRoutes: a browser session (cookie + CSRF token)
// cannot name media files or a record directory through the client-call
// routes, and the new routes need the CSRF token like every other.
func TestReview6BrowserCallRoutes(t *testing.T) {
	b := &review6Backend{Backend: localapitest.New(testIdentity)}
	wf := newReview6Web(t, b)
	cookie, csrf := wf.login(t)
	h := map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": wf.own(), localapi.CSRFHeader: csrf, "Content-Type": "application/json"}
	const id = "00000000000000000000000000000001"
	for _, c := range []struct{ path, body string }{
		{"/v1/calls", `{"contact":"alice","sdp":"v=0","audio":"/etc/passwd"}`},
		{"/v1/calls", `{"contact":"alice","sdp":"v=0","record":"/tmp"}`},
		{"/v1/calls/" + id + "/answer", `{"sdp":"v=0","video":"/home/u/.ssh/id_ed25519"}`},
		{"/v1/calls/" + id + "/answer", `{"record":"/home/u"}`},
		{"/v1/calls/" + id + "/share", `{"file":"/etc/shadow"}`},
	} {
		resp, body := wf.raw(t, "POST", c.path, c.body, h, cookie)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("ATTACK WORKS: browser POST %s %s: %d %s", c.path, c.body, resp.StatusCode, body)
		}
	}
	b.mu.Lock()
	if len(b.media) != 0 {
		t.Errorf("ATTACK WORKS: the backend got a browser's media paths: %+v", b.media)
	}
	b.mu.Unlock()
	// The signal route takes a Signal only (no unknown fields, bounded).
	if resp, body := wf.raw(t, "POST", "/v1/calls/"+id+"/signal", `{"type":"candidate","candidate":{"candidate":"x"},"file":"/etc/passwd"}`, h, cookie); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a signal with an unknown field: %d %s", resp.StatusCode, body)
	}
	big := `{"type":"answer","sdp":"` + strings.Repeat("a", localapi.MaxBodyBytes) + `"}`
	if resp, _ := wf.raw(t, "POST", "/v1/calls/"+id+"/signal", big, h, cookie); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a signal over MaxBodyBytes: %d", resp.StatusCode)
	}
	// Without the CSRF token (a page of another port, a navigation).
	noCSRF := map[string]string{"Sec-Fetch-Site": "same-origin"}
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/v1/calls/" + id + "/offer", ""},
		{"POST", "/v1/calls/" + id + "/signal", `{"type":"grant"}`},
		{"GET", "/v1/files/00112233445566778899aabbccddeeff/content", ""},
		{"GET", "/v1/identity/qr.png", ""},
	} {
		before := b.hits
		if resp, _ := wf.raw(t, r.method, r.path, r.body, noCSRF, cookie); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("ATTACK WORKS: %s %s with the cookie alone: %d", r.method, r.path, resp.StatusCode)
		}
		if b.hits != before {
			t.Errorf("ATTACK WORKS: %s %s reached the backend without the CSRF token", r.method, r.path)
		}
	}
	if resp, body := wf.raw(t, "GET", "/v1/calls/zz/offer", "", h, cookie); resp.StatusCode != http.StatusNotFound {
		t.Errorf("offer of an unknown call: %d %s", resp.StatusCode, body)
	}
}

// TestReview6FileContentHeaders: a peer-chosen file name cannot inject a
// header or turn the attachment inline; Range (one and many) and HEAD
// keep the attachment, the sandbox and no HTML type.
func TestReview6FileContentHeaders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	const evil = "<html><script>fetch('/v1/contacts')</script></html>"
	if err := os.WriteFile(path, []byte(evil), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"a.html\r\nContent-Type: text/html\r\nX-Injected: 1",
		`x.html"; filename="evil.html`,
		"x.html\x00.txt",
		"ü\u202egnp.html",
		"",
		strings.Repeat("A", 5000) + ".html",
		"a.html\nContent-Disposition: inline",
	} {
		b := &review6Backend{Backend: localapitest.New(testIdentity), file: chat.File{ID: "00112233445566778899aabbccddeeff", Name: name, Mime: "text/html", Path: path, State: chat.FileDownloaded}}
		wf := newReview6Web(t, b)
		for _, rq := range []struct {
			method string
			hdr    map[string]string
		}{
			{"GET", nil},
			{"HEAD", nil},
			{"GET", map[string]string{"Range": "bytes=0-5"}},
			{"GET", map[string]string{"Range": "bytes=0-5,10-20"}},
			{"GET", map[string]string{"Range": "bytes=0-5", "If-Range": "x"}},
		} {
			hdr := auth()
			for k, v := range rq.hdr {
				hdr[k] = v
			}
			resp, body := wf.do(t, rq.method, "/v1/files/"+b.file.ID+"/content", "", hdr)
			if resp.StatusCode >= 300 {
				t.Errorf("name %q %s %v: %d %s", name, rq.method, rq.hdr, resp.StatusCode, body)
				continue
			}
			cds := resp.Header.Values("Content-Disposition")
			ct := resp.Header.Get("Content-Type")
			if len(cds) != 1 || !strings.HasPrefix(cds[0], "attachment") {
				t.Errorf("ATTACK WORKS: name %q %s %v: Content-Disposition %q", name, rq.method, rq.hdr, cds)
			}
			if resp.Header.Get("X-Injected") != "" || strings.Contains(strings.ToLower(ct), "html") {
				t.Errorf("ATTACK WORKS: name %q %s %v: Content-Type %q, injected %q", name, rq.method, rq.hdr, ct, resp.Header.Get("X-Injected"))
			}
			if ct != "application/octet-stream" {
				t.Logf("name %q %s %v: Content-Type %q (a multi-range answer is multipart/byteranges; harmless: attachment, nosniff, sandbox)", name, rq.method, rq.hdr, ct)
			}
			if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "sandbox") || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("ATTACK WORKS: name %q %s %v: CSP %q nosniff %q", name, rq.method, rq.hdr, resp.Header.Get("Content-Security-Policy"), resp.Header.Get("X-Content-Type-Options"))
			}
		}
	}
}

// TestReview6PagingDuplicateIDs: a chat whose list holds two entries with
// one ID (a contact's call entry dated early, carrying the ID of a later
// message). A client pages back from the newest page with before= the
// oldest ID it holds, as the web client does: every entry must come once,
// none skipped.
func TestReview6PagingDuplicateIDs(t *testing.T) {
	var ms []chat.Message
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	id := func(i int) string { return fmt.Sprintf("%032x", i+1) }
	for i := range 12 {
		ms = append(ms, chat.Message{ID: id(i), Chat: "acct-alice", Text: fmt.Sprintf("m%02d", i), SentAt: t0.Add(time.Duration(i) * time.Hour)})
	}
	// The contact's call entry at the start carries the ID of m08.
	call := chat.Message{ID: id(8), Chat: "acct-alice", Text: "Missed call", SentAt: t0.Add(-time.Hour)}
	list := append([]chat.Message{call}, ms...)
	b := &review6Backend{Backend: localapitest.New(testIdentity), dup: list}
	wf := newReview6Web(t, b)
	seen := map[string]bool{}
	before := ""
	for range 20 {
		p := "/v1/chats/alice/messages?mark_read=false&limit=4"
		if before != "" {
			p += "&before=" + before
		}
		resp, body := wf.do(t, "GET", p, "", auth())
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", p, resp.StatusCode, body)
		}
		var page []chat.Message
		decodeInto(t, body, &page)
		if len(page) == 0 {
			break
		}
		for _, m := range page {
			seen[m.Text] = true
		}
		before = page[0].ID
	}
	var missing []string
	for _, m := range ms {
		if !seen[m.Text] {
			missing = append(missing, m.Text)
		}
	}
	if len(missing) > 0 {
		t.Errorf("ATTACK WORKS: paging back with before= skipped %v (before=%s matched the contact's early call entry first)", missing, id(8))
	}
}

// TestReview6PagingBounds: odd limit and before values are 400s, on direct
// and group chats.
func TestReview6PagingBounds(t *testing.T) {
	f := newFixture(t, nil)
	for i := range 3 {
		f.receive(t, fmt.Sprintf("m%d", i))
	}
	g, err := f.backend.CreateGroup(context.Background(), "g")
	if err != nil {
		t.Fatal(err)
	}
	for _, base := range []string{"/v1/chats/alice/messages?mark_read=false&", "/v1/groups/" + g.ID + "/messages?"} {
		for _, q := range []string{"limit=-1", "limit=0", "limit=1001", "limit=99999999999999999999", "limit=1e3", "limit=0x10", "limit=%205", "before=x", "limit=2&before=", "limit=2&before=" + strings.Repeat("f", 100000)} {
			resp, body := f.do(t, "GET", base+q, "", auth())
			switch {
			case q == "limit=2&before=":
				if resp.StatusCode != http.StatusOK {
					t.Errorf("%s%s: %d %s", base, q, resp.StatusCode, body)
				}
			case strings.HasPrefix(q, "limit=2&before=ff"):
				if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge && resp.StatusCode != http.StatusRequestURITooLong {
					t.Errorf("%s(long before): %d", base, resp.StatusCode)
				}
			default:
				if resp.StatusCode != http.StatusBadRequest {
					t.Errorf("%s%s: %d %s, want 400", base, q, resp.StatusCode, body)
				}
			}
		}
	}
}

package localapi

// The web client's door: one-time login links, browser sessions held in an
// HttpOnly cookie, and the checks that keep other web pages out.
//
// Why these checks and not CORS alone: cookies are scoped to a host, not to
// a port, and SameSite treats every page on 127.0.0.1 as the same site. So
// a page served by any other local program (http://127.0.0.1:OTHER) makes
// requests that carry our session cookie. A cookie-authenticated request is
// therefore accepted only when
//   - it comes from our own origin by the browser's word: Sec-Fetch-Site is
//     same-origin (or absent, for clients that do not send it) and any
//     Origin header is this server's own;
//   - and it carries the session's CSRF token in a header, which a page of
//     another origin can neither read nor send without a preflight we refuse.
//
// The Host check in guard (loopback names only) keeps out DNS rebinding.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skip2/go-qrcode"

	"github.com/peergram/peergram/node/chat"
)

const (
	// LoginLinkTTL is how long a login link from POST /v1/web/login works.
	LoginLinkTTL = 2 * time.Minute
	// SessionIdleTTL ends a browser session not used for this long.
	SessionIdleTTL = 30 * 24 * time.Hour
	// CSRFHeader carries a browser session's CSRF token on every API call.
	CSRFHeader = "X-Peergram-Csrf"

	maxLoginLinks   = 16 // outstanding links; the oldest is dropped past this
	maxWebSessions  = 32 // sessions; the least recently used is dropped past this
	sessionCookiePf = "peergram_session_"
)

// webSession is one browser's login.
type webSession struct {
	csrf     string
	lastUsed time.Time
	saved    time.Time // lastUsed as last kept by the backend
}

// WebDataBackend keeps the web client's data in the daemon's store
// (node.Node has it): browser sessions, so that a restart of the daemon
// does not log every browser out, and the preferences every browser of
// this daemon shares (GET/PUT /v1/web/prefs). Without it sessions last
// until the daemon stops and the routes answer 501.
type WebDataBackend interface {
	WebData(ctx context.Context, name string) ([]byte, error)
	KeepWebData(ctx context.Context, name string, data []byte) error
}

// storedSession is a session as the backend keeps it: the cookie's hash
// (never the cookie), the CSRF token and when it was last used.
type storedSession struct {
	Key      string `json:"key"`
	CSRF     string `json:"csrf"`
	LastUsed int64  `json:"last_used"` // unix seconds
}

// sessionSaveEvery is how stale a kept session's last use may get: its
// idle timeout counts from there after a restart.
const sessionSaveEvery = time.Hour

// webAuth holds login links and sessions, both keyed by the SHA-256 of
// the secret so that a memory dump or a timing difference in map lookups
// does not give the secret away. Sessions are kept by the backend when
// it can (links are not: one lives 2 minutes).
type webAuth struct {
	now      func() time.Time
	keep     WebDataBackend // nil: sessions in memory only
	log      *slog.Logger
	mu       sync.Mutex
	loaded   bool                   // the kept sessions were read
	links    map[[32]byte]time.Time // expiry
	sessions map[[32]byte]*webSession
}

func newWebAuth(now func() time.Time) *webAuth {
	if now == nil {
		now = time.Now
	}
	return &webAuth{now: now, log: slog.New(slog.DiscardHandler), links: make(map[[32]byte]time.Time), sessions: make(map[[32]byte]*webSession)}
}

// loadLocked reads the kept sessions, once (again at the next call if
// the backend could not answer). a.mu held.
func (a *webAuth) loadLocked() {
	if a.loaded || a.keep == nil {
		return
	}
	raw, err := a.keep.WebData(context.Background(), "sessions")
	if err != nil {
		a.log.Warn("web: kept sessions not read", "err", err)
		return
	}
	a.loaded = true
	if len(raw) == 0 {
		return
	}
	var ss []storedSession
	if err := json.Unmarshal(raw, &ss); err != nil {
		a.log.Warn("web: kept sessions unreadable", "err", err)
		return
	}
	for _, s := range ss {
		var key [32]byte
		if b, err := hex.DecodeString(s.Key); err != nil || len(b) != len(key) || s.CSRF == "" {
			continue
		} else {
			copy(key[:], b)
		}
		// (One idle too long is dropped at its next use, as in memory.)
		if len(a.sessions) >= maxWebSessions || a.sessions[key] != nil {
			continue
		}
		used := time.Unix(s.LastUsed, 0)
		a.sessions[key] = &webSession{csrf: s.CSRF, lastUsed: used, saved: used}
	}
}

// saveLocked hands the sessions to the backend. a.mu held.
func (a *webAuth) saveLocked() {
	if a.keep == nil {
		return
	}
	ss := make([]storedSession, 0, len(a.sessions))
	for k, s := range a.sessions {
		ss = append(ss, storedSession{Key: hex.EncodeToString(k[:]), CSRF: s.csrf, LastUsed: s.lastUsed.Unix()})
		s.saved = s.lastUsed
	}
	raw, err := json.Marshal(ss)
	if err == nil {
		err = a.keep.KeepWebData(context.Background(), "sessions", raw)
	}
	if err != nil {
		a.log.Warn("web: sessions not kept", "err", err)
	}
}

// newLink returns a fresh one-time login code.
func (a *webAuth) newLink() string {
	code := rand.Text() + rand.Text() // 256 bits
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	for k, exp := range a.links {
		if !now.Before(exp) {
			delete(a.links, k)
		}
	}
	for len(a.links) >= maxLoginLinks {
		var oldest [32]byte
		var first time.Time
		for k, exp := range a.links {
			if first.IsZero() || exp.Before(first) {
				oldest, first = k, exp
			}
		}
		delete(a.links, oldest)
	}
	a.links[sha256.Sum256([]byte(code))] = now.Add(LoginLinkTTL)
	return code
}

// redeem spends a login code and opens a session: its ID (the cookie) and
// CSRF token. A code works once, and not after LoginLinkTTL.
func (a *webAuth) redeem(code string) (id, csrf string, ok bool) {
	key := sha256.Sum256([]byte(code))
	a.mu.Lock()
	defer a.mu.Unlock()
	exp, found := a.links[key]
	if !found {
		return "", "", false
	}
	delete(a.links, key) // spent whether or not it was still valid
	now := a.now()
	if !now.Before(exp) {
		return "", "", false
	}
	a.loadLocked()
	for k, s := range a.sessions {
		if now.Sub(s.lastUsed) > SessionIdleTTL {
			delete(a.sessions, k)
		}
	}
	for len(a.sessions) >= maxWebSessions {
		var lru [32]byte
		var first time.Time
		for k, s := range a.sessions {
			if first.IsZero() || s.lastUsed.Before(first) {
				lru, first = k, s.lastUsed
			}
		}
		delete(a.sessions, lru)
	}
	id, csrf = rand.Text()+rand.Text(), rand.Text()+rand.Text()
	a.sessions[sha256.Sum256([]byte(id))] = &webSession{csrf: csrf, lastUsed: now}
	a.saveLocked()
	return id, csrf, true
}

// session looks a session up by its cookie value and marks it used; it
// returns the session's CSRF token.
func (a *webAuth) session(id string) (csrf string, ok bool) {
	if id == "" {
		return "", false
	}
	key := sha256.Sum256([]byte(id))
	a.mu.Lock()
	defer a.mu.Unlock()
	a.loadLocked()
	s, found := a.sessions[key]
	if !found {
		return "", false
	}
	now := a.now()
	if now.Sub(s.lastUsed) > SessionIdleTTL {
		delete(a.sessions, key)
		a.saveLocked()
		return "", false
	}
	s.lastUsed = now
	if now.Sub(s.saved) > sessionSaveEvery {
		a.saveLocked()
	}
	return s.csrf, true
}

func (a *webAuth) logout(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.loadLocked()
	key := sha256.Sum256([]byte(id))
	if a.sessions[key] != nil {
		delete(a.sessions, key)
		a.saveLocked()
	}
}

// cookieName is per port: cookies are shared by every port of a host, and
// two daemons of one user (two homes) must not log each other out.
func cookieName(r *http.Request) string {
	_, port, err := net.SplitHostPort(r.Host)
	if _, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil {
		return sessionCookiePf + "0"
	}
	return sessionCookiePf + port
}

// sameOrigin reports whether a request comes from this server's own page
// (or from no page at all: a typed URL, a CLI). guard has refused requests
// whose Sec-Fetch-Site names another site already; this refuses an origin
// that Config.AllowedOrigins lets through for bearer-token apps.
func sameOrigin(r *http.Request) bool {
	if origin := r.Header.Get("Origin"); origin != "" && origin != "http://"+r.Host {
		return false
	}
	return true
}

// cookieAuthorized checks a browser session for an API call: a live session
// cookie, our own origin, and the session's CSRF token in CSRFHeader. The
// cookie alone is never enough: another program on this machine that a
// browser visits (any port of 127.0.0.1) receives it, as cookies ignore
// ports; the CSRF token reached the page only in the login redirect's
// fragment, which the browser keeps in the page's own origin.
func (s *Server) cookieAuthorized(r *http.Request) bool {
	if !sameOrigin(r) {
		return false
	}
	got := r.Header.Get(CSRFHeader) // "" never equals a token
	// Every cookie of the name: one tossed by another port (a longer
	// Path is sent first) must not shadow the real one.
	for _, c := range r.CookiesNamed(cookieName(r)) {
		if csrf, ok := s.web.session(c.Value); ok && subtle.ConstantTimeCompare([]byte(got), []byte(csrf)) == 1 {
			return true
		}
	}
	return false
}

// browserKey marks a request context authenticated by a browser session.
type browserKey struct{}

// fromBrowser reports whether r came with a browser session rather than
// the bearer token. Such a request may not name paths on the daemon's
// disk (files to send, where to write downloads, media files): the
// browser uploads and downloads bytes instead, so a flaw in the page
// does not become reading or writing any file of the user.
func fromBrowser(r *http.Request) bool {
	b, _ := r.Context().Value(browserKey{}).(bool)
	return b
}

// errBrowserPath refuses a path from a browser session.
func errBrowserPath(what string) error {
	return fmt.Errorf("a browser session cannot name %s on the daemon's disk (use the bearer token): %w", what, ErrForbidden)
}

// LoginLink is the answer of POST /v1/web/login.
type LoginLink struct {
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// webLogin makes a one-time login link (bearer token only: a browser
// session cannot mint more sessions).
func (s *Server) webLogin(w http.ResponseWriter, r *http.Request) error {
	if s.webFiles == nil {
		return fmt.Errorf("this daemon serves no web client: %w", ErrNotFound)
	}
	if s.baseURL == "" {
		return fmt.Errorf("the daemon has no TCP address for the web client: %w", ErrNotFound)
	}
	code := s.web.newLink()
	writeJSON(w, http.StatusCreated, LoginLink{
		URL:       s.baseURL + "/login?code=" + url.QueryEscape(code),
		ExpiresAt: s.web.now().Add(LoginLinkTTL).UTC(),
	})
	return nil
}

func (s *Server) webLogout(w http.ResponseWriter, r *http.Request) error {
	for _, c := range r.CookiesNamed(cookieName(r)) {
		s.web.logout(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName(r), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// serveLogin spends a login code: a session cookie and a redirect to the
// client, or 403 for a code that is unknown, spent or expired.
func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || s.webFiles == nil {
		s.writeError(w, r, fmt.Errorf("no route %s %s: %w", r.Method, r.URL.Path, ErrNotFound))
		return
	}
	id, csrf, ok := s.web.redeem(r.URL.Query().Get("code"))
	if !ok {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte("This login link is not valid: it was used already, it expired, or the daemon restarted.\nRun `peergram open` for a new one.\n"))
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName(r), Value: id, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode,
		MaxAge: int(SessionIdleTTL / time.Second),
	})
	// The CSRF token goes in the fragment: never sent to a server, kept
	// by the page in its own origin's storage, and gone from the address
	// bar and history at once (the client replaces the URL).
	http.Redirect(w, r, "/#csrf="+url.QueryEscape(csrf), http.StatusSeeOther)
}

// contentSecurityPolicy keeps the client to its own files: no inline
// script, no other origin, never framed.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"

// serveWeb serves the client's static files (public code, no user data;
// the data comes from the API once logged in).
func (s *Server) serveWeb(w http.ResponseWriter, r *http.Request) {
	if s.webFiles == nil || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		s.writeError(w, r, fmt.Errorf("no route %s %s: %w", r.Method, r.URL.Path, ErrNotFound))
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/")
	if name == "" {
		name = "index.html"
	}
	if !fs.ValidPath(name) {
		s.writeError(w, r, fmt.Errorf("no file %q: %w", r.URL.Path, ErrNotFound))
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cache-Control", "no-cache")
	f, err := s.webFiles.Open(name)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("no file %q: %w", r.URL.Path, ErrNotFound))
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		s.writeError(w, r, fmt.Errorf("no file %q: %w", r.URL.Path, ErrNotFound))
		return
	}
	rs, ok := f.(interface {
		Read([]byte) (int, error)
		Seek(int64, int) (int64, error)
	})
	if !ok {
		s.writeError(w, r, fmt.Errorf("file %q is not seekable: %w", name, ErrInternal))
		return
	}
	http.ServeContent(w, r, st.Name(), st.ModTime(), rs)
}

// maxUploads is how many uploads may run at once; uploadTimeout bounds
// one (2 GiB over loopback takes seconds).
const (
	maxUploads    = 4
	uploadTimeout = 30 * time.Minute
)

// MaxUploadBytes caps a file sent through POST /v1/chats/{chat}/upload:
// the 2 GiB any file may have.
const MaxUploadBytes = 2 << 30

// upload sends a file whose bytes are the request body (the web client's
// file picker and drag-and-drop). The bytes are spooled to a private file
// under Config.UploadDir, handed to Backend.SendFile (which encrypts them
// into the node's store), and the spool file is removed.
//
// Query: name (the file's name, required), caption, as_file=1, id (a
// message ID the client drew, to follow progress events).
func (s *Server) upload(w http.ResponseWriter, r *http.Request) error {
	contact, err := contactParam(r)
	if err != nil {
		return err
	}
	if s.uploadDir == "" {
		return fmt.Errorf("this daemon takes no uploads: %w", ErrNotFound)
	}
	select {
	case s.uploads <- struct{}{}:
		defer func() { <-s.uploads }()
	default:
		return fmt.Errorf("%d uploads are under way already: %w", cap(s.uploads), chat.ErrUnavailable)
	}
	// A client that stalls does not hold the spool and a slot for ever.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(uploadTimeout))
	q := r.URL.Query()
	name := q.Get("name")
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") || len(name) > 255 {
		return fmt.Errorf("name must be a plain file name: %w", chat.ErrInvalid)
	}
	if r.ContentLength > MaxUploadBytes {
		return fmt.Errorf("a file of %d bytes (at most %d): %w", r.ContentLength, MaxUploadBytes, chat.ErrTooLarge)
	}
	if err := os.MkdirAll(s.uploadDir, 0o700); err != nil {
		return fmt.Errorf("upload spool: %w", err)
	}
	dir, err := os.MkdirTemp(s.uploadDir, "up-")
	if err != nil {
		return fmt.Errorf("upload spool: %w", err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("upload spool: %w", err)
	}
	n, err := io.Copy(f, io.LimitReader(r.Body, MaxUploadBytes+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("upload: %v: %w", err, chat.ErrInvalid)
	}
	if n > MaxUploadBytes {
		return fmt.Errorf("a file over %d bytes: %w", int64(MaxUploadBytes), chat.ErrTooLarge)
	}
	m, err := s.backend.SendFile(r.Context(), chat.FileSend{
		Chat: contact, Path: path, Caption: q.Get("caption"), AsFile: q.Get("as_file") == "1", ID: q.Get("id"),
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, m)
	return nil
}

// identityQR is the account's link as a QR code (PNG), to be scanned by
// another device that adds this account as a contact.
func (s *Server) identityQR(w http.ResponseWriter, r *http.Request) error {
	id, err := s.backend.Identity(r.Context())
	if err != nil {
		return err
	}
	png, err := qrcode.Encode(id.Link, qrcode.Medium, 320)
	if err != nil {
		return fmt.Errorf("qr code: %w", err)
	}
	w.Header().Set("Content-Type", "image/png")
	_, _ = w.Write(png)
	return nil
}

// fileContent streams a received file's bytes, for a client that cannot
// read the daemon's disk (the web client's Save): the file is downloaded
// first if need be, into the home's downloads directory, as POST
// /v1/files/{id}/download does. It always goes as an attachment of type
// application/octet-stream under a sandbox CSP: a peer's file is never
// rendered in the API's origin, whatever it holds.
func (s *Server) fileContent(w http.ResponseWriter, r *http.Request) error {
	f, err := s.backend.Download(r.Context(), r.PathValue("id"), "")
	if err != nil {
		return err
	}
	if f.Path == "" {
		return fmt.Errorf("file %s has no local copy: %w", f.ID, ErrNotFound)
	}
	fh, err := os.Open(f.Path)
	if err != nil {
		return fmt.Errorf("file %s: %w", f.ID, err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return fmt.Errorf("file %s: %w", f.ID, err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": f.Name}))
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	http.ServeContent(w, r, "", st.ModTime(), fh)
	return nil
}

// maxPrefsBytes bounds the shared preferences.
const maxPrefsBytes = 64 << 10

// webPrefs returns the preferences every browser of this daemon shares
// (a JSON object the client defines: pinned and archived chats, read
// markers); {} when none are kept.
func (s *Server) webPrefs(w http.ResponseWriter, r *http.Request) error {
	b, ok := s.backend.(WebDataBackend)
	if !ok {
		return ErrNotImplemented
	}
	raw, err := b.WebData(r.Context(), "prefs")
	if err != nil {
		return err
	}
	if len(raw) == 0 {
		raw = []byte("{}")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(raw)
	return nil
}

// putWebPrefs replaces the shared preferences (a JSON object of at most
// 64 KiB).
func (s *Server) putWebPrefs(w http.ResponseWriter, r *http.Request) error {
	b, ok := s.backend.(WebDataBackend)
	if !ok {
		return ErrNotImplemented
	}
	var obj map[string]json.RawMessage
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPrefsBytes))
	if err != nil {
		return fmt.Errorf("preferences over %d bytes: %w", maxPrefsBytes, chat.ErrTooLarge)
	}
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return fmt.Errorf("preferences must be a JSON object: %w", chat.ErrInvalid)
	}
	if err := b.KeepWebData(r.Context(), "prefs", raw); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

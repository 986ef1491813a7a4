package localapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"golang.org/x/net/netutil"

	"github.com/peergram/peergram/node/chat"
)

// Backend is what the API serves; node.Node implements it. Contact
// arguments are an alias or an account ID. Errors wrap the chat sentinels
// (chat.ErrUnknownContact, chat.ErrInvalid, chat.ErrTooLarge,
// chat.ErrUnavailable) so the API can map them to status codes.
type Backend interface {
	Identity(ctx context.Context) (Identity, error)
	// Status reports what the node is connected to.
	Status(ctx context.Context) (Status, error)
	AddContact(ctx context.Context, idOrLink, name string) (chat.Contact, error)
	Contacts(ctx context.Context) ([]chat.Contact, error)
	Send(ctx context.Context, contact, text string) (chat.Message, error)
	// SendFile sends a file (a path on this machine) to a contact; it
	// returns once the file is encrypted into the node's store and its
	// message is in the outbox. Files lists a chat's files, oldest
	// first; Download fetches a received file (to out, or the home's
	// downloads directory) and returns once it is complete and verified.
	SendFile(ctx context.Context, req chat.FileSend) (chat.Message, error)
	Files(ctx context.Context, contact string) ([]chat.File, error)
	Download(ctx context.Context, id, out string) (chat.File, error)
	// DeleteFile deletes a file for this account, or (everyone; the
	// sender only) for every recipient and from the relays.
	DeleteFile(ctx context.Context, id string, everyone bool) error
	// Messages lists a chat oldest first; markRead marks the incoming
	// messages read (which sends read receipts).
	Messages(ctx context.Context, contact string, markRead bool) ([]chat.Message, error)
	MarkRead(ctx context.Context, contact string, ids []chat.MessageID) error
	// RenameContact changes a contact's alias; RemoveContact removes it
	// from the contacts (the chat stays).
	RenameContact(ctx context.Context, contact, name string) (chat.Contact, error)
	RemoveContact(ctx context.Context, contact string) error
	// Requests lists accounts that wrote first and are not contacts;
	// accepting one is AddContact, IgnoreRequest drops its messages.
	Requests(ctx context.Context) ([]chat.Contact, error)
	IgnoreRequest(ctx context.Context, account string) error
	// Subscribe returns the node's events; the channel is closed when ctx
	// is done.
	Subscribe(ctx context.Context) <-chan chat.Event
	// CreateGroup creates a group owned by this account; Groups lists the
	// node's groups; Group returns one by ID or unique title
	// (chat.ErrUnknownGroup if none).
	CreateGroup(ctx context.Context, title string) (chat.Group, error)
	// CreateChannel creates a channel (a group where only admins post).
	CreateChannel(ctx context.Context, title string) (chat.Group, error)
	// PublishChannelName makes a channel public under a name (join with
	// "@name").
	PublishChannelName(ctx context.Context, group, name string) (chat.Group, error)
	// ForwardGroupMessage copies a group's or channel's message into a
	// chat (a contact or a group); it returns the new message's ID.
	ForwardGroupMessage(ctx context.Context, group, message, to string) (string, error)
	Groups(ctx context.Context) ([]chat.Group, error)
	Group(ctx context.Context, idOrTitle string) (chat.Group, error)
	// AddGroupMembers adds contacts (aliases or account IDs) to a group.
	AddGroupMembers(ctx context.Context, group string, contacts []string) (chat.Group, error)
	// RemoveGroupMember removes a member (alias or account ID); LeaveGroup
	// leaves a group.
	RemoveGroupMember(ctx context.Context, group, member string) (chat.Group, error)
	// SetGroupRole makes a member "admin" or "member" again.
	SetGroupRole(ctx context.Context, group, member, role string) (chat.Group, error)
	// SetGroupInfo changes a group's title and description.
	SetGroupInfo(ctx context.Context, group string, ch chat.GroupInfoChange) (chat.Group, error)
	// SetGroupPhoto sets a group's photo to an image (nil removes it);
	// GroupPhoto returns the photo, a JPEG (nil if the group has none).
	SetGroupPhoto(ctx context.Context, group string, image []byte) (chat.Group, error)
	GroupPhoto(ctx context.Context, group string) ([]byte, error)
	LeaveGroup(ctx context.Context, group string) (chat.Group, error)
	// JoinGroup accepts an invitation (group ID or title).
	JoinGroup(ctx context.Context, groupOrLink string) (chat.Group, error)
	// DeclineGroup declines an invitation (group ID or title).
	DeclineGroup(ctx context.Context, group string) error
	// PostGroup posts a text (optionally a reply) to a group;
	// GroupMessages lists a group's messages, oldest first.
	PostGroup(ctx context.Context, group string, post chat.GroupPost) (chat.GroupMessage, error)
	// CreatePoll posts a poll; VotePoll votes (option indexes from 0;
	// none takes the vote back); ClosePoll closes one (its creator only);
	// GroupPoll returns one with its results.
	CreatePoll(ctx context.Context, group string, spec chat.PollSpec) (chat.GroupMessage, error)
	VotePoll(ctx context.Context, group, poll string, options []int) (chat.Poll, error)
	ClosePoll(ctx context.Context, group, poll string) (chat.Poll, error)
	GroupPoll(ctx context.Context, group, poll string) (chat.Poll, error)
	// CreateInvite makes an invite link (expiresIn 0: never expires);
	// RevokeInvite revokes one.
	CreateInvite(ctx context.Context, group string, expiresIn time.Duration) (chat.Invite, error)
	RevokeInvite(ctx context.Context, group, link string) (chat.Group, error)
	// BanGroupMember bans (ban true) or unbans an account.
	BanGroupMember(ctx context.Context, group, member string, ban bool) (chat.Group, error)
	// PinGroupMessage pins (pin true) or unpins a message.
	PinGroupMessage(ctx context.Context, group, message string, pin bool) (chat.Group, error)
	GroupMessages(ctx context.Context, group string) ([]chat.GroupMessage, error)
}

// Identity is the local account as GET /v1/identity shows it.
type Identity struct {
	AccountID string   `json:"account_id"`
	Link      string   `json:"link"`    // peergram://… link for sharing
	PeerID    string   `json:"peer_id"` // libp2p peer ID of this device
	Addrs     []string `json:"addrs"`   // multiaddrs the node listens on, with /p2p/ suffix
	Name      string   `json:"name"`
}

// Status is the node's connectivity and traffic as GET /v1/status shows
// it.
type Status struct {
	// Relays has one entry per home relay, in configuration order.
	Relays []RelayStatus `json:"relays"`
	// Outbox is how many payloads (messages and receipts) wait to be
	// handed to every device they are for.
	Outbox int `json:"outbox"`
	// Received counts messages stored since the daemon started.
	Received int64 `json:"received"`
	// SentDirect and SentMailbox count envelopes handed over since the
	// daemon started: straight to the device, or to a relay mailbox.
	SentDirect  int64 `json:"sent_direct"`
	SentMailbox int64 `json:"sent_mailbox"`
}

// RelayStatus is the state of one home relay.
type RelayStatus struct {
	Peer string `json:"peer"` // the relay's libp2p peer ID
	// Ready: the node's keys are published to the relay's directory and
	// its mailbox is subscribed, so others can find it and reach it there.
	Ready bool `json:"ready"`
}

// DefaultAddr is where Listen listens when given "": loopback, a port chosen
// by the kernel.
const DefaultAddr = "127.0.0.1:0"

// MaxBodyBytes caps a request body; larger bodies get 413 too_large.
const MaxBodyBytes = 1 << 20

// MinTokenLen is the shortest bearer token New accepts.
const MinTokenLen = 16

const (
	defaultKeepAlive  = 15 * time.Second
	eventWriteTimeout = 10 * time.Second // a stream client that reads nothing for this long is dropped
	shutdownTimeout   = 5 * time.Second
	// requestReadTimeout bounds reading a request's body (uploads excepted).
	requestReadTimeout = 10 * time.Second
	// MaxConns bounds the API's open connections (browsers, the CLI,
	// event streams): more wait for one to close, so that a local program
	// opening connections by the thousand cannot take the daemon's file
	// descriptors.
	MaxConns          = 256
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
)

// Config configures a Server.
type Config struct {
	// Backend answers the requests. Required.
	Backend Backend
	// Token is the bearer token every request must carry; at least
	// MinTokenLen bytes. Required. NewToken makes one.
	Token string
	// AllowedOrigins lists the browser origins ("http://127.0.0.1:8080",
	// scheme://host[:port], compared exactly) that may call the API. Empty
	// (the default) closes CORS: no Access-Control-* headers are sent and any
	// request carrying an Origin header not listed is refused with 403.
	AllowedOrigins []string
	// KeepAlive is the interval of comment lines on an idle event stream;
	// defaults to 15s.
	KeepAlive time.Duration
	// Logger receives request failures; nil discards.
	Logger *slog.Logger
	// WebFiles is the web client (index.html at its root), served at "/"
	// to browsers that log in with a link from POST /v1/web/login; nil
	// serves no client.
	WebFiles fs.FS
	// BaseURL is the server's own address as a browser reaches it
	// ("http://127.0.0.1:PORT"); login links point there.
	BaseURL string
	// UploadDir is where POST /v1/chats/{chat}/upload spools a file
	// before the node encrypts it into its store (a private directory on
	// the daemon's disk); "" refuses uploads.
	UploadDir string
	// Now is the clock for login links and sessions; nil is time.Now.
	Now func() time.Time
}

// Server is the local API. It starts nothing by itself: use Handler with
// any http.Server, or Serve.
type Server struct {
	backend   Backend
	tokenSum  [sha256.Size]byte // the token is compared as a digest, so its length does not leak either
	origins   map[string]bool
	keepAlive time.Duration
	log       *slog.Logger
	handler   http.Handler
	web       *webAuth
	webFiles  fs.FS
	baseURL   string
	uploadDir string
	uploads   chan struct{} // a slot per running upload
}

// NewToken returns a fresh random bearer token (128 bits, base32).
func NewToken() string { return rand.Text() }

// TokenTag names a token without revealing it: "token-sha256 " and the
// first 16 hex digits of its SHA-256. The daemon writes it on the second
// line of DIR/api, so a client can tell that file from one a dead daemon
// left behind.
func TokenTag(token string) string {
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return fmt.Sprintf("token-sha256 %x", sum[:8])
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Backend == nil {
		return nil, fmt.Errorf("localapi: new: no backend: %w", ErrConfig)
	}
	if len(cfg.Token) < MinTokenLen {
		return nil, fmt.Errorf("localapi: new: token shorter than %d bytes: %w", MinTokenLen, ErrConfig)
	}
	s := &Server{
		backend:   cfg.Backend,
		tokenSum:  sha256.Sum256([]byte(cfg.Token)),
		origins:   make(map[string]bool, len(cfg.AllowedOrigins)),
		keepAlive: cfg.KeepAlive,
		log:       cfg.Logger,
		web:       newWebAuth(cfg.Now),
		webFiles:  cfg.WebFiles,
		baseURL:   strings.TrimSuffix(cfg.BaseURL, "/"),
		uploadDir: cfg.UploadDir,
		uploads:   make(chan struct{}, maxUploads),
	}
	for _, o := range cfg.AllowedOrigins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("localapi: new: origin %q is not scheme://host[:port]: %w", o, ErrConfig)
		}
		s.origins[u.Scheme+"://"+u.Host] = true
	}
	if s.keepAlive <= 0 {
		s.keepAlive = defaultKeepAlive
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.web.log = s.log
	if k, ok := cfg.Backend.(WebDataBackend); ok {
		s.web.keep = k
	}
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.Handle(rt.pattern, s.wrap(rt.handle))
	}
	mux.HandleFunc("/login", s.serveLogin)
	mux.HandleFunc("/", s.serveWeb)
	s.handler = s.guard(mux)
	return s, nil
}

// route is one line of the route table.
type route struct {
	pattern string // Go 1.22 ServeMux pattern: "METHOD /path/{wildcard}"
	handle  handlerFunc
}

// routes is the API: a line per route. docs/api.md documents each.
func (s *Server) routes() []route {
	return []route{
		{"GET /v1/health", s.health},
		{"GET /v1/identity", s.identity},
		{"GET /v1/identity/qr.png", s.identityQR},
		{"GET /v1/status", s.status},
		{"GET /v1/contacts", s.contacts},
		{"POST /v1/contacts", s.addContact},
		{"POST /v1/contacts/{contact}/rename", s.renameContact},
		{"DELETE /v1/contacts/{contact}", s.removeContact},
		{"GET /v1/requests", s.requests},
		{"POST /v1/requests/{contact}/accept", s.acceptRequest},
		{"POST /v1/requests/{contact}/ignore", s.ignoreRequest},
		{"POST /v1/messages", s.send},
		{"POST /v1/files", s.sendFile},
		{"GET /v1/chats/{contact}/files", s.files},
		{"POST /v1/files/{id}/download", s.download},
		{"GET /v1/files/{id}/content", s.fileContent},
		{"DELETE /v1/files/{id}", s.deleteFile},
		{"GET /v1/chats/{contact}/messages", s.messages},
		{"POST /v1/chats/{contact}/read", s.markRead},
		{"GET /v1/events", s.events},
		{"POST /v1/groups", s.createGroup},
		{"GET /v1/groups", s.groups},
		{"GET /v1/groups/{group}", s.group},
		{"POST /v1/groups/{group}/members", s.addGroupMembers},
		{"DELETE /v1/groups/{group}/members/{member}", s.removeGroupMember},
		{"PUT /v1/groups/{group}/members/{member}/role", s.setGroupRole},
		{"POST /v1/groups/{group}/info", s.setGroupInfo},
		{"PUT /v1/groups/{group}/photo", s.setGroupPhoto},
		{"DELETE /v1/groups/{group}/photo", s.removeGroupPhoto},
		{"GET /v1/groups/{group}/photo", s.groupPhoto},
		{"POST /v1/groups/{group}/leave", s.leaveGroup},
		{"POST /v1/groups/{group}/join", s.joinGroup},
		{"POST /v1/groups/{group}/decline", s.declineGroup},
		{"POST /v1/groups/{group}/polls", s.createPoll},
		{"GET /v1/groups/{group}/polls/{poll}", s.groupPoll},
		{"POST /v1/groups/{group}/polls/{poll}/votes", s.votePoll},
		{"POST /v1/groups/{group}/polls/{poll}/close", s.closePoll},
		{"POST /v1/groups/{group}/invites", s.createInvite},
		{"POST /v1/groups/{group}/invites/revoke", s.revokeInvite},
		{"POST /v1/join", s.joinByLink},
		{"POST /v1/channels", s.createChannel},
		{"POST /v1/groups/{group}/public-name", s.publishName},
		{"POST /v1/groups/{group}/messages/{message}/forward", s.forwardGroupMessage},
		{"POST /v1/groups/{group}/bans", s.banMember},
		{"DELETE /v1/groups/{group}/bans/{member}", s.unbanMember},
		{"POST /v1/groups/{group}/pins", s.pinMessage},
		{"DELETE /v1/groups/{group}/pins/{message}", s.unpinMessage},
		{"POST /v1/groups/{group}/messages", s.sendGroup},
		{"GET /v1/groups/{group}/messages", s.groupMessages},
		{"POST /v1/calls", s.startCall},
		{"GET /v1/calls", s.listCalls},
		{"GET /v1/calls/{id}", s.getCall},
		{"POST /v1/calls/{id}/answer", s.answerCall},
		{"POST /v1/calls/{id}/decline", s.declineCall},
		{"POST /v1/calls/{id}/hangup", s.hangupCall},
		{"POST /v1/calls/{id}/share", s.shareScreen},
		{"POST /v1/calls/{id}/unshare", s.unshareScreen},
		{"GET /v1/calls/{id}/offer", s.callOffer},
		{"POST /v1/calls/{id}/signal", s.callSignal},
		{"POST /v1/groups/{group}/call/start", s.startGroupCall},
		{"POST /v1/groups/{group}/call/join", s.joinGroupCall},
		{"POST /v1/groups/{group}/call/leave", s.leaveGroupCall},
		{"POST /v1/groups/{group}/call/mute", s.muteGroupCall},
		{"GET /v1/groups/{group}/call", s.getGroupCall},
		{"GET /v1/groups/{group}/call/offer", s.groupCallOffer},
		{"POST /v1/groups/{group}/call/signal", s.groupCallSignal},
		{"GET /v1/group-calls", s.listGroupCalls},
		{"POST /v1/chats/{contact}/upload", s.upload},
		{"POST /v1/web/login", s.webLogin},
		{"POST /v1/web/logout", s.webLogout},
		{"GET /v1/web/prefs", s.webPrefs},
		{"PUT /v1/web/prefs", s.putWebPrefs},
	}
}

// Handler returns the API's http.Handler: CORS and token checks, then the
// route table.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve serves the API on ln until ctx is done, then shuts down gracefully:
// event streams end, requests in flight get up to 5s to finish. It refuses a
// listener that is not on loopback (TCP) or a Unix socket, leaving ln open.
// Serve closes ln when it returns otherwise.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if err := checkListener(ln.Addr()); err != nil {
		return fmt.Errorf("localapi: serve: %w", err)
	}
	stop := make(chan struct{}) // closed on shutdown: ends event streams, which never go idle by themselves
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext: func(net.Listener) context.Context {
			return context.WithValue(context.Background(), stopKey{}, stop)
		},
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(netutil.LimitListener(ln, MaxConns)) }()
	select {
	case err := <-served:
		return fmt.Errorf("localapi: serve: %w", err)
	case <-ctx.Done():
	}
	close(stop)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		err = srv.Close()
	}
	<-served // http.ErrServerClosed
	if err != nil {
		return fmt.Errorf("localapi: shutdown: %w", err)
	}
	return nil
}

// stopKey keys the channel that Serve closes on shutdown in request contexts.
type stopKey struct{}

// Listen listens on addr ("host:port"; "" means DefaultAddr). The host must
// be "localhost" or a loopback IP; anything else, including "", "0.0.0.0"
// and "::", is refused with ErrNotLoopback.
func Listen(addr string) (net.Listener, error) {
	if addr == "" {
		addr = DefaultAddr
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("localapi: listen %q: %w", addr, err)
	}
	if !loopbackHost(host) {
		return nil, fmt.Errorf("localapi: listen %q: %w", addr, ErrNotLoopback)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("localapi: listen: %w", err)
	}
	if err := checkListener(ln.Addr()); err != nil { // "localhost" could resolve anywhere
		ln.Close()
		return nil, fmt.Errorf("localapi: listen %q: %w", addr, err)
	}
	return ln, nil
}

// loopbackName reports whether a Host header names this machine's
// loopback: "localhost" or a loopback IP, with or without a port.
func loopbackName(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return loopbackHost(host)
}

func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkListener accepts loopback TCP addresses and Unix sockets.
func checkListener(a net.Addr) error {
	switch a := a.(type) {
	case *net.TCPAddr:
		if a.IP.IsLoopback() {
			return nil
		}
	case *net.UnixAddr:
		return nil
	}
	return fmt.Errorf("%s %s: %w", a.Network(), a, ErrNotLoopback)
}

// guard applies the Host check, the origin policy and authentication to
// every request: the bearer token, or (for the web client) a browser
// session with its CSRF token; web.go says why both.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if !loopbackName(r.Host) {
			// DNS rebinding: a page of evil.example whose name now
			// resolves to 127.0.0.1 talks to us with its own Host.
			s.writeError(w, r, fmt.Errorf("host %q is not a loopback name: %w", r.Host, ErrForbidden))
			return
		}
		// A request that is slow to send its body holds a connection:
		// every request gets requestReadTimeout to arrive (uploads set
		// their own; the event stream reads nothing after its headers).
		rc := http.NewResponseController(w)
		if r.URL.Path == "/v1/events" {
			_ = rc.SetReadDeadline(time.Time{})
		} else {
			_ = rc.SetReadDeadline(time.Now().Add(requestReadTimeout))
		}
		switch site := r.Header.Get("Sec-Fetch-Site"); {
		case site == "", site == "same-origin", site == "none":
		case r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, "/v1") &&
			r.Header.Get("Sec-Fetch-Mode") == "navigate" && r.Header.Get("Sec-Fetch-Dest") == "document":
			// A top-level page load from elsewhere: a login link opened
			// from another page (peergram open's redirect file, a
			// terminal's link handler) and the client it redirects to.
			// The code is the credential, and the client's files are
			// public code that can never be framed; the API stays out
			// of reach.
		default:
			// Another page (another port of 127.0.0.1 included):
			// nothing is served to it, not even the client's files.
			s.writeError(w, r, fmt.Errorf("request from another site (%s): %w", site, ErrForbidden))
			return
		}
		if origin := r.Header.Get("Origin"); origin != "" || len(r.Header.Values("Origin")) > 0 {
			h.Add("Vary", "Origin")
			own := origin == "http://"+r.Host
			if !s.origins[origin] && !own {
				s.writeError(w, r, fmt.Errorf("origin %q is not allowed: %w", origin, ErrForbidden))
				return
			}
			if !own {
				h.Set("Access-Control-Allow-Origin", origin)
				if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
					// Preflight: browsers send it without credentials.
					h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE")
					h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
					h.Set("Access-Control-Max-Age", "600")
					w.WriteHeader(http.StatusNoContent)
					return
				}
			}
		}
		if p := r.URL.Path; p == path.Clean(p) && p != "/v1" && !strings.HasPrefix(p, "/v1/") {
			// The web client's files and its login page: public code,
			// no user data.
			next.ServeHTTP(w, r)
			return
		}
		if s.authorized(r) {
			next.ServeHTTP(w, r)
			return
		}
		if r.URL.Path != "/v1/web/login" && s.cookieAuthorized(r) {
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), browserKey{}, true)))
			return
		}
		h.Set("WWW-Authenticate", `Bearer realm="peergram"`)
		s.writeError(w, r, fmt.Errorf("missing or wrong bearer token: %w", ErrUnauthorized))
	})
}

func (s *Server) authorized(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) == 1
}

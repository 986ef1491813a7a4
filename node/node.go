package node

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/pion/webrtc/v4"

	"github.com/peergram/peergram/calls"
	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/sealed"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/node/localapi"
	"github.com/peergram/peergram/node/webclient"
	"github.com/peergram/peergram/relay/directory"
	"github.com/peergram/peergram/relay/mailbox"
	"github.com/peergram/peergram/storage"
)

// Config configures a node. The zero value of every field but Home is a
// usable default.
type Config struct {
	// Home is the node's home directory, made by Init. Required.
	Home string
	// Listen are libp2p listen multiaddrs; default
	// /ip4/0.0.0.0/tcp/0 and /ip4/0.0.0.0/udp/0/quic-v1.
	Listen []string
	// APIAddr is the local API's host:port; it must be a loopback
	// address. Default: 127.0.0.1 on the port of the last run when it is
	// free (the web client's origin, and so its login, stays the same
	// across restarts), else a random one.
	APIAddr string
	// Relays are the node's home relays (full multiaddrs ending in
	// /p2p/<id>): its mailbox, key directory and circuit relay.
	Relays []string
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// MDNS enables LAN discovery; default on (set DisableMDNS to turn off).
	DisableMDNS bool
	// Rand is the source of randomness; nil means crypto/rand.
	Rand io.Reader
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// GroupStoreAfter is how long a group post waits to be seen in a home
	// relay's history before the node hands it to the relay itself (it
	// was posted offline, or gossip lost it); 0 means 10 s.
	GroupStoreAfter time.Duration
	// GroupSenderKeyLimit is the most members a group encrypts with
	// Sender Keys; a larger group, and every channel, uses epoch keys
	// (groupepoch.go). 0 means DefaultSenderKeyLimit.
	GroupSenderKeyLimit int
	// GroupPairwiseLogLimit is the most members a group sends its log to
	// over the pairwise sessions after each change; a larger group's
	// changes reach its members as entries over gossip and the relays'
	// history (only accounts added or taken out, and every member when
	// the info key turns, get the log pairwise). 0 means
	// DefaultPairwiseLogLimit.
	GroupPairwiseLogLimit int
	// FileUploadAfter is how long a file sent waits for its recipient to
	// fetch it directly before the node uploads it to a home relay; 0
	// means 15 s.
	FileUploadAfter time.Duration
	// GroupPhotoRenew is how often the node that set a group's photo
	// uploads it to its relay again, renewing the relay's retention (30
	// days after the last upload); 0 means 7 days.
	GroupPhotoRenew time.Duration
	// AutoDownload is the largest photo, sticker or voice message the
	// node downloads without being asked; 0 means DefaultAutoDownload
	// (2 MiB), negative never.
	AutoDownload int64
	// CallRingTimeout is how long a call rings unanswered; 0 means 45 s.
	CallRingTimeout time.Duration
	// CallICEServers are STUN/TURN servers for calls; CallRelayOnly uses
	// TURN relay candidates alone.
	CallICEServers []webrtc.ICEServer
	CallRelayOnly  bool
	// CallLoopback keeps calls' ICE on the loopback interface (tests, and
	// calls between daemons of one machine).
	CallLoopback bool
	// CallsPerMinute is how many calls one contact may start in a minute
	// (0: 6); more are dropped, not rung nor kept.
	CallsPerMinute int
	// Host, when set, is used instead of building one from Listen (tests
	// use mocknet hosts). The node does not close it.
	Host host.Host
	// RetryMin and RetryMax bound the outbox's retry backoff; defaults 500ms
	// and 30s.
	RetryMin, RetryMax time.Duration
	// GCInterval is how often the store's value log is garbage collected;
	// 0 means DefaultGCInterval.
	GCInterval time.Duration
}

// Node is a running Peergram device. Its Backend methods are safe for
// concurrent use once Run has opened the store.
type Node struct {
	cfg    Config
	log    *slog.Logger
	rand   io.Reader
	relays []peer.AddrInfo
	files  *fileEngine
	calls  *calls.Engine // nil until Run started it
	callIn chan callIn
	// callEvents carries call states to be kept and published (calls.go).
	callEvents chan calls.Call
	callEvMu   sync.Mutex // guards callEvents against its closing
	// gcalls is the group calls' state (groupcalls.go).
	gcalls *groupCalls
	// turnCache holds TURN credentials until turnUntil (calls.go).
	turnMu    sync.Mutex
	turnCache []webrtc.ICEServer
	turnUntil time.Time

	mu          sync.Mutex // guards keys.prekeys, keys.list, keys.listChecked, keys.cert
	pkMu        sync.Mutex // serialises changes of the prekey set (accepting sessions, refills)
	devLocks    deviceLocks
	db          *storage.DB
	st          *store
	keys        *keyring
	host        host.Host
	mbox        *mailbox.Client
	dir         *directory.Client
	self        sealed.Device
	ready       chan struct{}
	wake        chan struct{}
	out         outboxState
	sendq       chan *sendReq
	quit        chan struct{}     // closed when Run ends
	outSeq      *storage.Sequence // outbox job numbers
	chatSeq     *storage.Sequence // chat message numbers, above chatSeqBase
	chatSeqBase uint64
	events      *broadcaster
	groups      *groupEngine // nil until Run started gossip
	logCache    logCache     // verified group logs (grouplogcache.go)
	entryMu     sync.Mutex
	entries     map[[32]byte]*groupstate.Entry // parsed group log entries by the hash of their bytes (parseEntry)
	fetchMu     sync.Mutex
	fetching    map[groupstate.GroupID]*logFetch // long logs' ends waiting for the rest from a relay (grouplogfetch.go)
	// fetched counts the fetches that applied the entries after the held
	// log (tail) and those that fetched a whole log (whole).
	fetched struct{ tail, whole atomic.Int64 }
	// logsSent counts the group logs enqueued to send pairwise, one per
	// recipient (a transaction that retries counts again).
	logsSent    atomic.Int64
	deferMu     sync.Mutex
	deferred    map[deferKey]payload // group logs waiting for an entry dated ahead (groupdefer.go)
	touchedMu   sync.Mutex
	touched     map[groupstate.GroupID]bool // groups whose log a receive changed, to reload after its commit
	notifyLater []identity.AccountID        // recipients of jobs a receive enqueued, to notify after its commit
	leaveLater  []groupstate.GroupID        // groups whose leave by this account a fork dropped: left again after the commit
	runCtx      context.Context
	apiAddr     string
	lockFile    *os.File

	// Envelopes handed over by path, and direct attempts, for logs and
	// tests.
	sentDirect, sentMailbox, directAttempts atomic.Int64
	// sendFault, set by tests only, sees every attempt before it is
	// sent; returning true stands for the send (it set a.errs).
	sendFault atomic.Pointer[func(ctx context.Context, a *attempt) bool]
	received  atomic.Int64 // messages stored since start
	streamsIn atomic.Int64 // /peergram/msg/2.0.0 streams accepted
	reach     reachability
	// histWake[i] wakes the group history loop of relays[i].
	histWake []chan struct{}
	// relayState[i] is the state of relays[i].
	relayState []relayState

	tokMu        sync.Mutex // guards token, tokenChanged
	token        mailbox.Token
	tokenChanged chan struct{}
}

// New validates cfg and loads nothing yet; Run does the work.
func New(cfg Config) (*Node, error) {
	if cfg.Home == "" {
		return nil, fmt.Errorf("node: Home is required")
	}
	if _, err := ReadInfo(cfg.Home); err != nil {
		return nil, err
	}
	if err := checkLoopback(cmp.Or(cfg.APIAddr, "127.0.0.1:0")); err != nil {
		return nil, err
	}
	if len(cfg.Listen) == 0 && cfg.Host == nil {
		cfg.Listen = []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"}
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 500 * time.Millisecond
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 30 * time.Second
	}
	if cfg.GCInterval <= 0 {
		cfg.GCInterval = DefaultGCInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	n := &Node{cfg: cfg, log: cfg.Logger, rand: cfg.Rand, ready: make(chan struct{}), wake: make(chan struct{}, 1), events: newBroadcaster(), gcalls: newGroupCalls(),
		sendq: make(chan *sendReq), quit: make(chan struct{})}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.rand == nil {
		n.rand = rand.Reader
	}
	for _, s := range cfg.Relays {
		addr, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("node: relay %q: %w", s, err)
		}
		ai, err := peer.AddrInfoFromP2pAddr(addr)
		if err != nil {
			return nil, fmt.Errorf("node: relay %q must end in /p2p/<peer ID>: %w", s, err)
		}
		n.relays = append(n.relays, *ai)
	}
	n.relayState = make([]relayState, len(n.relays))
	for range n.relays {
		n.histWake = append(n.histWake, make(chan struct{}, 1))
	}
	return n, nil
}

func checkLoopback(hostport string) error {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("node: API address %q: %w", hostport, err)
	}
	if h == "localhost" {
		return nil
	}
	ip := net.ParseIP(h)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("node: API address %q is not loopback; the local API only listens on 127.0.0.1 or ::1", hostport)
	}
	return nil
}

// lock takes the home's daemon lock, so a second daemon refuses to start
// with a clear error rather than a store error. It also makes sure only
// the owner can enter the home (0700).
func (n *Node) lock() error {
	f, err := os.OpenFile(filepath.Join(n.cfg.Home, fileLock), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return homeError(n.cfg.Home, err)
	}
	if err := privateDir(n.cfg.Home); err != nil {
		f.Close()
		return homeError(n.cfg.Home, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return fmt.Errorf("%w: %s", ErrRunning, n.cfg.Home)
	}
	n.lockFile = f
	return nil
}

// Run opens the store, starts the host, API and delivery, and blocks until
// ctx is done. It writes the API URL to <home>/api once the API listens and
// removes it on the way out.
func (n *Node) Run(ctx context.Context) (err error) {
	if err := n.lock(); err != nil {
		return err
	}
	defer n.lockFile.Close()
	// What a daemon killed with -9 left: its API file names a port that
	// may now be anyone's; its socket is dead.
	os.Remove(filepath.Join(n.cfg.Home, fileAPI))
	os.Remove(filepath.Join(n.cfg.Home, fileSocket))
	n.db, err = storage.Open(storeOptions(filepath.Join(n.cfg.Home, dirStore), n.log))
	if errors.Is(err, storage.ErrLocked) {
		return fmt.Errorf("%w: %s", ErrRunning, n.cfg.Home)
	}
	if err != nil {
		return fmt.Errorf("node: open store: %w", err)
	}
	defer n.db.Close()
	n.st = newStore(n.db)
	if err := n.db.View(func(tx *storage.Txn) error {
		n.keys, err = n.st.loadKeys(tx)
		return err
	}); err != nil {
		return err
	}
	n.self = sealed.Device{Key: n.keys.device, Cert: n.keys.cert}
	n.st.self = n.keys.account.ID()
	if err := n.migrate(); err != nil {
		return err
	}
	if err := n.openCounters(); err != nil {
		return fmt.Errorf("node: counters: %w", err)
	}
	if err := n.migrateOutbox(); err != nil {
		return fmt.Errorf("node: outbox: %w", err)
	}
	if err := n.loadOutbox(); err != nil {
		return fmt.Errorf("node: outbox: %w", err)
	}
	sendsDone := make(chan struct{})
	go func() {
		defer close(sendsDone)
		n.runSends()
	}()
	defer func() {
		close(n.quit)
		<-sendsDone
	}()
	if err := n.loadToken(); err != nil {
		return fmt.Errorf("node: delivery token: %w", err)
	}
	if err := n.migrateOwnCert(); err != nil {
		return fmt.Errorf("node: device certificate: %w", err)
	}
	if _, err := n.maintainPrekeys(false); err != nil {
		return fmt.Errorf("node: prekeys: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if n.cfg.Host != nil {
		n.host = n.cfg.Host
	} else {
		h, err := newHost(n.keys.p2p, n.cfg.Listen)
		if err != nil {
			return err
		}
		defer h.Close()
		n.host = h
	}
	n.mbox = mailbox.NewClient(n.host, n.log)
	defer n.mbox.Close()
	n.dir = directory.NewClient(n.host)
	n.runCtx = ctx
	if err := n.startGroups(ctx); err != nil {
		return fmt.Errorf("node: groups: %w", err)
	}
	if err := n.startFiles(); err != nil {
		return fmt.Errorf("node: files: %w", err)
	}
	defer n.files.store.Close()
	stopCalls, err := n.startCalls(ctx)
	if err != nil {
		return fmt.Errorf("node: calls: %w", err)
	}
	defer stopCalls()
	n.host.SetStreamHandler(ProtocolID, n.handleDirect)
	defer n.host.RemoveStreamHandler(ProtocolID)
	n.host.SetStreamHandler(StreamProtocolID, n.handleDirectStream)
	defer n.host.RemoveStreamHandler(StreamProtocolID)

	// A new token at every start: one that leaked (to a process that
	// answered on the old port after a crash, say) is worthless after a
	// restart.
	token := localapi.NewToken()
	if err := writeFileAtomic(filepath.Join(n.cfg.Home, fileToken), []byte(token+"\n"), 0o600); err != nil {
		return fmt.Errorf("node: write API token: %w", err)
	}
	// Uploads from the web client spool here for a moment; one left by a
	// crash is removed.
	_ = os.RemoveAll(filepath.Join(n.cfg.Home, "uploads"))
	ln, err := n.listenAPI()
	if err != nil {
		return err
	}
	n.apiAddr = "http://" + ln.Addr().String()
	api, err := localapi.New(localapi.Config{Backend: n, Token: token, Logger: n.log, WebFiles: webclient.Files(), BaseURL: n.apiAddr,
		UploadDir: filepath.Join(n.cfg.Home, "uploads")})
	if err != nil {
		ln.Close()
		return err
	}
	listeners := []net.Listener{ln}
	sock := filepath.Join(n.cfg.Home, fileSocket)
	if sln, err := listenUnix(sock); err != nil {
		n.log.Warn("no API socket in the home; the CLI will use the TCP address", "err", err)
	} else {
		listeners = append(listeners, sln)
		defer os.Remove(sock)
	}

	var wg sync.WaitGroup
	errc := make(chan error, 1)
	for _, l := range listeners {
		wg.Go(func() {
			if err := api.Serve(ctx, l); err != nil && ctx.Err() == nil {
				select {
				case errc <- fmt.Errorf("node: API: %w", err):
				default:
				}
				cancel()
			}
		})
	}
	if !n.cfg.DisableMDNS && n.cfg.Host == nil {
		stop, err := startMDNS(n.host, n.log)
		if err != nil {
			n.log.Warn("mDNS discovery disabled", "err", err)
		} else {
			defer stop()
		}
	}
	for i, r := range n.relays {
		wg.Go(func() { n.keepRelay(ctx, r, &n.relayState[i]) })
		wg.Go(func() { n.syncHistory(ctx, r.ID, n.histWake[i]) })
	}
	wg.Go(func() { n.runOutbox(ctx) })
	wg.Go(func() { n.runUploads(ctx) })
	wg.Go(func() {
		if err := n.db.RunGC(ctx, n.cfg.GCInterval); err != nil && ctx.Err() == nil {
			n.log.Error("store garbage collection stopped", "err", err)
		}
	})
	wg.Go(func() { n.runMaintenance(ctx) })
	close(n.ready)
	apiFile := filepath.Join(n.cfg.Home, fileAPI)
	if err := writeFileAtomic(apiFile, []byte(n.apiAddr+"\n"+localapi.TokenTag(token)+"\n"), 0o600); err != nil {
		cancel()
		wg.Wait()
		return err
	}
	n.log.Info("node running", "api", n.apiAddr, "peer", n.host.ID(), "account", n.keys.account.ID().String(), "addrs", n.host.Addrs())
	n.log.Info("web client: run `peergram open --home " + n.cfg.Home + "` to open it in your browser")
	<-ctx.Done()
	n.log.Info("stopping")
	defer n.log.Info("stopped")
	os.Remove(apiFile)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	return nil
}

// maintenanceInterval is how often the node checks its device list and
// prekeys for renewal.
const maintenanceInterval = time.Hour

// runMaintenance re-signs the device list before it ages out and renews
// prekeys, publishing what changed, until ctx ends.
func (n *Node) runMaintenance(ctx context.Context) {
	t := time.NewTicker(maintenanceInterval)
	defer t.Stop()
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		changed, err := n.maintainOwnList(ctx)
		if err != nil {
			n.log.Error("device list maintenance", "err", err)
		}
		for i := range n.relays {
			if changed || (!n.relayState[i].published.Load() && !n.relayState[i].publishing.Load()) {
				n.relayState[i].published.Store(false)
				if err := n.publish(ctx, n.relays[i].ID); err != nil {
					n.log.Warn("publish keys", "relay", n.relays[i].ID, "err", err)
				} else {
					n.relayState[i].published.Store(true)
				}
			}
		}
		n.refillPrekeysIf(ctx, n.checkStock(ctx))
	}
}

// migrate brings a store written by an older version up to date: sessions
// of the old format (keyed by device alone, "dev/") are deleted — their
// peers start new ones.
func (n *Node) migrate() error {
	var old [][]byte
	if err := n.db.View(func(tx *storage.Txn) error {
		return tx.Iterate(n.st.sessions, nil, func(key, _ []byte) error {
			if !bytes.HasPrefix(key, []byte("cur/")) && !bytes.HasPrefix(key, []byte("old/")) && !bytes.HasPrefix(key, []byte("recv/")) {
				old = append(old, bytes.Clone(key))
			}
			return nil
		})
	}); err != nil {
		return err
	}
	if len(old) == 0 {
		return nil
	}
	n.log.Info("deleting sessions of an older format", "count", len(old))
	return n.db.Update(func(tx *storage.Txn) error {
		for _, k := range old {
			if err := tx.Delete(n.st.sessions, k); err != nil {
				return err
			}
		}
		return nil
	})
}

// listenUnix listens on a Unix socket at path, replacing a stale one (the
// caller holds the home's lock, so no other daemon uses it). The socket is
// 0600 inside a 0700 home.
func listenUnix(path string) (net.Listener, error) {
	if len(path) >= 104 { // sun_path is 104 bytes on BSDs, 108 on Linux
		return nil, fmt.Errorf("socket path %s is too long", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// homeError turns a failure to write in the home into one clear sentence.
func homeError(home string, err error) error {
	if errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
		return fmt.Errorf("%w: %s (%v)", ErrHomeNotWritable, home, errors.Unwrap(err))
	}
	return fmt.Errorf("node: %w", err)
}

// APIURL returns the API base URL once Run is serving.
func (n *Node) APIURL() string { return n.apiAddr }

// Ready is closed once Run has started everything.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// broadcaster fans events out to API subscribers. A subscriber that falls
// behind by more than its buffer loses events (it can re-list the chat).
type broadcaster struct {
	mu   sync.Mutex
	subs map[chan chat.Event]struct{}
}

func newBroadcaster() *broadcaster { return &broadcaster{subs: map[chan chat.Event]struct{}{}} }

func (b *broadcaster) subscribe(ctx context.Context) <-chan chat.Event {
	ch := make(chan chat.Event, 256)
	b.mu.Lock()
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	go func() {
		<-ctx.Done()
		b.mu.Lock()
		delete(b.subs, ch)
		close(ch)
		b.mu.Unlock()
	}()
	return ch
}

// active reports whether anyone listens.
func (b *broadcaster) active() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs) > 0
}

func (b *broadcaster) publish(e chat.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- e:
		default:
		}
	}
}

// listenAPI listens on Config.APIAddr or, by default, on 127.0.0.1 at the
// port of the last run if it is free (else a random one), and remembers
// the port: a browser's login to the web client is tied to its origin,
// and so to the port.
func (n *Node) listenAPI() (net.Listener, error) {
	if n.cfg.APIAddr != "" {
		return localapi.Listen(n.cfg.APIAddr)
	}
	key := []byte("api-port")
	var last []byte
	_ = n.db.View(func(tx *storage.Txn) (err error) { last, err = tx.Get(n.st.meta, key); return err })
	if len(last) == 2 {
		port := binary.BigEndian.Uint16(last)
		ln, err := localapi.Listen(net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
		if err == nil {
			return ln, nil
		}
		n.log.Info("the API's port of the last run is taken; a new one (browsers log in again)", "port", port, "err", err)
	}
	ln, err := localapi.Listen("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok {
		if err := n.db.Update(func(tx *storage.Txn) error {
			return tx.Set(n.st.meta, key, binary.BigEndian.AppendUint16(nil, uint16(tcp.Port)))
		}); err != nil {
			n.log.Warn("the API's port not remembered", "err", err)
		}
	}
	return ln, nil
}

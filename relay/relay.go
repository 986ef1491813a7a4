package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/peergram/peergram/storage"
)

// UserAgent is what the relay's libp2p identify protocol announces.
const UserAgent = "peergram-relay"

// AutoNAT v1 service rate limits: dial-back requests answered per
// interval, in total and per peer. libp2p's defaults (30 and 3 a minute)
// suit a node that helps others on the side; a relay is where NATed
// devices come to learn their reachability, so it answers 4× as many in
// total, still bounded because each answer costs an outbound dial.
const (
	autoNATGlobalLimit = 120
	autoNATPeerLimit   = 3
	autoNATInterval    = time.Minute
)

// shutdownTimeout bounds the graceful stop of the HTTP server.
const shutdownTimeout = 5 * time.Second

// Relay is a Peergram relay super-node: a libp2p host running circuit
// relay v2, the AutoNAT service, the mailbox and directory servers, and an
// optional metrics and health HTTP server. It is safe for concurrent use;
// Run is called once.
type Relay struct {
	cfg validated
	key crypto.PrivKey
	id  peer.ID
	log *slog.Logger

	ready chan struct{} // closed once Run has started everything

	mu          sync.Mutex // guards the fields below
	started     bool
	addrs       []ma.Multiaddr
	metricsAddr string
}

// New validates cfg and loads the identity key from cfg.Home. It starts
// nothing. A home without an identity key is ErrNotInitialised.
func New(cfg Config) (*Relay, error) {
	v, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	key, mode, err := loadIdentity(v.Home)
	if err != nil {
		return nil, fmt.Errorf("relay: new: %w", err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("relay: new: %w: %v", ErrBadIdentity, err)
	}
	log := v.Logger.With("peer_id", id.String())
	if mode&0o077 != 0 {
		log.Warn("identity key file is readable by other users; chmod 600 it",
			"file", filepath.Join(v.Home, IdentityFile), "mode", mode.String())
	}
	return &Relay{cfg: v, key: key, id: id, log: log, ready: make(chan struct{})}, nil
}

// ID returns the relay's peer ID (known from New on).
func (r *Relay) ID() peer.ID { return r.id }

// Addrs returns the relay's full multiaddrs (each ending in /p2p/<ID>)
// while it runs, nil before Ready and after Run returns.
func (r *Relay) Addrs() []ma.Multiaddr {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]ma.Multiaddr(nil), r.addrs...)
}

// MetricsAddr returns the host:port the metrics server listens on while
// the relay runs (the chosen port when Config.MetricsAddr had port 0), ""
// when there is none.
func (r *Relay) MetricsAddr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.metricsAddr
}

// Ready is closed once Run has started every service and written the
// addrs file. It is never closed if Run fails before that.
func (r *Relay) Ready() <-chan struct{} { return r.ready }

// Run opens the store, starts the host and every service, writes the
// addrs file, and serves until ctx is done; then it stops everything in
// reverse order, waits for its goroutines and returns nil (or the errors
// of the shutdown). It returns an error wrapping ErrLocked when another
// relay uses the same home, and ErrAlreadyRunning when called twice.
func (r *Relay) Run(ctx context.Context) (err error) {
	r.mu.Lock()
	if r.started {
		r.mu.Unlock()
		return ErrAlreadyRunning
	}
	r.started = true
	r.mu.Unlock()

	var stack closers
	defer func() {
		if cerr := stack.closeAll(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		if err == nil {
			r.log.Info("relay stopped")
		}
	}()
	fatal := make(chan error, 1) // a service that stopped on its own

	db, err := r.openStore(&stack)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	if err := registerProcessCollectors(reg); err != nil {
		return fmt.Errorf("relay: metrics: %w", err)
	}

	ref := newRefusals()
	h, err := r.newHost(reg, ref)
	if err != nil {
		return err
	}
	stack.push("libp2p host", h.Close)
	if err := registerRelayMetrics(reg, h.Network().ResourceManager(), ref); err != nil {
		return fmt.Errorf("relay: metrics: %w", err)
	}

	rs, err := relayv2.New(h,
		relayv2.WithResources(r.cfg.Resources),
		relayv2.WithMetricsTracer(relayv2.NewMetricsTracer(relayv2.WithRegisterer(reg))),
	)
	if err != nil {
		return fmt.Errorf("relay: circuit relay service: %w", err)
	}
	stack.push("circuit relay service", rs.Close)

	if err := r.startMailbox(&stack, db, h, reg); err != nil {
		return err
	}
	if err := r.startDirectory(&stack, db, h, reg); err != nil {
		return err
	}
	hist, err := r.startHistory(&stack, db, h)
	if err != nil {
		return err
	}
	if err := r.startBlobs(&stack, db, h, reg); err != nil {
		return err
	}
	if err := r.startTURN(&stack, h); err != nil {
		return err
	}
	if err := r.startSFU(&stack, h, hist); err != nil {
		return err
	}
	// Listen only now, so no peer meets a relay without its services.
	for _, a := range r.cfg.listen {
		if err := h.Network().Listen(a); err != nil {
			// libp2p reports listen errors as text; find out whether
			// the port is taken, the one failure an operator meets often.
			if portInUse(a) {
				return fmt.Errorf("%w: %s (another program, perhaps another relay, listens on it)", ErrAddrInUse, a)
			}
			return fmt.Errorf("relay: listen on %s: %w", a, err)
		}
	}
	if r.cfg.MetricsAddr != "" {
		if err := r.startHTTP(&stack, reg, fatal); err != nil {
			return err
		}
	}

	addrs, err := fullAddrs(h)
	if err != nil {
		return fmt.Errorf("relay: addresses: %w", err)
	}
	lines := make([]string, len(addrs))
	for i, a := range addrs {
		lines[i] = a.String()
	}
	if err := writeAddrs(r.cfg.Home, lines); err != nil {
		return fmt.Errorf("relay: write %s: %w", AddrsFile, err)
	}
	r.mu.Lock()
	r.addrs = addrs
	r.mu.Unlock()
	stack.push("addrs file", func() error {
		r.mu.Lock()
		r.addrs = nil
		r.mu.Unlock()
		return removeAddrs(r.cfg.Home)
	})

	r.startGC(&stack, db)

	r.log.Info("relay running", "addrs", lines, "metrics", r.MetricsAddr())
	close(r.ready)

	select {
	case <-ctx.Done():
		r.log.Info("relay stopping")
		return nil
	case err := <-fatal:
		// The error is returned (and reported by the caller), not logged.
		r.log.Info("relay stopping", "reason", "a service failed")
		return err
	}
}

// openStore opens the Badger store under home, mapping a held directory
// lock to ErrLocked, and removes an addrs file left by a relay that did
// not stop cleanly (holding the lock proves no relay runs on this home).
func (r *Relay) openStore(stack *closers) (*storage.DB, error) {
	db, err := storage.Open(storage.Options{
		Dir: filepath.Join(r.cfg.Home, StoreDir),
		// storage tags Badger's records component=badger and logs its
		// chatter at Debug, its warnings at Warn.
		Logger: r.log,
		// A relay stores sealed envelopes and signed public keys: nothing
		// that compresses.
		NoCompression: true,
	})
	if errors.Is(err, storage.ErrLocked) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, r.cfg.Home)
	}
	if err != nil {
		return nil, fmt.Errorf("relay: open store: %w", err)
	}
	stack.push("store", db.Close)
	if err := removeAddrs(r.cfg.Home); err != nil {
		return nil, fmt.Errorf("relay: remove stale %s: %w", AddrsFile, err)
	}
	return db, nil
}

// newHost builds the libp2p host. It listens on nothing yet: Run listens
// address by address so that any address that fails is an error naming
// it (libp2p.ListenAddrs only fails when every address does).
func (r *Relay) newHost(reg *prometheus.Registry, ref *refusals) (host.Host, error) {
	scaling := operatorLimits(r.cfg.Resources, r.cfg.Limits)
	limits := scaling.AutoScale()
	limiter := rcmgr.NewFixedLimiter(limits)
	sys := limiter.GetSystemLimits()
	r.log.Info("resource limits",
		"conns", sys.GetConnTotalLimit(), "conns_inbound", sys.GetConnLimit(network.DirInbound),
		"streams", sys.GetStreamTotalLimit(), "memory_bytes", sys.GetMemoryLimit(), "fds", sys.GetFDLimit())
	if sys.GetFDLimit() < sys.GetConnTotalLimit() {
		r.log.Warn("file descriptor limit caps connections below the relay's limits; raise the process's open files limit (ulimit -n)",
			"fds", sys.GetFDLimit(), "conns", sys.GetConnTotalLimit())
	}
	rm, err := rcmgr.NewResourceManager(limiter, rcmgr.WithMetrics(ref))
	if err != nil {
		return nil, fmt.Errorf("relay: resource manager: %w", err)
	}
	low, high := connManagerWater(r.cfg.Resources)
	cm, err := connmgr.NewConnManager(low, high)
	if err != nil {
		rm.Close()
		return nil, fmt.Errorf("relay: connection manager: %w", err)
	}
	h, err := libp2p.New(
		libp2p.Identity(r.key),
		libp2p.NoListenAddrs,
		// Without SO_REUSEPORT a second relay on a port in use fails to
		// listen (EADDRINUSE) instead of silently sharing the port and
		// getting half of the connections meant for the first one. The
		// relay dials only AutoNAT dial-backs, which need no port reuse.
		// QUIC's UDP sockets are never bound with SO_REUSEPORT.
		libp2p.Transport(tcp.NewTCPTransport, tcp.DisableReuseport()),
		libp2p.Transport(quic.NewTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Security(tls.ID, tls.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.PrometheusRegisterer(reg),
		libp2p.UserAgent(UserAgent),
		// The relay is the hop, never a client of another relay.
		libp2p.DisableRelay(),
		// An operator runs a relay on a reachable machine; forcing public
		// reachability keeps the AutoNAT service answering (a private
		// verdict from peers would switch it off) and stops the relay from
		// spending peers' AutoNAT budgets on probing itself.
		libp2p.ForceReachabilityPublic(),
		libp2p.EnableNATService(),
		libp2p.AutoNATServiceRateLimit(autoNATGlobalLimit, autoNATPeerLimit, autoNATInterval),
		// AutoNAT v2 is what current libp2p clients ask to confirm each
		// of their addresses; v1 (above) serves older ones.
		libp2p.EnableAutoNATv2(),
	)
	if err != nil {
		// Closing twice is harmless for both; libp2p closes them on some
		// failures and not on others.
		cm.Close()
		rm.Close()
		return nil, fmt.Errorf("relay: libp2p host: %w", err)
	}
	return h, nil
}

// startGC runs the store's value-log garbage collection until shutdown.
func (r *Relay) startGC(stack *closers, db *storage.DB) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := db.RunGC(ctx, r.cfg.GCInterval); err != nil {
			r.log.Error("store garbage collection stopped", "err", err)
		}
	})
	stack.push("store garbage collection", func() error {
		cancel()
		wg.Wait()
		return nil
	})
}

// registerProcessCollectors adds the Go runtime and process metrics to a
// fresh registry (the relay never uses Prometheus' global one).
func registerProcessCollectors(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// closers stops what Run started, last started first.
type closers []closer

type closer struct {
	name  string
	close func() error
}

func (s *closers) push(name string, close func() error) {
	*s = append(*s, closer{name, close})
}

// closeAll calls every close function in reverse order, even after one
// fails, and joins their errors.
func (s *closers) closeAll() error {
	var errs []error
	for i := len(*s) - 1; i >= 0; i-- {
		c := (*s)[i]
		if err := c.close(); err != nil {
			errs = append(errs, fmt.Errorf("relay: stop %s: %w", c.name, err))
		}
	}
	*s = nil
	return errors.Join(errs...)
}

// Package relaytest starts real Peergram relays on loopback for tests of
// the relay and of the nodes that use it: Start gives a running
// relay.Relay in a temporary home and stops it, waiting for every
// goroutine, when the test ends.
package relaytest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/relay"
)

// startTimeout bounds how long Start waits for a relay to be ready and
// how long the cleanup waits for it to stop.
const startTimeout = 30 * time.Second

// Start runs a relay for the duration of t. Fields of cfg left zero get
// test defaults: Home a fresh t.TempDir() (initialised with relay.Init),
// Listen /ip4/127.0.0.1/tcp/0, Logger writing to t's output at Warn and
// above. A cfg.Home given must already be initialised. Start fails t if
// the relay does not come up; the cleanup fails t if Run returned an error.
func Start(t testing.TB, cfg relay.Config) *relay.Relay {
	t.Helper()
	if cfg.Home == "" {
		cfg.Home = t.TempDir()
		if err := relay.Init(cfg.Home); err != nil {
			t.Fatalf("relaytest: %v", err)
		}
	}
	if len(cfg.Listen) == 0 {
		cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	r, err := relay.New(cfg)
	if err != nil {
		t.Fatalf("relaytest: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan struct{})
	var runErr error // written before finished is closed
	go func() {
		defer close(finished)
		runErr = r.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
			if runErr != nil && isReady(r) {
				t.Errorf("relaytest: relay Run: %v", runErr)
			}
		case <-time.After(startTimeout):
			t.Errorf("relaytest: relay did not stop within %v", startTimeout)
		}
	})
	select {
	case <-r.Ready():
	case <-finished:
		t.Fatalf("relaytest: relay Run: %v", runErr)
	case <-time.After(startTimeout):
		t.Fatalf("relaytest: relay not ready within %v", startTimeout)
	}
	return r
}

// isReady reports whether r got as far as Ready (a failure before that
// was already reported by Start).
func isReady(r *relay.Relay) bool {
	select {
	case <-r.Ready():
		return true
	default:
		return false
	}
}

// AddrInfo returns what a client needs to dial r: its peer ID and its
// addresses (without the /p2p suffix).
func AddrInfo(t testing.TB, r *relay.Relay) peer.AddrInfo {
	t.Helper()
	infos, err := peer.AddrInfosFromP2pAddrs(r.Addrs()...)
	if err != nil || len(infos) != 1 {
		t.Fatalf("relaytest: addresses %v: %v (%d peers)", r.Addrs(), err, len(infos))
	}
	return infos[0]
}

package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// HTTP routes of the metrics server, one line each.
const (
	routeMetrics = "GET /metrics" // Prometheus text exposition of the relay's own registry
	routeHealth  = "GET /healthz" // 200 {"status":"ok","peer_id":...,"addrs":[...]} while running
)

// Health is the JSON body of /healthz.
type Health struct {
	Status string   `json:"status"`  // "ok"
	PeerID string   `json:"peer_id"` // the relay's peer ID
	Addrs  []string `json:"addrs"`   // full multiaddrs, as in the addrs file
}

// HTTP server timeouts: the endpoints answer from memory, so anything
// slow is a misbehaving client.
const (
	httpReadHeaderTimeout = 5 * time.Second
	httpWriteTimeout      = 30 * time.Second
	httpIdleTimeout       = 2 * time.Minute
)

func (r *Relay) handler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(routeMetrics, promhttp.InstrumentMetricHandler(reg,
		promhttp.HandlerFor(pathFree{reg}, promhttp.HandlerOpts{Registry: reg})))
	mux.HandleFunc(routeHealth, r.serveHealth)
	return mux
}

func (r *Relay) serveHealth(w http.ResponseWriter, _ *http.Request) {
	addrs := r.Addrs()
	h := Health{Status: "ok", PeerID: r.id.String(), Addrs: make([]string, len(addrs))}
	for i, a := range addrs {
		h.Addrs[i] = a.String()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(h) // a failed write means the client left
}

// startHTTP listens on MetricsAddr and serves until shutdown; a serving
// error is sent to fatal.
func (r *Relay) startHTTP(stack *closers, reg *prometheus.Registry, fatal chan<- error) error {
	ln, err := net.Listen("tcp", r.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("relay: metrics server: %w", err)
	}
	srv := &http.Server{
		Handler:           r.handler(reg),
		ReadHeaderTimeout: httpReadHeaderTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			select {
			case fatal <- fmt.Errorf("relay: metrics server: %w", err):
			default:
			}
		}
	})
	r.mu.Lock()
	r.metricsAddr = ln.Addr().String()
	r.mu.Unlock()
	stack.push("metrics server", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		err := srv.Shutdown(ctx)
		if err != nil {
			err = errors.Join(err, srv.Close())
		}
		wg.Wait()
		r.mu.Lock()
		r.metricsAddr = ""
		r.mu.Unlock()
		return err
	})
	return nil
}

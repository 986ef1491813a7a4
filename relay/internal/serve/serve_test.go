package serve

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const proto = "/peergram/test/serve/1.0.0"

func newHost(t *testing.T, opts ...libp2p.Option) host.Host {
	t.Helper()
	h, err := libp2p.New(append([]libp2p.Option{libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func connect(t *testing.T, ctx context.Context, from, to host.Host) {
	t.Helper()
	if err := from.Connect(ctx, peer.AddrInfo{ID: to.ID(), Addrs: to.Addrs()}); err != nil {
		t.Fatal(err)
	}
}

// open opens a stream and writes a byte, so the server side runs.
func open(t *testing.T, ctx context.Context, from, to host.Host) network.Stream {
	t.Helper()
	str, err := from.NewStream(ctx, to.ID(), proto)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := str.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	return str
}

func waitOpen(t *testing.T, s *Streams, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Open() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams served, want %d", s.Open(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Close resets the streams being served, waits for their handlers and
// unregisters the protocol; Start and Close keep their order.
func TestLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, cli := newHost(t), newHost(t)
	connect(t, ctx, cli, srv)
	var running, returned atomic.Int64
	s := New(Config{Host: srv, Protocol: proto, Logger: slog.New(slog.DiscardHandler)}, func(str network.Stream, log *slog.Logger) {
		running.Add(1)
		_, _ = io.Copy(io.Discard, str) // until reset
		returned.Add(1)
	})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Start: %v", err)
	}
	a, b := open(t, ctx, cli, srv), open(t, ctx, cli, srv)
	defer a.Reset()
	defer b.Reset()
	waitOpen(t, s, 2)
	s.Close()
	if returned.Load() != 2 || s.Open() != 0 {
		t.Fatalf("after Close: %d handlers returned, %d streams open; want 2, 0", returned.Load(), s.Open())
	}
	s.Close() // idempotent
	if str, err := cli.NewStream(ctx, srv.ID(), proto); err == nil {
		// Negotiation may be lazy: the refusal then comes on first use.
		if _, err := str.Write([]byte{1}); err == nil {
			if _, err := str.Read(make([]byte, 1)); err == nil {
				t.Fatal("a stream was served after Close")
			}
		}
		_ = str.Reset()
	}
	if err := s.Start(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v", err)
	}
	if running.Load() != 2 {
		t.Fatalf("%d handlers ran, want 2", running.Load())
	}
}

// Timeout bounds a stream from its start.
func TestTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, cli := newHost(t), newHost(t)
	connect(t, ctx, cli, srv)
	done := make(chan time.Duration, 1)
	s := New(Config{Host: srv, Protocol: proto, Timeout: 100 * time.Millisecond}, func(str network.Stream, _ *slog.Logger) {
		start := time.Now()
		_, _ = io.Copy(io.Discard, str)
		done <- time.Since(start)
		_ = str.Reset()
	})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	str := open(t, ctx, cli, srv)
	defer str.Reset()
	select {
	case d := <-done:
		if d > 5*time.Second {
			t.Fatalf("the stream lasted %v", d)
		}
	case <-ctx.Done():
		t.Fatal("the deadline did not end the stream")
	}
}

// A stream the service's limits refuse is reset before its handler runs.
func TestServiceLimit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	limits := rcmgr.DefaultLimits
	limits.AddServiceLimit("test.serve", rcmgr.BaseLimit{StreamsInbound: 1, StreamsOutbound: 1, Streams: 1, Memory: 1 << 20}, rcmgr.BaseLimitIncrease{})
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()))
	if err != nil {
		t.Fatal(err)
	}
	srv, cli := newHost(t, libp2p.ResourceManager(rm)), newHost(t)
	connect(t, ctx, cli, srv)
	var ran atomic.Int64
	s := New(Config{Host: srv, Protocol: proto, Service: "test.serve"}, func(str network.Stream, _ *slog.Logger) {
		ran.Add(1)
		_, _ = io.Copy(io.Discard, str)
	})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first := open(t, ctx, cli, srv)
	defer first.Reset()
	waitOpen(t, s, 1)
	second := open(t, ctx, cli, srv)
	defer second.Reset()
	_ = second.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := second.Read(make([]byte, 1)); !errors.Is(err, network.ErrReset) {
		t.Fatalf("stream over the service limit: read %v, want a reset", err)
	}
	if ran.Load() != 1 {
		t.Fatalf("%d handlers ran, want 1", ran.Load())
	}
}

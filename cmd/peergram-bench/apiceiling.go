package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/node/localapi"
)

// D0 measures the ceiling the local API sets on D1 and D2: the daemon's
// own API server (localapi.Server: token check, routing, JSON both ways)
// on a Unix socket, driven by the same client and posters as D1 and D2,
// in front of a backend that answers each send at once without storing,
// sealing or sending anything. Its ratio to D1's anchor is the most D1
// could reach if everything behind the API cost nothing; its rate is the
// most D2 could reach likewise.

// instantSends is a backend whose Send returns the message at once; the
// D0 client calls nothing else.
type instantSends struct {
	localapi.Backend // nil: any other call panics
}

func (instantSends) Send(_ context.Context, contact, text string) (chat.Message, error) {
	var id [16]byte
	_, _ = rand.Read(id[:])
	return chat.Message{ID: hex.EncodeToString(id[:]), Chat: contact, Outgoing: true, Text: text, SentAt: time.Now().UTC(), Status: chat.StatusPending}, nil
}

func runD0(ctx context.Context, cfg config) (string, error) {
	var c cleanup
	defer c.run()
	a, err := newAnchorFwd(ctx, &c)
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "peergram-bench-d0-")
	if err != nil {
		return "", err
	}
	c.add(func() { _ = os.RemoveAll(dir) })
	tok := localapi.NewToken()
	srv, err := localapi.New(localapi.Config{Backend: instantSends{}, Token: tok})
	if err != nil {
		return "", err
	}
	sock := filepath.Join(dir, "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return "", err
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, ln) }()
	c.add(func() { stop(); <-served })
	api := localapi.NewUnixClient(sock, tok)
	c.add(func() { _ = api.Close() })
	// D0's target is D1's: the API alone must clear it (by a margin
	// that pays for everything behind it) for D1 to be reachable.
	return throughputs(ctx, "D0", ">=0.10", cfg.rounds,
		func(ctx context.Context) (int, time.Duration, error) {
			start := time.Now()
			if err := postTexts(ctx, api, "bob", cfg.n); err != nil {
				return 0, 0, fmt.Errorf("D0: post: %w", err)
			}
			return cfg.n, time.Since(start), nil
		},
		func(ctx context.Context) (int, time.Duration, error) { return a.round(ctx, cfg.n, false) })
}

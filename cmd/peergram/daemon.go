package main

// This file is the CLI's only link to package node: the init and daemon
// commands call these two functions, and tests replace them.

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/peergram/peergram/node"
)

// nodeInfo is what init reports about a new home.
type nodeInfo struct {
	AccountID, Link, PeerID string
}

// daemonConfig is what the daemon command passes to the node.
type daemonConfig struct {
	Home    string
	Listen  []string // libp2p multiaddrs
	APIAddr string   // host:port, loopback
	Relays  []string // relay multiaddrs with /p2p/ID
	Pprof   string   // host:port for Go's profiles, loopback; "" = off
	// FileUploadAfter: how long a sent file waits to be fetched directly
	// before it goes to a relay (0: the node's default, 15 s).
	FileUploadAfter time.Duration
	// CallLoopback keeps calls' ICE on the loopback interface;
	// CallRingTimeout is how long a call rings (0: 45 s).
	CallLoopback    bool
	CallRingTimeout time.Duration
	Logger          *slog.Logger
}

// initNode creates the node home: keys, token and identity.json.
func initNode(home, name string) (nodeInfo, error) {
	info, err := node.Init(home, name)
	if err != nil {
		return nodeInfo{}, err
	}
	return nodeInfo{AccountID: info.AccountID, Link: info.Link, PeerID: info.PeerID}, nil
}

// runNode runs the daemon until ctx is done; the node writes DIR/api once
// its API listens.
//
// On a home that was never initialised it runs init first, with the login
// name as the display name, so that `peergram daemon` alone is a working
// quick start on a fresh machine.
func runNode(ctx context.Context, cfg daemonConfig) error {
	if _, err := node.ReadInfo(cfg.Home); errors.Is(err, node.ErrNotInitialised) {
		name := os.Getenv("USER")
		if name == "" {
			name = "me"
		}
		info, err := node.Init(cfg.Home, name)
		if err != nil {
			return err
		}
		if cfg.Logger != nil {
			cfg.Logger.Info("initialised a new home", "home", cfg.Home, "account", info.AccountID, "name", name)
		}
	}
	if cfg.Pprof != "" {
		if _, err := servePprof(ctx, cfg.Pprof, cfg.Logger); err != nil {
			return err
		}
	}
	node.ApplyMemoryLimit()
	n, err := node.New(node.Config{
		Home:    cfg.Home,
		Listen:  cfg.Listen,
		APIAddr: cfg.APIAddr,
		Relays:  cfg.Relays,
		Logger:  cfg.Logger,

		FileUploadAfter: cfg.FileUploadAfter,
		CallLoopback:    cfg.CallLoopback,
		CallRingTimeout: cfg.CallRingTimeout,
	})
	if err != nil {
		return err
	}
	return n.Run(ctx)
}

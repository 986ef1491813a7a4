package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/peergram/peergram/node"
	"github.com/peergram/peergram/node/localapi"
	"github.com/peergram/peergram/relay"
	"github.com/peergram/peergram/relay/mailbox"
)

// The D scenarios drive real daemons the way a user's client does: a relay
// (relay.Relay, its own Badger store) and two node daemons (node.Node, each
// with its own home and store), all in this process on loopback, and every
// message posted to Alice's local API over its Unix socket, one message
// per request, many requests in flight (as a bot or the web client posts).

const (
	// posters is how many API requests the D scenarios keep in flight.
	posters = 64
	// setupTimeout bounds starting a rig.
	setupTimeout = time.Minute
	// pollEvery is how often a scenario reads a daemon's status.
	pollEvery = 20 * time.Millisecond
)

// daemon is a node daemon running in this process.
type daemon struct {
	home   string
	relay  string
	cancel context.CancelFunc
	done   chan error
	api    *localapi.Client
}

// startDaemon runs the node of an initialised home until stop.
func startDaemon(home, relayAddr string) (*daemon, error) {
	n, err := node.New(node.Config{Home: home, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Relays: []string{relayAddr}, DisableMDNS: true, CallLoopback: true, CallsPerMinute: 10000})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{home: home, relay: relayAddr, cancel: cancel, done: make(chan error, 1)}
	go func() { d.done <- n.Run(ctx) }()
	select {
	case <-n.Ready():
	case err := <-d.done:
		cancel()
		return nil, fmt.Errorf("daemon %s: %w", home, err)
	case <-time.After(setupTimeout):
		cancel()
		return nil, fmt.Errorf("daemon %s did not start", home)
	}
	tok, err := readToken(home)
	if err != nil {
		d.stop()
		return nil, err
	}
	d.api = localapi.NewUnixClient(filepath.Join(home, "api.sock"), tok)
	return d, nil
}

// stop ends the daemon and waits for it.
func (d *daemon) stop() {
	if d.cancel == nil {
		return
	}
	d.cancel()
	<-d.done
	d.cancel = nil
	_ = d.api.Close()
}

// status reads the daemon's status through its API.
func (d *daemon) status(ctx context.Context) (localapi.Status, error) {
	return d.api.Status(ctx)
}

// waitStatus polls the daemon until cond holds, for at most roundTimeout
// unless ctx ends sooner.
func (d *daemon) waitStatus(ctx context.Context, what string, cond func(localapi.Status) bool) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, roundTimeout)
		defer cancel()
	}
	for {
		st, err := d.status(ctx)
		if err == nil && cond(st) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last status %+v, %v)", what, ctx.Err(), st, err)
		case <-time.After(pollEvery):
		}
	}
}

// post sends n texts of msgSize bytes to contact through the API, posters
// requests at a time.
func (d *daemon) post(ctx context.Context, contact string, n int) error {
	return postTexts(ctx, d.api, contact, n)
}

// postTexts sends n texts of msgSize bytes to contact through api,
// posters requests at a time.
func postTexts(ctx context.Context, api *localapi.Client, contact string, n int) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int, n)
	)
	for i := range n {
		next <- i
	}
	close(next)
	for range posters {
		wg.Go(func() {
			// Texts that do not compress, as real messages mostly do not
			// once they are many.
			buf := make([]byte, msgSize*3/4)
			for range next {
				_, _ = rand.Read(buf)
				text := base64.StdEncoding.EncodeToString(buf)
				if _, err := api.Send(ctx, contact, text); err != nil {
					mu.Lock()
					first = errors.Join(first, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// daemonRig is a relay and the daemons of Alice and Bob, contacts of each
// other, each holding the other's delivery token (Bob wrote to Alice once).
type daemonRig struct {
	c          cleanup
	relayAddr  string
	alice, bob *daemon
}

func newDaemonRig(ctx context.Context) (_ *daemonRig, err error) {
	r := &daemonRig{}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	relayHome, err := tempDir(&r.c)
	if err != nil {
		return nil, err
	}
	if err := relay.Init(relayHome); err != nil {
		return nil, err
	}
	rl, err := relay.New(relay.Config{Home: relayHome, Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	rdone := make(chan error, 1)
	go func() { rdone <- rl.Run(rctx) }()
	r.c.add(func() { cancel(); <-rdone })
	select {
	case <-rl.Ready():
	case err := <-rdone:
		return nil, fmt.Errorf("relay: %w", err)
	}
	r.relayAddr = fmt.Sprintf("%s/p2p/%s", rl.Addrs()[0], rl.ID())
	var ids [2]string
	for i, name := range []string{"alice", "bob"} {
		dir, err := tempDir(&r.c)
		if err != nil {
			return nil, err
		}
		home := filepath.Join(dir, name)
		info, err := node.Init(home, name)
		if err != nil {
			return nil, err
		}
		ids[i] = info.AccountID
		d, err := startDaemon(home, r.relayAddr)
		if err != nil {
			return nil, err
		}
		r.c.add(d.stop)
		if i == 0 {
			r.alice = d
		} else {
			r.bob = d
		}
	}
	ctx, cancelSetup := context.WithTimeout(ctx, setupTimeout)
	defer cancelSetup()
	for _, d := range []*daemon{r.alice, r.bob} {
		if err := d.waitStatus(ctx, "relay ready", func(st localapi.Status) bool { return len(st.Relays) == 1 && st.Relays[0].Ready }); err != nil {
			return nil, err
		}
	}
	if _, err := r.alice.api.AddContact(ctx, ids[1], "bob"); err != nil {
		return nil, err
	}
	if _, err := r.bob.api.AddContact(ctx, ids[0], "alice"); err != nil {
		return nil, err
	}
	if _, err := r.bob.api.Send(ctx, "alice", "hello"); err != nil {
		return nil, err
	}
	if err := r.alice.waitStatus(ctx, "Bob's first message", func(st localapi.Status) bool { return st.Received >= 1 }); err != nil {
		return nil, err
	}
	for _, d := range []*daemon{r.alice, r.bob} {
		if err := d.waitStatus(ctx, "an empty outbox", func(st localapi.Status) bool { return st.Outbox == 0 }); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (r *daemonRig) close() { r.c.run() }

// depositForOfflineBob stops Bob's daemon, posts n texts to Alice's API
// and waits until every one is deposited (Alice's outbox empty).
func (r *daemonRig) depositForOfflineBob(ctx context.Context, n int) error {
	r.bob.stop()
	if err := r.alice.post(ctx, "bob", n); err != nil {
		return err
	}
	return r.alice.waitStatus(ctx, "all deposited", func(s localapi.Status) bool { return s.Outbox == 0 })
}

// runD1 is Bob online: n texts posted to Alice's API until all are stored
// at Bob, against M1's anchor (raw frames forwarded through a relay host).
func runD1(ctx context.Context, cfg config) (string, error) {
	var c cleanup
	defer c.run()
	a, err := newAnchorFwd(ctx, &c)
	if err != nil {
		return "", err
	}
	return throughputs(ctx, "D1", ">=0.10", cfg.rounds,
		func(ctx context.Context) (int, time.Duration, error) {
			r, err := newDaemonRig(ctx)
			if err != nil {
				return 0, 0, err
			}
			defer r.close()
			st, err := r.bob.status(ctx)
			if err != nil {
				return 0, 0, err
			}
			start := time.Now()
			if err := r.alice.post(ctx, "bob", cfg.n); err != nil {
				return 0, 0, err
			}
			if err := r.bob.waitStatus(ctx, "all stored at Bob", func(s localapi.Status) bool { return s.Received >= st.Received+int64(cfg.n) }); err != nil {
				return 0, 0, err
			}
			return cfg.n, time.Since(start), nil
		},
		func(ctx context.Context) (int, time.Duration, error) { return a.round(ctx, cfg.n, false) })
}

// runD2 is Bob offline: n texts posted to Alice's API until every one is
// deposited on the relay (Alice's outbox empty), against S1's anchor (one
// synced Badger WriteBatch of the same number of values).
func runD2(ctx context.Context, cfg config) (string, error) {
	return throughputs(ctx, "D2", ">=0.05", cfg.rounds,
		func(ctx context.Context) (int, time.Duration, error) {
			r, err := newDaemonRig(ctx)
			if err != nil {
				return 0, 0, err
			}
			defer r.close()
			r.bob.stop() // not timed (depositForOfflineBob's stop is then a no-op)
			start := time.Now()
			if err := r.depositForOfflineBob(ctx, cfg.n); err != nil {
				return 0, 0, err
			}
			return cfg.n, time.Since(start), nil
		},
		inDir(mailbox.BenchIngestAnchor, cfg.n))
}

// runD3 is Bob coming online to n texts waiting on the relay (deposited
// by Alice's daemon, not timed): from the start of Bob's daemon until all
// are stored at Bob, against S2's anchor (a raw Badger prefix scan).
func runD3(ctx context.Context, cfg config) (string, error) {
	return throughputs(ctx, "D3", ">=0.05", cfg.rounds,
		func(ctx context.Context) (int, time.Duration, error) {
			r, err := newDaemonRig(ctx)
			if err != nil {
				return 0, 0, err
			}
			defer r.close()
			if err := r.depositForOfflineBob(ctx, cfg.n); err != nil {
				return 0, 0, err
			}
			start := time.Now()
			bob, err := startDaemon(r.bob.home, r.relayAddr)
			if err != nil {
				return 0, 0, err
			}
			defer bob.stop()
			if err := bob.waitStatus(ctx, "all stored at Bob", func(s localapi.Status) bool { return s.Received >= int64(cfg.n) }); err != nil {
				return 0, 0, err
			}
			return cfg.n, time.Since(start), nil
		},
		inDir(mailbox.BenchDrainAnchor, cfg.n))
}

// readToken reads a running daemon's API token from its home.
func readToken(home string) (string, error) {
	b, err := os.ReadFile(filepath.Join(home, "token"))
	if err != nil {
		return "", fmt.Errorf("read the API token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

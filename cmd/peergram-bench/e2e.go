package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/peergram/peergram/relay/mailbox"
)

const (
	// pacedInterval paces M2 at 1,000 msg/s.
	pacedInterval = time.Millisecond
	// roundTimeout bounds one side of one round.
	roundTimeout = 2 * time.Minute
	// anchorTxnSize is the number of values per synced Badger transaction in M3.
	anchorTxnSize = 100
)

// oursE2E is Alice → relay mailbox → Bob with sealed sessions.
type oursE2E struct {
	relay  *relayEnv
	alice  *mailbox.Client
	p      *pair
	sk     sink
	subErr chan error
	// inflight is how many Deposit calls an unpaced sender keeps in flight
	// (they share the client's pipelined stream); each message is still
	// its own deposit.
	inflight int
	errMu    sync.Mutex
	err      error // first handler failure
}

func newOursE2E(ctx context.Context, c *cleanup, noHandoff bool) (*oursE2E, error) {
	r, err := newRelay(c, noHandoff)
	if err != nil {
		return nil, err
	}
	_, alice, err := newClientHost(ctx, c, r)
	if err != nil {
		return nil, err
	}
	_, bob, err := newClientHost(ctx, c, r)
	if err != nil {
		return nil, err
	}
	p, err := newPair()
	if err != nil {
		return nil, err
	}
	o := &oursE2E{relay: r, alice: alice, p: p, subErr: make(chan error, 1), inflight: defaultInflight}
	o.sk.reset(0)
	subCtx, cancel := context.WithCancel(context.Background())
	go func() {
		o.subErr <- bob.Subscribe(subCtx, r.h.ID(), p.bobKey(), func(_ context.Context, d mailbox.Delivery) error {
			i, err := p.open(d.Envelope)
			if err != nil {
				o.errMu.Lock()
				if o.err == nil {
					o.err = fmt.Errorf("bob: open: %w", err)
				}
				o.errMu.Unlock()
				return nil
			}
			o.sk.arrived(i)
			return nil
		})
	}()
	c.add(func() {
		cancel()
		<-o.subErr
	})
	return o, nil
}

func (o *oursE2E) handlerErr() error {
	o.errMu.Lock()
	defer o.errMu.Unlock()
	return o.err
}

func (o *oursE2E) deposit(ctx context.Context, env []byte) error {
	var id mailbox.EnvelopeID
	if _, err := rand.Read(id[:]); err != nil {
		return err
	}
	return o.alice.Deposit(ctx, o.relay.h.ID(), o.p.bobAddr(), id, env)
}

// round sends n messages (paced at 1 ms or with o.inflight in flight)
// and returns once Bob has decrypted them all (and, if acked is set, the
// relay has deleted them).
func (o *oursE2E) round(ctx context.Context, n int, paced, acked bool) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, roundTimeout)
	defer cancel()
	o.sk.reset(n)
	errc := make(chan error, 1)
	fail := func(err error) {
		select {
		case errc <- err:
		default:
		}
		cancel()
	}
	var wg sync.WaitGroup
	start := time.Now()
	if paced {
		t := time.NewTicker(pacedInterval)
		for i := 0; i < n; i++ {
			if i > 0 {
				<-t.C
			}
			o.sk.sent(i)
			env, err := o.p.seal(i)
			if err != nil {
				fail(err)
				break
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := o.deposit(ctx, env); err != nil {
					fail(err)
				}
			}()
		}
		t.Stop()
	} else {
		envs := make(chan []byte, o.inflight)
		for w := 0; w < o.inflight; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for env := range envs {
					if err := o.deposit(ctx, env); err != nil {
						fail(err)
						return
					}
				}
			}()
		}
		for i := 0; i < n; i++ {
			o.sk.sent(i)
			env, err := o.p.seal(i)
			if err != nil {
				fail(err)
				break
			}
			select {
			case envs <- env:
			case <-ctx.Done():
			}
		}
		close(envs)
	}
	wg.Wait()
	select {
	case err := <-errc:
		return 0, 0, err
	default:
	}
	if err := o.sk.wait(ctx); err != nil {
		return 0, 0, err
	}
	if acked {
		if err := waitEmpty(ctx, o.relay.srv, o.p.bobAddr()); err != nil {
			return 0, 0, err
		}
	}
	d := time.Since(start)
	if err := o.handlerErr(); err != nil {
		return 0, 0, err
	}
	return n, d, nil
}

// fwdProto is the anchor's raw forwarding protocol: 4-byte big-endian
// length-prefixed frames.
const fwdProto = protocol.ID("/peergram-bench/fwd/1")

// anchorFwd is Alice → relay host → Bob over raw libp2p streams.
type anchorFwd struct {
	str network.Stream
	sk  sink
}

func newAnchorFwd(ctx context.Context, c *cleanup) (*anchorFwd, error) {
	alice, err := newHost(c)
	if err != nil {
		return nil, err
	}
	relay, err := newHost(c)
	if err != nil {
		return nil, err
	}
	bob, err := newHost(c)
	if err != nil {
		return nil, err
	}
	if err := connect(ctx, alice, relay); err != nil {
		return nil, err
	}
	if err := connect(ctx, relay, bob); err != nil {
		return nil, err
	}
	a := &anchorFwd{}
	a.sk.reset(0)
	bob.SetStreamHandler(fwdProto, func(s network.Stream) {
		defer s.Close()
		br := bufio.NewReader(s)
		for {
			f, err := readFrame(br)
			if err != nil {
				return
			}
			a.sk.arrived(int(binary.BigEndian.Uint64(f)))
		}
	})
	relay.SetStreamHandler(fwdProto, func(s network.Stream) {
		defer s.Close()
		out, err := relay.NewStream(context.Background(), bob.ID(), fwdProto)
		if err != nil {
			_ = s.Reset()
			return
		}
		defer out.Close()
		forward(s, out)
	})
	str, err := alice.NewStream(ctx, relay.ID(), fwdProto)
	if err != nil {
		return nil, fmt.Errorf("anchor stream: %w", err)
	}
	c.add(func() { _ = str.Reset() })
	a.str = str
	return a, nil
}

// forward copies frames from in to out, one write per frame.
func forward(in io.Reader, out io.Writer) {
	br := bufio.NewReader(in)
	buf := make([]byte, 4+msgSize)
	for {
		f, err := readFrame(br)
		if err != nil {
			return
		}
		buf = appendFrame(buf[:0], f)
		if _, err := out.Write(buf); err != nil {
			return
		}
	}
}

func readFrame(r *bufio.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 8 || n > 1<<20 {
		return nil, errors.New("bad frame length")
	}
	f := make([]byte, n)
	if _, err := io.ReadFull(r, f); err != nil {
		return nil, err
	}
	return f, nil
}

func appendFrame(b, f []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
	return append(b, f...)
}

// round writes n frames (paced or back to back) and waits until Bob has
// read them all.
func (a *anchorFwd) round(ctx context.Context, n int, paced bool) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, roundTimeout)
	defer cancel()
	a.sk.reset(n)
	payload := make([]byte, msgSize)
	buf := make([]byte, 0, 4+msgSize)
	var t *time.Ticker
	if paced {
		t = time.NewTicker(pacedInterval)
		defer t.Stop()
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		if paced && i > 0 {
			<-t.C
		}
		a.sk.sent(i)
		binary.BigEndian.PutUint64(payload, uint64(i))
		buf = appendFrame(buf[:0], payload)
		if _, err := a.str.Write(buf); err != nil {
			return 0, 0, fmt.Errorf("anchor write: %w", err)
		}
	}
	if err := a.sk.wait(ctx); err != nil {
		return 0, 0, err
	}
	return n, time.Since(start), nil
}

func runM1(ctx context.Context, cfg config) (string, error) {
	var c cleanup
	defer c.run()
	o, err := newOursE2E(ctx, &c, false)
	if err != nil {
		return "", err
	}
	a, err := newAnchorFwd(ctx, &c)
	if err != nil {
		return "", err
	}
	return throughputs(ctx, "M1", ">=0.30", cfg.rounds,
		func(ctx context.Context) (int, time.Duration, error) {
			o.inflight = cfg.inflight
			return o.round(ctx, cfg.n, false, false)
		},
		func(ctx context.Context) (int, time.Duration, error) { return a.round(ctx, cfg.n, false) })
}

func runM2(ctx context.Context, cfg config) (string, error) {
	var c cleanup
	defer c.run()
	o, err := newOursE2E(ctx, &c, false)
	if err != nil {
		return "", err
	}
	a, err := newAnchorFwd(ctx, &c)
	if err != nil {
		return "", err
	}
	var oLat, aLat []time.Duration
	var ratios, o50, o99, a50, a99 []float64
	for i := 0; i < cfg.rounds; i++ {
		sides := []func() error{
			func() error {
				_, _, err := o.round(ctx, m2Messages(cfg), true, false)
				oLat = o.sk.latencies()
				return err
			},
			func() error {
				_, _, err := a.round(ctx, m2Messages(cfg), true)
				aLat = a.sk.latencies()
				return err
			},
		}
		if i%2 == 1 {
			sides[0], sides[1] = sides[1], sides[0]
		}
		for _, f := range sides {
			if err := f(); err != nil {
				return "", fmt.Errorf("round %d: %w", i+1, err)
			}
		}
		op99, ap99 := percentile(oLat, 0.99), percentile(aLat, 0.99)
		if ap99 <= 0 {
			return "", errors.New("anchor recorded no latencies")
		}
		ratios = append(ratios, float64(op99)/float64(ap99))
		o50 = append(o50, float64(percentile(oLat, 0.50)))
		o99 = append(o99, float64(op99))
		a50 = append(a50, float64(percentile(aLat, 0.50)))
		a99 = append(a99, float64(ap99))
	}
	d := func(xs []float64) string { return fmtDur(time.Duration(median(xs))) }
	return fmt.Sprintf("M2 ratio=%.3f target=<=3 ours=p50:%s,p99:%s anchor=p50:%s,p99:%s",
		median(ratios), d(o50), d(o99), d(a50), d(a99)), nil
}

func runM3(ctx context.Context, cfg config) (string, error) {
	var c cleanup
	defer c.run()
	o, err := newOursE2E(ctx, &c, true)
	if err != nil {
		return "", err
	}
	db, err := openBadger(&c, true)
	if err != nil {
		return "", err
	}
	val := make([]byte, msgSize)
	if _, err := rand.Read(val); err != nil {
		return "", err
	}
	var seq uint64
	return throughputs(ctx, "M3", ">=0.20", cfg.rounds,
		func(ctx context.Context) (int, time.Duration, error) {
			o.inflight = cfg.inflight
			return o.round(ctx, cfg.n, false, true)
		},
		func(ctx context.Context) (int, time.Duration, error) {
			start := time.Now()
			for done := 0; done < cfg.n; {
				k := min(anchorTxnSize, cfg.n-done)
				err := db.Update(func(txn *badger.Txn) error {
					for j := 0; j < k; j++ {
						seq++
						if err := txn.Set(binary.BigEndian.AppendUint64([]byte("m/"), seq), val); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					return 0, 0, fmt.Errorf("badger update: %w", err)
				}
				done += k
			}
			return cfg.n, time.Since(start), nil
		})
}

// openBadger opens a raw Badger DB in a temp dir.
func openBadger(c *cleanup, sync bool) (*badger.DB, error) {
	dir, err := tempDir(c)
	if err != nil {
		return nil, err
	}
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(dir, "badger")).WithSyncWrites(sync).WithLogger(nil))
	if err != nil {
		return nil, fmt.Errorf("badger open: %w", err)
	}
	c.add(func() { _ = db.Close() })
	return db, nil
}

// m2Messages is the messages per round of M2: paced at 1,000 msg/s, 2,000
// samples (2 s) give a p99 of 20 samples; more only makes the run long.
func m2Messages(cfg config) int { return min(cfg.n, 2000) }

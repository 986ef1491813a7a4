package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/peergram/peergram/relay/mailbox"
)

// ingestWorkers is how many Deposit calls the storage scenarios keep in flight.
const ingestWorkers = 64

// ingestEnv is a relay with one depositing client and one mailbox owner.
type ingestEnv struct {
	relay *relayEnv
	alice *mailbox.Client
	bob   *mailbox.Client
	key   ed25519.PrivateKey
	addr  mailbox.Address
	val   []byte
	seq   atomic.Uint64
}

func newIngestEnv(ctx context.Context, c *cleanup, maxEnvelopes int) (*ingestEnv, error) {
	r, err := newRelay(c, maxEnvelopes)
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
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	val := make([]byte, msgSize)
	if _, err := rand.Read(val); err != nil {
		return nil, err
	}
	return &ingestEnv{relay: r, alice: alice, bob: bob, key: key, addr: mailbox.AddressOf(pub), val: val}, nil
}

// fill deposits n envelopes with ingestWorkers in flight.
func (e *ingestEnv) fill(ctx context.Context, n int) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, roundTimeout)
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	start := time.Now()
	for w := 0; w < ingestWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				var id mailbox.EnvelopeID
				binary.BigEndian.PutUint64(id[:], e.seq.Add(1))
				if err := e.alice.Deposit(ctx, e.relay.h.ID(), e.addr, id, e.val); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, 0, firstErr
	}
	return n, time.Since(start), nil
}

// drain subscribes and returns once n envelopes were delivered; the
// subscription is then closed and the relay's deletes awaited (untimed).
func (e *ingestEnv) drain(ctx context.Context, n int) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, roundTimeout)
	defer cancel()
	subCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	var got atomic.Int64
	errc := make(chan error, 1)
	start := time.Now()
	go func() {
		errc <- e.bob.Subscribe(subCtx, e.relay.h.ID(), e.key, func(_ context.Context, d mailbox.Delivery) error {
			if len(d.Envelope) != msgSize {
				return fmt.Errorf("envelope of %d bytes", len(d.Envelope))
			}
			if got.Add(1) == int64(n) {
				close(done)
			}
			return nil
		})
	}()
	select {
	case <-done:
	case err := <-errc:
		stop()
		return 0, 0, fmt.Errorf("subscribe ended after %d of %d: %w", got.Load(), n, err)
	}
	d := time.Since(start)
	stop()
	<-errc
	if err := waitEmpty(ctx, e.relay.srv, e.addr); err != nil {
		return 0, 0, fmt.Errorf("wait for acks: %w", err)
	}
	return n, d, nil
}

// badgerFill writes n copies of val under prefix with a WriteBatch.
func badgerFill(db *badger.DB, prefix []byte, seq *uint64, n int, val []byte) error {
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	for i := 0; i < n; i++ {
		*seq++
		if err := wb.Set(binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), *seq), val); err != nil {
			return fmt.Errorf("badger write batch: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("badger write batch: %w", err)
	}
	return nil
}

func runS1(ctx context.Context, cfg config) (string, error) {
	var c cleanup
	defer c.run()
	e, err := newIngestEnv(ctx, &c, cfg.rounds*cfg.n+1)
	if err != nil {
		return "", err
	}
	db, err := openBadger(&c, true)
	if err != nil {
		return "", err
	}
	var seq uint64
	return throughputs(ctx, "S1", ">=0.50", cfg.rounds,
		func(ctx context.Context) (int, time.Duration, error) { return e.fill(ctx, cfg.n) },
		func(ctx context.Context) (int, time.Duration, error) {
			start := time.Now()
			if err := badgerFill(db, []byte("m/"), &seq, cfg.n, e.val); err != nil {
				return 0, 0, err
			}
			return cfg.n, time.Since(start), nil
		})
}

func runS2(ctx context.Context, cfg config) (string, error) {
	var c cleanup
	defer c.run()
	e, err := newIngestEnv(ctx, &c, cfg.s2n+1)
	if err != nil {
		return "", err
	}
	db, err := openBadger(&c, true)
	if err != nil {
		return "", err
	}
	var seq uint64
	round := 0
	return throughputs(ctx, "S2", ">=0.40", cfg.rounds,
		func(ctx context.Context) (int, time.Duration, error) {
			if _, _, err := e.fill(ctx, cfg.s2n); err != nil {
				return 0, 0, fmt.Errorf("fill: %w", err)
			}
			return e.drain(ctx, cfg.s2n)
		},
		func(ctx context.Context) (int, time.Duration, error) {
			round++
			prefix := binary.BigEndian.AppendUint32([]byte("m/"), uint32(round))
			if err := badgerFill(db, prefix, &seq, cfg.s2n, e.val); err != nil {
				return 0, 0, err
			}
			start := time.Now()
			got := 0
			var total int
			err := db.View(func(txn *badger.Txn) error {
				it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: prefix})
				defer it.Close()
				for it.Rewind(); it.Valid(); it.Next() {
					if err := it.Item().Value(func(v []byte) error { total += len(v); return nil }); err != nil {
						return err
					}
					got++
				}
				return nil
			})
			if err != nil {
				return 0, 0, fmt.Errorf("badger iterate: %w", err)
			}
			if got != cfg.s2n || total != cfg.s2n*msgSize {
				return 0, 0, fmt.Errorf("badger iterate: %d values, want %d", got, cfg.s2n)
			}
			return got, time.Since(start), nil
		})
}

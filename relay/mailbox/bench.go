package mailbox

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/storage"
)

// The scenarios below are the mailbox benchmarks, exported so that a
// command (cmd/peergram-bench) can run them as well as bench_test.go. Each
// takes a fresh directory and returns only the timed part. Each has an
// anchor: the same work done by raw Badger through the same storage
// options, so a figure means something on any machine.

// benchDepositors is how many goroutines deposit at once in S1: group
// commit needs deposits in flight to group, and a relay serving many nodes
// has hundreds.
const benchDepositors = 256

// benchMailboxes is how many mailboxes S1 spreads its deposits over.
const benchMailboxes = 64

// BenchIngest is scenario S1, mailbox ingest through the real protocol: a
// relay (Server on a loopback libp2p host, storage in dir, synced commits)
// and one client host whose Client deposits n envelopes of size bytes from
// 256 goroutines (a busy relay sees hundreds of deposits in
// flight) into 64 mailboxes. It times the deposits, each answered
// only once durably stored.
func BenchIngest(ctx context.Context, dir string, n, size int) (time.Duration, error) {
	b, err := newBenchRig(dir, Config{MaxEnvelopeSize: max(size, DefaultMaxEnvelopeSize)})
	if err != nil {
		return 0, err
	}
	defer b.close()
	envs := benchValues(size)
	addrs := make([]Address, benchMailboxes)
	for i := range addrs {
		binary.BigEndian.PutUint64(addrs[i][:], uint64(i+1))
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, benchDepositors)
	for w := range benchDepositors {
		wg.Go(func() {
			for i := w; i < n; i += benchDepositors {
				if err := b.client.Deposit(ctx, b.relay.ID(), addrs[i%len(addrs)], benchID(i), envs[i%len(envs)]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, fmt.Errorf("mailbox: bench ingest: %w", err)
	}
	return elapsed, nil
}

// BenchIngestAnchor is S1's anchor: the same n values (envelope plus the
// stored header) written by one raw Badger WriteBatch, synced, in a DB
// opened with storage's options.
func BenchIngestAnchor(ctx context.Context, dir string, n, size int) (time.Duration, error) {
	db, err := storage.Open(storage.Options{Dir: dir, NoCompression: true})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	vals := benchValues(envHeaderV2 + size)
	start := time.Now()
	wb := db.Badger().NewWriteBatch()
	defer wb.Cancel()
	for i := range n {
		if err := wb.Set(benchKey(i), vals[i%len(vals)]); err != nil {
			return 0, err
		}
	}
	if err := wb.Flush(); err != nil {
		return 0, err
	}
	if err := db.Sync(); err != nil { // the store syncs itself (no Badger SyncWrites)
		return 0, err
	}
	return time.Since(start), ctx.Err()
}

// BenchDrain is scenario S2: n envelopes of size bytes queued for one
// mailbox (stored through the Server's committer, not timed), then one
// device subscribes over loopback libp2p and acks each one; timed until
// Subscribe returns, by when the relay has committed every deletion.
func BenchDrain(ctx context.Context, dir string, n, size int) (time.Duration, error) {
	b, err := newBenchRig(dir, Config{MaxEnvelopeSize: max(size, DefaultMaxEnvelopeSize), MaxMailboxEnvelopes: max(n, DefaultMaxMailboxEnvelopes), MaxMailboxBytes: max(int64(n)*int64(size), DefaultMaxMailboxBytes)})
	if err != nil {
		return 0, err
	}
	defer b.close()
	seed := make([]byte, ed25519.SeedSize)
	key := ed25519.NewKeyFromSeed(seed)
	addr := AddressOf(key.Public().(ed25519.PublicKey))
	if err := b.fill(addr, n, size); err != nil {
		return 0, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := 0
	start := time.Now()
	err = b.client.Subscribe(sctx, b.relay.ID(), key, func(context.Context, Delivery) error {
		if got++; got == n {
			cancel()
		}
		return nil
	})
	elapsed := time.Since(start)
	if !errors.Is(err, context.Canceled) || ctx.Err() != nil {
		return 0, fmt.Errorf("mailbox: bench drain: %d of %d delivered: %w", got, n, err)
	}
	if left, _, err := b.srv.Stats(addr); err != nil || left != 0 {
		return 0, fmt.Errorf("mailbox: bench drain: %d envelopes left (%v)", left, err)
	}
	return elapsed, nil
}

// BenchDrainAnchor is S2's anchor: the same n values written by raw Badger
// (not timed), then one raw prefix iteration reading every value.
func BenchDrainAnchor(ctx context.Context, dir string, n, size int) (time.Duration, error) {
	db, err := storage.Open(storage.Options{Dir: dir, NoCompression: true})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	bdb := db.Badger()
	vals := benchValues(envHeaderV2 + size)
	wb := bdb.NewWriteBatch()
	for i := range n {
		if err := wb.Set(benchKey(i), vals[i%len(vals)]); err != nil {
			wb.Cancel()
			return 0, err
		}
	}
	if err := wb.Flush(); err != nil {
		return 0, err
	}
	start := time.Now()
	seen, total := 0, 0
	err = bdb.View(func(txn *badger.Txn) error {
		opt := badger.DefaultIteratorOptions
		opt.Prefix = benchKey(0)[:8]
		it := txn.NewIterator(opt)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := it.Item().Value(func(v []byte) error { total += len(v); return nil }); err != nil {
				return err
			}
			seen++
		}
		return nil
	})
	elapsed := time.Since(start)
	if err == nil && seen != n {
		err = fmt.Errorf("mailbox: bench drain anchor: iterated %d of %d", seen, n)
	}
	if err != nil {
		return 0, err
	}
	_ = total
	return elapsed, ctx.Err()
}

func benchID(i int) EnvelopeID {
	var id EnvelopeID
	binary.BigEndian.PutUint64(id[8:], uint64(i))
	return id
}

// benchKey is the anchor's key: an 8-byte prefix, then a 32-byte counter
// position, like address | seq.
func benchKey(i int) []byte {
	k := make([]byte, 8+addressSize)
	copy(k, "anchor00")
	binary.BigEndian.PutUint64(k[8+addressSize-8:], uint64(i))
	return k
}

// benchRig is a relay and a client on loopback.
type benchRig struct {
	db     *storage.DB
	relay  host.Host
	peer   host.Host
	srv    *Server
	client *Client
}

// newBenchRig starts a relay on dir with cfg and a client connected to it.
// The depositor budgets are lifted: one client stands for the many nodes
// a busy relay serves.
func newBenchRig(dir string, cfg Config) (b *benchRig, err error) {
	b = &benchRig{}
	cfg.DepositBudgets, cfg.StrangerBudgets = Unlimited, Unlimited
	defer func() {
		if err != nil {
			b.close()
			err = fmt.Errorf("mailbox: bench setup: %w", err)
		}
	}()
	if b.db, err = storage.Open(storage.Options{Dir: filepath.Join(dir, "relay"), NoCompression: true}); err != nil {
		return b, err
	}
	opts := []libp2p.Option{libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay()}
	if b.relay, err = libp2p.New(opts...); err != nil {
		return b, err
	}
	if b.peer, err = libp2p.New(opts...); err != nil {
		return b, err
	}
	cfg.DB, cfg.Host = b.db, b.relay
	if b.srv, err = NewServer(cfg); err != nil {
		return b, err
	}
	if err = b.srv.Start(); err != nil {
		return b, err
	}
	if err = b.peer.Connect(context.Background(), peer.AddrInfo{ID: b.relay.ID(), Addrs: b.relay.Addrs()}); err != nil {
		return b, err
	}
	b.client = NewClient(b.peer, nil)
	return b, nil
}

// fill stores n envelopes for addr through the committer, many in flight.
func (b *benchRig) fill(addr Address, n, size int) error {
	envs := benchValues(size)
	const inflight = 4096
	res := make([]chan outcome, 0, inflight)
	wait := func() error {
		for _, r := range res {
			if o := <-r; o.code != CodeOK {
				return fmt.Errorf("mailbox: bench fill: %v: %s", o.code, o.text)
			}
		}
		res = res[:0]
		return nil
	}
	for i := range n {
		r := make(chan outcome, 1)
		if !b.srv.submit(request{dep: &depositReq{msg: &depositMsg{To: addr, ID: benchID(i), Envelope: envs[i%len(envs)]}, class: classContact, ans: chanAnswer(r)}}) {
			return ErrClosed
		}
		if res = append(res, r); len(res) == inflight {
			if err := wait(); err != nil {
				return err
			}
		}
	}
	return wait()
}

func (b *benchRig) close() {
	if b.client != nil {
		_ = b.client.Close()
	}
	if b.srv != nil {
		_ = b.srv.Close()
	}
	if b.peer != nil {
		_ = b.peer.Close()
	}
	if b.relay != nil {
		_ = b.relay.Close()
	}
	if b.db != nil {
		_ = b.db.Close()
	}
}

// benchValues returns 64 distinct pseudo-random values of size bytes: like
// the sealed envelopes a relay really stores, they do not compress, so
// neither side of a scenario gains from Badger's block compression.
func benchValues(size int) [][]byte {
	r := rand.NewChaCha8([32]byte{'p', 'e', 'e', 'r', 'g', 'r', 'a', 'm'})
	out := make([][]byte, 64)
	for i := range out {
		out[i] = make([]byte, size)
		_, _ = r.Read(out[i])
	}
	return out
}

package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/peergram/peergram/crypto/filecrypt"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/relay/blobs"
	"github.com/peergram/peergram/storage"
)

// F1 and F2: a file's way from sender to recipient, against a raw libp2p
// stream of the same bytes in the same run.
//
//	F1  direct: the recipient fetches the chunks from the sender's node
//	    store (relay/blobs read-only, as node/files.go serves them), four
//	    in flight, checks and decrypts each and writes it at its place,
//	    then hashes the whole file — the node's download path; the anchor
//	    reads the same ciphertext from the sender's disk into one raw
//	    stream and the recipient writes it to disk. Target ≥ 0.50.
//	F2  through a relay: the sender uploads every chunk to the relay's
//	    blob store (as uploadFile does), then the recipient downloads
//	    them from it (as F1); the anchor is one raw stream of the same
//	    bytes through the relay (circuit relay v2, no limits). Target ≥
//	    0.40.
//
// Both report the process's peak RSS (VmHWM) too; the file is -fsize
// bytes (1 GiB; -quick 128 MiB).

const rawProto = protocol.ID("/peergram-bench/raw/1.0.0")

// batch is the chunks asked for on one stream (two streams at once).
const batch = 16

// fileRig is a sender whose node store holds one encrypted file.
type fileRig struct {
	dir   string
	a, b  host.Host
	store *blobs.Server
	tok   blobs.Token
	m     *filecrypt.Manifest
	sum   []byte // the plaintext's SHA-256
}

func newFileRig(ctx context.Context, c *cleanup, size int64) (*fileRig, error) {
	dir, err := tempDir(c)
	if err != nil {
		return nil, err
	}
	// The sender takes relayed connections too (F2's anchor).
	a, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.EnableRelay())
	if err != nil {
		return nil, err
	}
	c.add(func() { _ = a.Close() })
	b, err := newHost(c)
	if err != nil {
		return nil, err
	}
	if err := connect(ctx, b, a); err != nil {
		return nil, err
	}
	db, err := storage.Open(storage.Options{Dir: filepath.Join(dir, "db"), MemTableSize: 4 << 20})
	if err != nil {
		return nil, err
	}
	c.add(func() { _ = db.Close() })
	st, err := blobs.NewServer(blobs.Config{Host: a, DB: db, Dir: filepath.Join(dir, "chunks"), ReadOnly: true, Protocol: "/peergram/file/1.0.0",
		AccountQuota: 1 << 40, Capacity: 1 << 40, RequestBurst: 1 << 20, RequestEvery: time.Microsecond})
	if err != nil {
		return nil, err
	}
	if err := st.Start(); err != nil {
		return nil, err
	}
	c.add(func() { _ = st.Close() })
	r := &fileRig{dir: dir, a: a, b: b, store: st}
	if r.tok, err = blobs.NewToken(rand.Reader); err != nil {
		return nil, err
	}
	var acct identity.AccountID
	sum := sha256.New()
	r.m, err = filecrypt.Encrypt(rand.Reader, io.TeeReader(io.LimitReader(rand.Reader, size), sum), size, func(_ int, _ filecrypt.Hash, ct []byte) error {
		_, err := st.Add(r.tok, acct, ct)
		return err
	})
	r.sum = sum.Sum(nil)
	return r, err
}

// download fetches r's file from src with c as node/files.go does:
// batches of chunks over four streams at once (at most four batches past
// the last written), each chunk decrypted (which checks it), written in
// order; the caller checks the whole file off the clock.
func (r *fileRig) download(ctx context.Context, c *blobs.Client, src peer.ID, out string) error {
	w, err := os.Create(out)
	if err != nil {
		return err
	}
	defer w.Close()
	type res struct {
		i   int
		pt  []byte
		err error
	}
	results := make(chan res, 4*batch)
	next, inflight, done := 0, 0, 0
	launch := func() {
		for inflight < 4 && next < len(r.m.Chunks) && next < done+4*batch {
			from, to := next, min(next+batch, len(r.m.Chunks))
			next = to
			inflight++
			go func() {
				hs := hashesOf(r.m)[from:to]
				err := c.GetMany(ctx, src, r.tok, hs, func(k int, ct []byte, err error) error {
					i := from + k
					var pt []byte
					if err == nil {
						pt, err = filecrypt.OpenChunk(nil, r.m.Key, r.m.Size, i, r.m.Chunks[i], ct)
					}
					results <- res{i, pt, err}
					return err
				})
				if err != nil {
					results <- res{-1, nil, err}
				}
				results <- res{-2, nil, nil} // the batch is done
			}()
		}
	}
	launch()
	pending := map[int][]byte{}
	for done < len(r.m.Chunks) {
		x := <-results
		if x.err != nil {
			return x.err
		}
		if x.i == -2 {
			inflight--
			launch()
			continue
		}
		pending[x.i] = x.pt
		for pt, ok := pending[done]; ok; pt, ok = pending[done] {
			if _, err := w.WriteAt(pt, int64(done)*filecrypt.ChunkSize); err != nil {
				return err
			}
			delete(pending, done)
			done++
		}
		launch()
	}
	if err := w.Truncate(r.m.Size); err != nil {
		return err
	}
	return w.Sync()
}

// check tells whether the file at out is r's plaintext (its SHA-256, off
// the clock), and removes it.
func (r *fileRig) check(out string) error {
	defer os.Remove(out)
	f, err := os.Open(out)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if string(h.Sum(nil)) != string(r.sum) {
		return errors.New("the downloaded file differs")
	}
	return nil
}

// serveRaw makes h answer rawProto with every chunk of r, in order, read
// from the sender's disk.
func (r *fileRig) serveRaw(h host.Host) {
	h.SetStreamHandler(rawProto, func(s network.Stream) {
		defer s.Close()
		bw := bufio.NewWriterSize(s, 1<<20)
		for _, ch := range r.m.Chunks {
			f, err := os.Open(r.store.BlobPath(ch))
			if err != nil {
				s.Reset()
				return
			}
			_, err = io.Copy(bw, f)
			f.Close()
			if err != nil {
				s.Reset()
				return
			}
		}
		_ = bw.Flush()
	})
}

// receiveRaw reads a whole raw stream from h to p into a file.
func receiveRaw(ctx context.Context, h host.Host, p peer.ID, dir string) (int64, error) {
	s, err := h.NewStream(network.WithAllowLimitedConn(ctx, "bench"), p, rawProto)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	out := filepath.Join(dir, "raw.bin")
	f, err := os.Create(out)
	if err != nil {
		return 0, err
	}
	defer os.Remove(out)
	defer f.Close()
	n, err := io.Copy(f, s)
	if err != nil {
		return n, err
	}
	return n, f.Sync()
}

func fileSize(cfg config) int64 {
	if cfg.fsize > 0 {
		return cfg.fsize
	}
	return 1 << 30
}

// byteRates runs ours and anchor alternately (the order flips each
// round) and formats the line: throughput in MB/s of plaintext.
// check runs after each round of ours, off the clock.
func byteRates(ctx context.Context, id, target string, rounds int, size int64, ours, anchor func(context.Context) error, check func() error) (string, error) {
	var o, a, r []float64
	for i := range rounds {
		fs := []func(context.Context) error{ours, anchor}
		if i%2 == 1 {
			fs[0], fs[1] = anchor, ours
		}
		var d [2]time.Duration
		for j, f := range fs {
			start := time.Now()
			if err := f(ctx); err != nil {
				return "", fmt.Errorf("round %d: %w", i+1, err)
			}
			d[j] = time.Since(start)
		}
		if err := check(); err != nil {
			return "", fmt.Errorf("round %d: %w", i+1, err)
		}
		if i%2 == 1 {
			d[0], d[1] = d[1], d[0]
		}
		mb := float64(size) / 1e6
		o, a, r = append(o, mb/d[0].Seconds()), append(a, mb/d[1].Seconds()), append(r, d[1].Seconds()/d[0].Seconds())
	}
	return fmt.Sprintf("%s ratio=%.3f target=%s ours=%.0f MB/s anchor=%.0f MB/s size=%d MiB peak_rss=%d MiB",
		id, median(r), target, median(o), median(a), size>>20, peakRSS()>>20), nil
}

func runF1(ctx context.Context, cfg config) (string, error) {
	var c cleanup
	defer c.run()
	size := fileSize(cfg)
	r, err := newFileRig(ctx, &c, size)
	if err != nil {
		return "", err
	}
	r.serveRaw(r.a)
	client := blobs.NewClientFor(r.b, "/peergram/file/1.0.0")
	out := filepath.Join(r.dir, "got.bin")
	return byteRates(ctx, "F1", ">=0.50", cfg.rounds, size,
		func(ctx context.Context) error { return r.download(ctx, client, r.a.ID(), out) },
		func(ctx context.Context) error {
			n, err := receiveRaw(ctx, r.b, r.a.ID(), r.dir)
			if err == nil && n != size+int64(len(r.m.Chunks))*filecrypt.Overhead {
				err = fmt.Errorf("raw stream of %d bytes", n)
			}
			return err
		},
		func() error { return r.check(out) })
}

func runF2(ctx context.Context, cfg config) (string, error) {
	var c cleanup
	defer c.run()
	size := fileSize(cfg)
	r, err := newFileRig(ctx, &c, size)
	if err != nil {
		return "", err
	}
	// The relay: a blob store and an unlimited circuit relay.
	rh, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		return "", err
	}
	c.add(func() { _ = rh.Close() })
	res := relayv2.DefaultResources()
	res.Limit = nil
	rs, err := relayv2.New(rh, relayv2.WithResources(res))
	if err != nil {
		return "", err
	}
	c.add(func() { _ = rs.Close() })
	rdir, err := tempDir(&c)
	if err != nil {
		return "", err
	}
	rdb, err := storage.Open(storage.Options{Dir: filepath.Join(rdir, "db")})
	if err != nil {
		return "", err
	}
	c.add(func() { _ = rdb.Close() })
	rstore, err := blobs.NewServer(blobs.Config{Host: rh, DB: rdb, Dir: filepath.Join(rdir, "blobs"), AccountQuota: 1 << 40, Capacity: 1 << 40,
		RequestBurst: 1 << 20, RequestEvery: time.Microsecond})
	if err != nil {
		return "", err
	}
	if err := rstore.Start(); err != nil {
		return "", err
	}
	c.add(func() { _ = rstore.Close() })
	for _, h := range []host.Host{r.a, r.b} {
		if err := connect(ctx, h, rh); err != nil {
			return "", err
		}
	}
	if _, err := client.Reserve(ctx, r.a, peer.AddrInfo{ID: rh.ID(), Addrs: rh.Addrs()}); err != nil {
		return "", fmt.Errorf("reserve: %w", err)
	}
	circuit, err := ma.NewMultiaddr("/p2p/" + rh.ID().String() + "/p2p-circuit")
	if err != nil {
		return "", err
	}
	r.serveRaw(r.a)
	// The recipient reaches the sender only through the relay.
	relayed, err := libp2p.New(libp2p.NoListenAddrs, libp2p.EnableRelay())
	if err != nil {
		return "", err
	}
	c.add(func() { _ = relayed.Close() })
	if err := connect(ctx, relayed, rh); err != nil {
		return "", err
	}
	relayed.Peerstore().AddAddr(r.a.ID(), circuit, time.Hour)
	dev, cert, err := benchDevice()
	if err != nil {
		return "", err
	}
	up := blobs.NewClient(r.a)
	down := blobs.NewClient(r.b)
	out := filepath.Join(r.dir, "got.bin")
	return byteRates(ctx, "F2", ">=0.40", cfg.rounds, size,
		func(ctx context.Context) error {
			// Upload as uploadFile does: the chunks over one stream.
			err := up.PutMany(ctx, rh.ID(), dev, cert, r.tok, len(r.m.Chunks),
				func(i int) ([]byte, error) { return r.store.Read(r.m.Chunks[i]) },
				func(_ int, err error) error { return err })
			if err != nil {
				return err
			}
			err = r.download(ctx, down, rh.ID(), out)
			// Next round uploads again.
			var acct identity.AccountID = cert.Account
			if derr := rstore.Drop(acct, hashesOf(r.m)...); err == nil {
				err = derr
			}
			return err
		},
		func(ctx context.Context) error {
			n, err := receiveRaw(ctx, relayed, r.a.ID(), r.dir)
			if err == nil && n != size+int64(len(r.m.Chunks))*filecrypt.Overhead {
				err = fmt.Errorf("raw stream of %d bytes", n)
			}
			return err
		},
		func() error { return r.check(out) })
}

func hashesOf(m *filecrypt.Manifest) [][32]byte {
	out := make([][32]byte, len(m.Chunks))
	for i, h := range m.Chunks {
		out[i] = h
	}
	return out
}

func benchDevice() (*identity.DeviceKey, *identity.DeviceCert, error) {
	acct, err := identity.NewAccountKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	dev, err := identity.NewDeviceKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	cert, err := acct.CertifyDevice(dev, "bench", time.Now().Unix())
	return dev, cert, err
}

// peakRSS is this process's peak resident set (VmHWM), in bytes.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

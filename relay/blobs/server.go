package blobs

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/relay/internal/protoframe"
	"github.com/peergram/peergram/relay/internal/ratelimit"
	"github.com/peergram/peergram/relay/internal/serve"
	"github.com/peergram/peergram/storage"
)

// ServiceName is the libp2p resource-manager service of the protocol's
// streams.
const ServiceName = "peergram.blobs"

// Config configures a Server.
type Config struct {
	Host host.Host
	DB   *storage.DB
	// Dir holds the blobs' bytes, a file each (see blobFiles). Required.
	Dir string
	// Retention is how long a blob is kept after its last upload (30
	// days); then it expires, and its bytes go once no reference is left.
	Retention time.Duration
	// AccountQuota bounds the bytes one account's references hold (4
	// GiB: two files of the largest size); Capacity the bytes the store
	// holds in all (64 GiB).
	AccountQuota int64
	Capacity     int64
	// RequestBurst and RequestEvery rate requests per peer (burst 4,096,
	// one more every millisecond: a 1 GiB file is 1,024 chunks).
	RequestBurst int
	RequestEvery time.Duration
	// SweepEvery is how often expired references are dropped (a minute).
	SweepEvery time.Duration
	// ReadOnly refuses Put and Delete from the network: a node serves
	// the chunks of the files it sends this way (Add fills its store), so
	// recipients fetch them directly with the same client and checks as
	// from a relay.
	ReadOnly bool
	// Protocol, if set, is served instead of ProtocolID (a node serves
	// its own chunks on FileProtocolID).
	Protocol string
	// Registerer receives the server's metrics at Start (and loses them
	// at Close); nil registers none.
	Registerer prometheus.Registerer

	Now    func() time.Time
	Logger *slog.Logger
}

func (c *Config) defaults() error {
	if c.DB == nil || c.Host == nil || c.Dir == "" {
		return errors.New("blobs: DB, Host and Dir are required")
	}
	if c.Retention <= 0 {
		c.Retention = 30 * 24 * time.Hour
	}
	if c.AccountQuota <= 0 {
		c.AccountQuota = 4 << 30
	}
	if c.Capacity <= 0 {
		c.Capacity = 64 << 30
	}
	if c.RequestBurst <= 0 {
		c.RequestBurst = 4096
	}
	if c.RequestEvery <= 0 {
		c.RequestEvery = time.Millisecond
	}
	if c.SweepEvery <= 0 {
		c.SweepEvery = time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Server is the relay side of the blob store. Safe for concurrent use.
//
// The blobs' bytes are files in Config.Dir (blobFiles). Keyspaces:
// blobs.ref: hash || account →
// token hash[32] || size u32 || expires u64 (Unix ms) — one per account
// that uploaded the blob; blobs.exp: expires u64 || hash || account →
// nothing, the sweeper's index. Usage per account and in all is counted
// from the references at start and kept in memory.
type Server struct {
	cfg     Config
	log     *slog.Logger
	streams *serve.Streams

	data      blobFiles
	refs, exp storage.Keyspace
	requests  *ratelimit.Limiter[peer.ID]

	// write serializes the changes (uploads, deletions, expiry), so that
	// the counters below follow what storage holds.
	write sync.Mutex
	mu    sync.Mutex // guards the counters
	use   map[identity.AccountID]int64
	blobs map[[32]byte]*blobCount
	total int64

	quit    chan struct{}
	wg      sync.WaitGroup
	onServe func(Token, [32]byte)
	met     *metrics
}

// metrics are the store's Prometheus metrics:
//
//	peergram_blob_bytes_total{op}        counter: blob bytes taken (op "put") and served ("get")
//	peergram_blob_requests_total{op,code} counter: requests by type and answer code
//	peergram_blob_stored_bytes           gauge: bytes held (read at each scrape)
type metrics struct {
	bytes    *prometheus.CounterVec
	requests *prometheus.CounterVec
	stored   prometheus.GaugeFunc
}

func newMetrics(s *Server) *metrics {
	return &metrics{
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "peergram_blob_bytes_total",
			Help: "Blob bytes taken by Put (op put) and served by Get (op get)."}, []string{"op"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "peergram_blob_requests_total",
			Help: "Blob store requests by type and answer code."}, []string{"op", "code"}),
		stored: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "peergram_blob_stored_bytes",
			Help: "Bytes the blob store holds."}, func() float64 { _, t := s.Usage(identity.AccountID{}); return float64(t) }),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.bytes, m.requests, m.stored}
}

// OnServe sets a function called with the token and name of every blob
// served by Get (a node learns that its recipient fetched a file). Call
// it before Start.
func (s *Server) OnServe(fn func(Token, [32]byte)) { s.onServe = fn }

// Read returns a stored blob (a node reading its own chunks to upload
// them).
func (s *Server) Read(h [32]byte) ([]byte, error) {
	b, _, err := s.data.read(h, 0, 0)
	return b, err
}

// BlobPath is where blob h's bytes are (for tests and operators).
func (s *Server) BlobPath(h [32]byte) string { return s.data.path(h) }

type blobCount struct {
	size int64
	refs int
}

// ref is a stored reference.
type ref struct {
	tokenHash [32]byte
	size      int64
	expires   int64
}

func (r *ref) marshal() []byte {
	b := append(make([]byte, 0, 44), r.tokenHash[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(r.size))
	return binary.BigEndian.AppendUint64(b, uint64(r.expires))
}

func parseRef(b []byte) (ref, error) {
	if len(b) != 44 {
		return ref{}, fmt.Errorf("blobs: a reference of %d bytes", len(b))
	}
	var r ref
	copy(r.tokenHash[:], b)
	r.size = int64(binary.BigEndian.Uint32(b[32:]))
	r.expires = int64(binary.BigEndian.Uint64(b[36:]))
	return r, nil
}

func refKey(hash [32]byte, acct identity.AccountID) []byte {
	return append(append(make([]byte, 0, 64), hash[:]...), acct[:]...)
}

func expKey(expires int64, hash [32]byte, acct identity.AccountID) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 72), uint64(expires)), refKey(hash, acct)...)
}

// NewServer checks cfg and counts what the store holds; Start serves.
func NewServer(cfg Config) (*Server, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger,
		data: blobFiles{dir: cfg.Dir}, refs: cfg.DB.Keyspace("blobs.ref"), exp: cfg.DB.Keyspace("blobs.exp"),
		requests: ratelimit.New[peer.ID](cfg.RequestBurst, cfg.RequestEvery, 100_000),
		use:      map[identity.AccountID]int64{},
		blobs:    map[[32]byte]*blobCount{},
		quit:     make(chan struct{}),
	}
	s.met = newMetrics(s)
	err := cfg.DB.View(func(tx *storage.Txn) error {
		return tx.Iterate(s.refs, nil, func(k, v []byte) error {
			r, err := parseRef(v)
			if err != nil || len(k) != 64 {
				return fmt.Errorf("blobs: a stored reference: %v", err)
			}
			var h [32]byte
			copy(h[:], k)
			s.count(h, identity.AccountID(k[32:]), r.size, +1)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("blobs: %w", err)
	}
	// Files a crash left without a reference.
	if n, err := s.data.sweepOrphans(func(h [32]byte) bool { return s.blobs[h] != nil }); err != nil {
		return nil, err
	} else if n > 0 {
		s.log.Info("blobs: removed files no reference names", "files", n)
	}
	proto := ProtocolID
	if cfg.Protocol != "" {
		proto = cfg.Protocol
	}
	s.streams = serve.New(serve.Config{Host: cfg.Host, Protocol: protocol.ID(proto), Service: ServiceName,
		Timeout: 2 * time.Minute, Logger: cfg.Logger}, s.handle)
	return s, nil
}

// count adds (or with -1 removes) a reference of acct to a blob of size.
func (s *Server) count(h [32]byte, acct identity.AccountID, size int64, d int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.use[acct] += int64(d) * size
	if s.use[acct] <= 0 {
		delete(s.use, acct)
	}
	b := s.blobs[h]
	if b == nil {
		b = &blobCount{size: size}
		s.blobs[h] = b
		s.total += size
	}
	b.refs += d
	if b.refs <= 0 {
		delete(s.blobs, h)
		s.total -= b.size
	}
}

// Usage returns the bytes acct's references hold and the bytes stored
// in all.
func (s *Server) Usage(acct identity.AccountID) (account, total int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.use[acct], s.total
}

// Start serves the protocol and sweeps expired references.
func (s *Server) Start() error {
	if r := s.cfg.Registerer; r != nil {
		for i, c := range s.met.collectors() {
			if err := r.Register(c); err != nil {
				for _, d := range s.met.collectors()[:i] {
					r.Unregister(d)
				}
				return fmt.Errorf("blobs: register metrics: %w", err)
			}
		}
	}
	s.wg.Add(1)
	go s.sweepLoop()
	return s.streams.Start()
}

// Close stops serving and sweeping.
func (s *Server) Close() error {
	if r := s.cfg.Registerer; r != nil {
		for _, c := range s.met.collectors() {
			r.Unregister(c)
		}
	}
	s.streams.Close()
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
	s.wg.Wait()
	return nil
}

func (s *Server) handle(str network.Stream, log *slog.Logger) {
	defer str.Close()
	t, body, err := protoframe.Read(str, func(t uint8) (int, bool) {
		switch t {
		case typePut, typeDelete:
			if s.cfg.ReadOnly {
				return 0, false // refused before its body is read
			}
			return bound(t)
		case typeGet, typeHas:
			return bound(t)
		}
		return 0, false
	})
	if err != nil {
		log.Debug("blobs: bad request", "err", err)
		s.answer(str, CodeMalformed, err.Error())
		return
	}
	if !s.requests.Allow(str.Conn().RemotePeer(), s.cfg.Now()) {
		s.answer(str, CodeRateLimited, "too many requests")
		return
	}
	switch t {
	case typePut, typeDelete:
		if s.cfg.ReadOnly {
			s.answer(str, CodeInvalid, "this peer takes no uploads")
			return
		}
	}
	switch t {
	case typePut:
		s.putStream(str, body)
	case typeGet:
		// Gets may follow one another on a stream (GetMany): each is
		// answered in order, and the stream's flow-control window,
		// grown by the first, carries the rest at full speed.
		for n := 0; ; n++ {
			m, err := decodeGet(body)
			if err != nil {
				s.answer(str, CodeMalformed, err.Error())
				return
			}
			s.get(str, m)
			if n+1 >= MaxHashes {
				return
			}
			_, body, err = protoframe.Read(str, func(t uint8) (int, bool) {
				if t == typeGet {
					return bound(t)
				}
				return 0, false
			})
			if err != nil {
				return // the client's half-close ends the stream
			}
			if !s.requests.Allow(str.Conn().RemotePeer(), s.cfg.Now()) {
				s.answer(str, CodeRateLimited, "too many requests")
				return
			}
		}
	case typeHas:
		m, err := decodeHas(body)
		if err != nil {
			s.answer(str, CodeMalformed, err.Error())
			return
		}
		s.has(str, m)
	case typeDelete:
		m, err := decodeDelete(body)
		if err != nil {
			s.answer(str, CodeMalformed, err.Error())
			return
		}
		code, text := s.del(m, str.Conn().LocalPeer())
		s.answer(str, code, text)
	}
}

func (s *Server) answer(str network.Stream, c Code, text string) {
	_, _ = str.Write(protoframe.Frame(typeStatus, (&statusMsg{Code: c, Text: text}).appendBody(nil)))
}

// signer checks a request's certificate, time and device signature and
// returns the account to charge.
func (s *Server) signer(certRaw []byte, timeMs int64, label string, signed, sig []byte) (identity.AccountID, error) {
	cert, err := identity.ParseDeviceCert(certRaw)
	if err != nil {
		return identity.AccountID{}, err
	}
	if err := cert.Verify(); err != nil {
		return identity.AccountID{}, err
	}
	now := s.cfg.Now()
	if t := time.UnixMilli(timeMs); t.Before(now.Add(-10*time.Minute)) || t.After(now.Add(10*time.Minute)) {
		return identity.AccountID{}, errors.New("signed at a time more than 10 minutes from now")
	}
	if !identity.Verify(cert.Device.PublicKey(), label, signed, sig) {
		return identity.AccountID{}, errors.New("bad signature")
	}
	return cert.Account, nil
}

// check verifies an upload: its signature, certificate and time, and
// that the blob is the one named.
func (s *Server) check(m *putMsg, self peer.ID) (upload, *statusMsg) {
	acct, err := s.signer(m.Cert, m.Time, PutLabel, putSigned(string(self), m.Hash, m.TokenHash, m.Time), m.Sig)
	if err != nil {
		return upload{}, &statusMsg{Code: CodeInvalid, Text: err.Error()}
	}
	if len(m.Data) == 0 || sha256.Sum256(m.Data) != m.Hash {
		return upload{}, &statusMsg{Code: CodeInvalid, Text: "the blob does not match its hash"}
	}
	return upload{hash: m.Hash, tokenHash: m.TokenHash, acct: acct, data: m.Data}, nil
}

// putStream serves the Puts of a stream (one, or many: PutMany): a
// reader takes frames off the stream while the uploads it has already
// read are committed together (commit), and answers go back in order.
func (s *Server) putStream(str network.Stream, first []byte) {
	self := str.Conn().LocalPeer()
	type req struct {
		up   upload
		fail *statusMsg
		size int
	}
	reqs := make(chan req, maxPutBatch)
	go func() {
		defer close(reqs)
		body := first
		for n := 0; ; n++ {
			m, err := decodePut(body)
			if err != nil {
				reqs <- req{fail: &statusMsg{Code: CodeMalformed, Text: err.Error()}}
				return
			}
			up, fail := s.check(m, self)
			reqs <- req{up: up, fail: fail, size: len(m.Data)}
			if n+1 >= MaxHashes {
				return
			}
			_, body, err = protoframe.Read(str, func(t uint8) (int, bool) {
				if t == typePut {
					return bound(t)
				}
				return 0, false
			})
			if err != nil {
				return // the client's half-close ends the stream
			}
			if !s.requests.Allow(str.Conn().RemotePeer(), s.cfg.Now()) {
				reqs <- req{fail: &statusMsg{Code: CodeRateLimited, Text: "too many requests"}}
				return
			}
		}
	}()
	defer func() {
		for range reqs { // (a write failed: let the reader finish)
		}
	}()
	for r := range reqs {
		batch := []req{r}
	more:
		for len(batch) < maxPutBatch {
			select {
			case r, ok := <-reqs:
				if !ok {
					break more
				}
				batch = append(batch, r)
			default:
				break more
			}
		}
		var ups []upload
		for _, b := range batch {
			if b.fail == nil {
				ups = append(ups, b.up)
			}
		}
		answers := s.commit(ups)
		for _, b := range batch {
			st := b.fail
			if st == nil {
				st, answers = &answers[0], answers[1:]
			}
			s.met.requests.WithLabelValues("put", st.Code.String()).Inc()
			if st.Code == CodeOK {
				s.met.bytes.WithLabelValues("put").Add(float64(b.size))
			}
			if _, err := str.Write(protoframe.Frame(typeStatus, st.appendBody(nil))); err != nil {
				str.Reset()
				return
			}
		}
	}
}

// maxPutBatch bounds the uploads committed together.
const maxPutBatch = 16

// Add stores data as a blob readable with token, referenced by acct,
// without the network's checks (a node filling its own store). It
// returns the blob's name.
func (s *Server) Add(token Token, acct identity.AccountID, data []byte) ([32]byte, error) {
	h := sha256.Sum256(data)
	if len(data) == 0 || len(data) > MaxBlob {
		return h, fmt.Errorf("blobs: a blob of %d bytes", len(data))
	}
	if code, text := s.store(h, token.hash(), acct, data); code != CodeOK {
		return h, &StatusError{Code: code, Text: text}
	}
	return h, nil
}

// Drop removes acct's reference to h (and h, if nothing else references
// it), as a signed Delete would.
func (s *Server) Drop(acct identity.AccountID, hashes ...[32]byte) error {
	s.write.Lock()
	defer s.write.Unlock()
	for _, h := range hashes {
		if err := s.dropRef(h, acct, -1); err != nil {
			return err
		}
	}
	return nil
}

// store is put after the request's checks.
func (s *Server) store(hash, tokenHash [32]byte, acct identity.AccountID, data []byte) (Code, string) {
	st := s.commit([]upload{{hash: hash, tokenHash: tokenHash, acct: acct, data: data}})
	return st[0].Code, st[0].Text
}

// upload is one checked upload waiting to be committed.
type upload struct {
	hash, tokenHash [32]byte
	acct            identity.AccountID
	data            []byte
}

// commit stores uploads — quotas checked in order — with one sync of the
// files written and one commit of their references, and answers each.
// (A sync per 1 MiB blob held F2 to 0.45 of a relayed stream; without
// it, 0.57.)
func (s *Server) commit(ups []upload) []statusMsg {
	out := make([]statusMsg, len(ups))
	s.write.Lock()
	defer s.write.Unlock()
	type placed struct {
		i       int
		old     *ref
		r       ref
		written bool // a new file
	}
	var todo []placed
	pendingUse := map[identity.AccountID]int64{}
	var pendingTotal int64
	pendingBlobs := map[[32]byte]bool{}
	now := s.cfg.Now()
	for i, u := range ups {
		var old *ref
		err := s.cfg.DB.View(func(tx *storage.Txn) error {
			raw, err := tx.Get(s.refs, refKey(u.hash, u.acct))
			if errors.Is(err, storage.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			r, err := parseRef(raw)
			old = &r
			return err
		})
		if err != nil {
			out[i] = statusMsg{Code: CodeUnavailable, Text: err.Error()}
			continue
		}
		size := int64(len(u.data))
		stored := false
		if old == nil {
			s.mu.Lock()
			used, total := s.use[u.acct]+pendingUse[u.acct], s.total+pendingTotal
			stored = s.blobs[u.hash] != nil || pendingBlobs[u.hash]
			s.mu.Unlock()
			if used+size > s.cfg.AccountQuota {
				out[i] = statusMsg{Code: CodeQuota, Text: fmt.Sprintf("the account's quota is %d bytes; %d are used", s.cfg.AccountQuota, used)}
				continue
			}
			if !stored && total+size > s.cfg.Capacity {
				out[i] = statusMsg{Code: CodeFull, Text: "the relay's blob store is full"}
				continue
			}
		}
		// The bytes first (their file is whole before anything names it).
		// One upload alone (a node filling its own store, a single Put)
		// syncs its file; a batch syncs once below.
		written, err := s.data.write(u.hash, u.data, len(ups) == 1)
		if err != nil {
			code := CodeUnavailable
			if errors.Is(err, syscall.ENOSPC) {
				code = CodeFull
			}
			out[i] = statusMsg{Code: code, Text: err.Error()}
			continue
		}
		if old == nil {
			pendingUse[u.acct] += size
			if !stored {
				pendingTotal += size
				pendingBlobs[u.hash] = true
			}
		}
		todo = append(todo, placed{i: i, old: old, r: ref{tokenHash: u.tokenHash, size: size, expires: now.Add(s.cfg.Retention).UnixMilli()}, written: written})
	}
	if len(todo) == 0 {
		return out
	}
	var err error
	if len(ups) > 1 {
		err = s.data.sync()
	}
	if err == nil {
		err = s.cfg.DB.Update(func(tx *storage.Txn) error {
			for _, p := range todo {
				u := ups[p.i]
				if p.old != nil {
					if err := tx.Delete(s.exp, expKey(p.old.expires, u.hash, u.acct)); err != nil {
						return err
					}
				}
				if err := tx.Set(s.refs, refKey(u.hash, u.acct), p.r.marshal()); err != nil {
					return err
				}
				if err := tx.Set(s.exp, expKey(p.r.expires, u.hash, u.acct), nil); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		code := CodeUnavailable
		if errors.Is(err, storage.ErrDiskFull) || errors.Is(err, syscall.ENOSPC) {
			code = CodeFull
		}
		for _, p := range todo {
			u := ups[p.i]
			s.mu.Lock()
			referenced := s.blobs[u.hash] != nil
			s.mu.Unlock()
			if p.written && !referenced {
				_ = s.data.remove(u.hash)
			}
			out[p.i] = statusMsg{Code: code, Text: err.Error()}
		}
		return out
	}
	for _, p := range todo {
		u := ups[p.i]
		if p.old == nil {
			s.count(u.hash, u.acct, p.r.size, +1)
		}
		out[p.i] = statusMsg{Code: CodeOK}
	}
	return out
}

// readable returns the reference that lets token read blob h, if any
// (unexpired).
func (s *Server) readable(tx *storage.Txn, h [32]byte, token Token) (bool, error) {
	want, now := token.hash(), s.cfg.Now().UnixMilli()
	found := false
	err := tx.Iterate(s.refs, h[:], func(_, v []byte) error {
		r, err := parseRef(v)
		if err != nil {
			return err
		}
		if r.tokenHash == want && r.expires > now {
			found = true
		}
		return nil
	})
	return found, err
}

// get answers a range of a blob to the holder of its token; anyone else
// gets the answer of a blob that does not exist.
func (s *Server) get(str network.Stream, m *getMsg) {
	var out *dataMsg
	var ok bool
	err := s.cfg.DB.View(func(tx *storage.Txn) (err error) {
		ok, err = s.readable(tx, m.Hash, m.Token)
		return err
	})
	if err == nil && ok {
		b, size, rerr := s.data.read(m.Hash, m.Offset, m.Length)
		switch {
		case errors.Is(rerr, errOffset):
			err = fmt.Errorf("%w: offset %d in a blob of %d bytes", protoframe.ErrMalformed, m.Offset, size)
		case errors.Is(rerr, fs.ErrNotExist): // deleted meanwhile
		case rerr != nil:
			err = rerr
		default:
			out = &dataMsg{Size: size, Data: b}
		}
	}
	switch {
	case errors.Is(err, protoframe.ErrMalformed):
		s.answer(str, CodeMalformed, err.Error())
	case err != nil:
		s.answer(str, CodeUnavailable, err.Error())
	case out == nil:
		s.answer(str, CodeNotFound, "no such blob")
	default:
		s.met.requests.WithLabelValues("get", CodeOK.String()).Inc()
		if err := protoframe.Write(str, typeData, out.prefix(), out.Data); err == nil {
			s.met.bytes.WithLabelValues("get").Add(float64(len(out.Data)))
			if s.onServe != nil {
				s.onServe(m.Token, m.Hash)
			}
		}
	}
}

// has answers which of the named blobs the token reads.
func (s *Server) has(str network.Stream, m *hasMsg) {
	var have haveMsg
	err := s.cfg.DB.View(func(tx *storage.Txn) error {
		for i, h := range m.Hashes {
			ok, err := s.readable(tx, h, m.Token)
			if err != nil {
				return err
			}
			if ok {
				have.Index = append(have.Index, i)
			}
		}
		return nil
	})
	if err != nil {
		s.answer(str, CodeUnavailable, err.Error())
		return
	}
	_, _ = str.Write(protoframe.Frame(typeHave, have.appendBody(nil)))
}

// del drops the signer's references to the named blobs.
func (s *Server) del(m *deleteMsg, self peer.ID) (Code, string) {
	acct, err := s.signer(m.Cert, m.Time, DeleteLabel, deleteSigned(string(self), m.Time, m.Hashes), m.Sig)
	if err != nil {
		return CodeInvalid, err.Error()
	}
	s.write.Lock()
	defer s.write.Unlock()
	for _, h := range m.Hashes {
		if err := s.dropRef(h, acct, -1); err != nil {
			return CodeUnavailable, err.Error()
		}
	}
	return CodeOK, ""
}

// dropRef deletes acct's reference to h (if expiresBefore ≥ 0, only if
// it expires before then) and the blob once nothing references it.
// Under s.write.
func (s *Server) dropRef(h [32]byte, acct identity.AccountID, expiresBefore int64) error {
	var dropped *ref
	var gone bool
	err := s.cfg.DB.Update(func(tx *storage.Txn) error {
		dropped, gone = nil, false
		raw, err := tx.Get(s.refs, refKey(h, acct))
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		r, err := parseRef(raw)
		if err != nil {
			return err
		}
		if expiresBefore >= 0 && r.expires >= expiresBefore {
			return nil // renewed meanwhile
		}
		if err := tx.Delete(s.refs, refKey(h, acct)); err != nil {
			return err
		}
		if err := tx.Delete(s.exp, expKey(r.expires, h, acct)); err != nil {
			return err
		}
		left, err := tx.Count(s.refs, h[:])
		if err != nil {
			return err
		}
		gone = left == 0
		dropped = &r
		return nil
	})
	if err == nil && dropped != nil {
		s.count(h, acct, dropped.size, -1)
		if gone {
			// After the commit: a crash before this leaves a file no
			// reference names, which the next start removes.
			err = s.data.remove(h)
		}
	}
	return err
}

func (s *Server) sweepLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			if n, err := s.Sweep(); err != nil {
				s.log.Warn("blobs: sweep", "err", err)
			} else if n > 0 {
				s.log.Info("blobs: expired", "references", n)
			}
		}
	}
}

// Sweep drops the references that expired, and the blobs nothing
// references any more; it returns how many references went.
func (s *Server) Sweep() (int, error) {
	now := s.cfg.Now().UnixMilli()
	type due struct {
		h    [32]byte
		acct identity.AccountID
	}
	var dues []due
	err := s.cfg.DB.View(func(tx *storage.Txn) error {
		return tx.Iterate(s.exp, nil, func(k, _ []byte) error {
			if len(k) != 72 {
				return nil
			}
			if int64(binary.BigEndian.Uint64(k)) >= now || len(dues) >= 10_000 {
				return errStop
			}
			var d due
			copy(d.h[:], k[8:40])
			copy(d.acct[:], k[40:])
			dues = append(dues, d)
			return nil
		})
	})
	if err != nil && !errors.Is(err, errStop) {
		return 0, err
	}
	s.write.Lock()
	defer s.write.Unlock()
	for _, d := range dues {
		if err := s.dropRef(d.h, d.acct, now); err != nil {
			return 0, err
		}
	}
	return len(dues), nil
}

var errStop = errors.New("stop")

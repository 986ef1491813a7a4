package blobs

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

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

	Now    func() time.Time
	Logger *slog.Logger
}

func (c *Config) defaults() error {
	if c.DB == nil || c.Host == nil {
		return errors.New("blobs: DB and Host are required")
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
// Keyspaces: blobs.data: hash → the blob; blobs.ref: hash || account →
// token hash[32] || size u32 || expires u64 (Unix ms) — one per account
// that uploaded the blob; blobs.exp: expires u64 || hash || account →
// nothing, the sweeper's index. Usage per account and in all is counted
// from the references at start and kept in memory.
type Server struct {
	cfg     Config
	log     *slog.Logger
	streams *serve.Streams

	data, refs, exp storage.Keyspace
	requests        *ratelimit.Limiter[peer.ID]

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
}

// OnServe sets a function called with the token and name of every blob
// served by Get (a node learns that its recipient fetched a file). Call
// it before Start.
func (s *Server) OnServe(fn func(Token, [32]byte)) { s.onServe = fn }

// Read returns a stored blob (a node reading its own chunks to upload
// them).
func (s *Server) Read(h [32]byte) ([]byte, error) {
	var out []byte
	err := s.cfg.DB.View(func(tx *storage.Txn) error {
		b, err := tx.Get(s.data, h[:])
		out = b
		return err
	})
	return out, err
}

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
		data: cfg.DB.Keyspace("blobs.data"), refs: cfg.DB.Keyspace("blobs.ref"), exp: cfg.DB.Keyspace("blobs.exp"),
		requests: ratelimit.New[peer.ID](cfg.RequestBurst, cfg.RequestEvery, 100_000),
		use:      map[identity.AccountID]int64{},
		blobs:    map[[32]byte]*blobCount{},
		quit:     make(chan struct{}),
	}
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
	s.wg.Add(1)
	go s.sweepLoop()
	return s.streams.Start()
}

// Close stops serving and sweeping.
func (s *Server) Close() error {
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
		case typePut, typeGet, typeHas, typeDelete:
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
		m, err := decodePut(body)
		if err != nil {
			s.answer(str, CodeMalformed, err.Error())
			return
		}
		code, text := s.put(m, str.Conn().LocalPeer())
		s.answer(str, code, text)
	case typeGet:
		m, err := decodeGet(body)
		if err != nil {
			s.answer(str, CodeMalformed, err.Error())
			return
		}
		s.get(str, m)
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

// put stores a blob and the uploader's reference to it (or renews the
// reference), within the account's quota and the store's capacity.
func (s *Server) put(m *putMsg, self peer.ID) (Code, string) {
	acct, err := s.signer(m.Cert, m.Time, PutLabel, putSigned(string(self), m.Hash, m.TokenHash, m.Time), m.Sig)
	if err != nil {
		return CodeInvalid, err.Error()
	}
	if len(m.Data) == 0 || sha256.Sum256(m.Data) != m.Hash {
		return CodeInvalid, "the blob does not match its hash"
	}
	return s.store(m.Hash, m.TokenHash, acct, m.Data)
}

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
	m := &putMsg{Hash: hash, TokenHash: tokenHash, Data: data}
	size := int64(len(m.Data))
	var err error
	s.write.Lock()
	defer s.write.Unlock()
	var old *ref
	err = s.cfg.DB.View(func(tx *storage.Txn) error {
		raw, err := tx.Get(s.refs, refKey(m.Hash, acct))
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
		return CodeUnavailable, err.Error()
	}
	if old == nil {
		s.mu.Lock()
		used, total, stored := s.use[acct], s.total, s.blobs[m.Hash] != nil
		s.mu.Unlock()
		if used+size > s.cfg.AccountQuota {
			return CodeQuota, fmt.Sprintf("the account's quota is %d bytes; %d are used", s.cfg.AccountQuota, used)
		}
		if !stored && total+size > s.cfg.Capacity {
			return CodeFull, "the relay's blob store is full"
		}
	}
	r := ref{tokenHash: m.TokenHash, size: size, expires: s.cfg.Now().Add(s.cfg.Retention).UnixMilli()}
	err = s.cfg.DB.Update(func(tx *storage.Txn) error {
		if old != nil {
			if err := tx.Delete(s.exp, expKey(old.expires, m.Hash, acct)); err != nil {
				return err
			}
		}
		if ok, err := tx.Has(s.data, m.Hash[:]); err != nil {
			return err
		} else if !ok {
			if err := tx.Set(s.data, m.Hash[:], m.Data); err != nil {
				return err
			}
		}
		if err := tx.Set(s.refs, refKey(m.Hash, acct), r.marshal()); err != nil {
			return err
		}
		return tx.Set(s.exp, expKey(r.expires, m.Hash, acct), nil)
	})
	switch {
	case errors.Is(err, storage.ErrDiskFull):
		return CodeFull, "the relay's disk is full"
	case err != nil:
		return CodeUnavailable, err.Error()
	}
	if old == nil {
		s.count(m.Hash, acct, size, +1)
	}
	return CodeOK, ""
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
	err := s.cfg.DB.View(func(tx *storage.Txn) error {
		ok, err := s.readable(tx, m.Hash, m.Token)
		if err != nil || !ok {
			return err
		}
		b, err := tx.Get(s.data, m.Hash[:])
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		size := uint64(len(b))
		if m.Offset > size {
			return fmt.Errorf("%w: offset %d in a blob of %d bytes", protoframe.ErrMalformed, m.Offset, size)
		}
		end := size
		if m.Length > 0 && m.Offset+m.Length < size {
			end = m.Offset + m.Length
		}
		out = &dataMsg{Size: size, Data: bytes.Clone(b[m.Offset:end])}
		return nil
	})
	switch {
	case errors.Is(err, protoframe.ErrMalformed):
		s.answer(str, CodeMalformed, err.Error())
	case err != nil:
		s.answer(str, CodeUnavailable, err.Error())
	case out == nil:
		s.answer(str, CodeNotFound, "no such blob")
	default:
		if _, err := str.Write(protoframe.Frame(typeData, out.appendBody(nil))); err == nil && s.onServe != nil {
			s.onServe(m.Token, m.Hash)
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
	err := s.cfg.DB.Update(func(tx *storage.Txn) error {
		dropped = nil
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
		if left == 0 {
			if err := tx.Delete(s.data, h[:]); err != nil {
				return err
			}
		}
		dropped = &r
		return nil
	})
	if err == nil && dropped != nil {
		s.count(h, acct, dropped.size, -1)
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

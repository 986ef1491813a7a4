package history

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/relay/groupnet"
	"github.com/peergram/peergram/relay/internal/ratelimit"
	"github.com/peergram/peergram/relay/internal/serve"
	"github.com/peergram/peergram/storage"
)

// ServiceName is the libp2p resource-manager service of the protocol's
// streams.
const ServiceName = "peergram.history"

// Config configures a Server. Zero values take the documented defaults.
type Config struct {
	DB   *storage.DB
	Host host.Host

	// Retention is how long an envelope is kept (30 days).
	Retention time.Duration
	// MaxGroupMessages and MaxGroupBytes are a group's quota (100,000
	// envelopes, 256 MiB); over it the oldest are deleted.
	MaxGroupMessages int
	MaxGroupBytes    int64
	// MaxGroups bounds the groups a relay keeps (10,000);
	// MaxGroupsPerPeer the new registrations one peer makes per day (256).
	MaxGroups        int
	MaxGroupsPerPeer int
	// RegistrationTTL is how long a registration lasts unless renewed
	// (30 days).
	RegistrationTTL time.Duration
	// RequestBurst and RequestEvery rate requests per peer (burst 200,
	// one more every 10 ms).
	RequestBurst int
	RequestEvery time.Duration
	// MaxWait bounds a Heads request's wait (30 s).
	MaxWait time.Duration

	Now    func() time.Time
	Logger *slog.Logger
}

func (c *Config) defaults() error {
	if c.DB == nil || c.Host == nil {
		return errors.New("history: DB and Host are required")
	}
	if c.Retention <= 0 {
		c.Retention = 30 * 24 * time.Hour
	}
	if c.MaxGroupMessages <= 0 {
		c.MaxGroupMessages = 100_000
	}
	if c.MaxGroupBytes <= 0 {
		c.MaxGroupBytes = 256 << 20
	}
	if c.MaxGroups <= 0 {
		c.MaxGroups = 10_000
	}
	if c.MaxGroupsPerPeer <= 0 {
		c.MaxGroupsPerPeer = 256
	}
	if c.RegistrationTTL <= 0 {
		c.RegistrationTTL = 30 * 24 * time.Hour
	}
	if c.RequestBurst <= 0 {
		c.RequestBurst = 200
	}
	if c.RequestEvery <= 0 {
		c.RequestEvery = 10 * time.Millisecond
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 30 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Server is the relay side: it keeps the registered groups' logs, joins
// their topics, stores what it accepts and answers queries. Safe for
// concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	streams *serve.Streams
	net     *groupnet.Net

	reg, logs, lists, msgs, ids, names, gnames storage.Keyspace
	// seqs keeps each group's next sequence number (group → uint64),
	// without expiry: numbers are never given twice, even after every
	// envelope of a quiet group expired and the relay restarted
	// (members' cursors are these numbers).
	seqs storage.Keyspace
	// storeID names this store in Heads answers (history.meta "store",
	// drawn once): members tell a lost store from a restart by it.
	storeID uint64

	// pageBudget bounds a Log page's entries and lists (logBudget;
	// tests make it small to page small logs).
	pageBudget int

	// building bounds the new groups built from several pages at once
	// (each held in memory until its last page).
	building chan struct{}

	// regMu orders registrations, so that what each one writes of a
	// group's log lands in the order the log changed.
	regMu sync.Mutex

	requests *ratelimit.Limiter[peer.ID]
	newGroup *ratelimit.Limiter[identity.AccountID]
	// storeRate bounds what one device hands over with Store (stragglers
	// only: 100 at once, then 10 a second).
	storeRate *ratelimit.Limiter[identity.DeviceID]

	ctx    context.Context
	cancel context.CancelFunc
	in     chan queued
	wg     sync.WaitGroup

	mu      sync.Mutex // guards the fields below
	groups  map[[32]byte]*group
	changed chan struct{} // closed and replaced when a head moves
}

// queued is an envelope for the committer; done, if not nil, is told
// the outcome once it is written (or not): a Store is answered only
// then, so that its sender drops its own copy only once the relay holds
// it.
type queued struct {
	m    *groupnet.Message
	done chan error
}

// group is what the relay knows of one registered group.
type group struct {
	log     *groupstate.Log                 // verified; registrations are merged into it (groupstate's fork rule)
	lists   map[identity.AccountID]heldList // members' newest lists
	devices map[identity.DeviceID]identity.AccountID
	expires time.Time
	// Sequence numbers: next is the next to give; head the highest
	// committed (Heads and pages report it, so a client never sees a
	// number whose envelope is still being written); first the lowest
	// still held.
	first, next, head uint64
	bytes             int64
	cancel            context.CancelFunc
	// listsDirty names the accounts whose list changed or went since the
	// group was last written.
	listsDirty map[identity.AccountID]bool
}

// NewServer checks cfg; Start serves.
func NewServer(cfg Config) (*Server, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		reg:       cfg.DB.Keyspace("history.reg"),
		seqs:      cfg.DB.Keyspace("history.seq"),
		logs:      cfg.DB.Keyspace("history.log"),
		lists:     cfg.DB.Keyspace("history.lists"),
		msgs:      cfg.DB.Keyspace("history.msg"),
		ids:       cfg.DB.Keyspace("history.id"),
		names:     cfg.DB.Keyspace("history.name"),
		gnames:    cfg.DB.Keyspace("history.gname"),
		requests:  ratelimit.New[peer.ID](cfg.RequestBurst, cfg.RequestEvery, 100_000),
		newGroup:  ratelimit.New[identity.AccountID](cfg.MaxGroupsPerPeer, 24*time.Hour/time.Duration(cfg.MaxGroupsPerPeer), 100_000),
		storeRate: ratelimit.New[identity.DeviceID](100, 100*time.Millisecond, 100_000),
		in:        make(chan queued, 4096),
		groups:    map[[32]byte]*group{},
		changed:   make(chan struct{}),

		pageBudget: logBudget,
		building:   make(chan struct{}, maxBuilding),
	}
	s.streams = serve.New(serve.Config{Host: cfg.Host, Protocol: ProtocolID, Service: ServiceName,
		Timeout: cfg.MaxWait + 30*time.Second, Logger: cfg.Logger}, s.handle)
	return s, nil
}

// Start starts gossip on the host, loads the registered groups, joins
// their topics and serves the protocol.
func (s *Server) Start() error {
	s.ctx, s.cancel = context.WithCancel(context.Background())
	net, err := groupnet.New(s.ctx, groupnet.Config{Host: s.cfg.Host, Members: (*members)(s), Now: s.cfg.Now, Logger: s.log})
	if err != nil {
		s.cancel()
		return fmt.Errorf("history: %w", err)
	}
	s.net = net
	if err := s.loadStoreID(); err != nil {
		s.cancel()
		return err
	}
	if err := s.load(); err != nil {
		s.cancel()
		return err
	}
	s.wg.Add(2)
	go s.commit()
	go s.expire()
	return s.streams.Start()
}

// Close stops serving, leaves every topic and waits for the committer.
func (s *Server) Close() error {
	if s.cancel != nil {
		s.cancel() // first: it ends the Heads requests that wait
	}
	s.streams.Close()
	if s.cancel == nil {
		return nil
	}
	_ = s.net.Close()
	s.wg.Wait()
	return nil
}

// loadStoreID reads the store's ID, drawing it if the store is new.
func (s *Server) loadStoreID() error {
	meta := s.cfg.DB.Keyspace("history.meta")
	return s.cfg.DB.Update(func(tx *storage.Txn) error {
		v, err := tx.Get(meta, []byte("store"))
		if err == nil && len(v) == 8 && binary.BigEndian.Uint64(v) != 0 {
			s.storeID = binary.BigEndian.Uint64(v)
			return nil
		}
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("history: store ID: %w", err)
		}
		var b [8]byte
		for binary.BigEndian.Uint64(b[:]) == 0 {
			if _, err := rand.Read(b[:]); err != nil {
				return err
			}
		}
		s.storeID = binary.BigEndian.Uint64(b[:])
		return tx.Set(meta, []byte("store"), b[:])
	})
}

// Net is the server's gossip (for tests and metrics).
func (s *Server) Net() *groupnet.Net { return s.net }

// load reads the registrations, drops the expired ones, and finds each
// group's sequence range and size. A registration stored whole (as
// relays before paged logs did) is written again entry by entry.
func (s *Server) load() error {
	type stored struct {
		id      [32]byte
		expires time.Time
		body    []byte // legacy: the whole registration
	}
	var regs []stored
	var dead [][]byte
	now := s.cfg.Now()
	err := s.cfg.DB.View(func(tx *storage.Txn) error {
		return tx.Iterate(s.reg, nil, func(k, v []byte) error {
			if len(v) < 8 || len(k) != 32 {
				dead = append(dead, append([]byte(nil), k...))
				return nil
			}
			exp := time.UnixMilli(int64(binary.BigEndian.Uint64(v)))
			if exp.Before(now) {
				dead = append(dead, append([]byte(nil), k...))
				return nil
			}
			regs = append(regs, stored{[32]byte(k), exp, append([]byte(nil), v[8:]...)})
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("history: load: %w", err)
	}
	if len(dead) > 0 {
		for _, k := range dead {
			if len(k) == 32 {
				if err := s.forget([32]byte(k)); err != nil {
					return fmt.Errorf("history: load: %w", err)
				}
			}
		}
		if err := s.cfg.DB.Update(func(tx *storage.Txn) error {
			for _, k := range dead {
				if err := tx.Delete(s.reg, k); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return fmt.Errorf("history: load: %w", err)
		}
	}
	for _, r := range regs {
		m := &registerMsg{Group: r.id}
		legacy := len(r.body) > 0
		if legacy {
			if m, err = decodeRegister(r.body); err != nil || m.Group != r.id {
				s.log.Warn("history: a stored registration does not decode", "err", err)
				continue
			}
		} else if err := s.cfg.DB.View(func(tx *storage.Txn) error {
			if err := tx.Iterate(s.logs, r.id[:], func(_, v []byte) error {
				m.Entries = append(m.Entries, append([]byte(nil), v...))
				return nil
			}); err != nil {
				return err
			}
			return tx.Iterate(s.lists, r.id[:], func(_, v []byte) error {
				m.Lists = append(m.Lists, append([]byte(nil), v...))
				return nil
			})
		}); err != nil {
			return fmt.Errorf("history: load: %w", err)
		}
		var g *group
		if legacy {
			g, err = verifyRegister(m, s.cfg.Now())
		} else {
			g, err = storedGroup(r.id, m)
		}
		if err != nil {
			s.log.Warn("history: a stored registration does not verify", "err", err)
			continue
		}
		g.expires = r.expires
		if err := s.resume(r.id, g); err != nil {
			return fmt.Errorf("history: load: %w", err)
		}
		if legacy {
			if err := s.persist(r.id, g, 0, 0); err != nil {
				return fmt.Errorf("history: load: %w", err)
			}
		} else {
			g.listsDirty = nil // as stored
		}
		if err := s.join(r.id, g); err != nil {
			return err
		}
	}
	return nil
}

// resume sets a group's sequence range and size from what the store
// holds: numbering goes on from where it stopped (history.seq), although
// every envelope may have expired meanwhile or the group's registration
// lapsed and came again — a number given twice would sit at or below
// members' cursors, and write over an envelope whose ID the store still
// lists as held (outside reviews 22 and 23).
func (s *Server) resume(id [32]byte, g *group) error {
	g.first, g.next, g.head, g.bytes = 1, 1, 0, 0
	return s.cfg.DB.View(func(tx *storage.Txn) error {
		if v, err := tx.Get(s.seqs, id[:]); err == nil && len(v) == 8 {
			next := binary.BigEndian.Uint64(v)
			g.first, g.next, g.head = next, next, next-1
		} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		first := true
		return tx.Iterate(s.msgs, id[:], func(k, v []byte) error {
			if len(k) != 40 {
				return nil
			}
			seq := binary.BigEndian.Uint64(k[32:]) // ascending
			if first {
				g.first, first = seq, false
			}
			g.next, g.head = max(g.next, seq+1), max(g.head, seq)
			g.bytes += int64(len(v))
			return nil
		})
	})
}

// storedGroup rebuilds a group from its stored log and lists. Written in
// several transactions, a log that changed when the relay stopped may
// end in entries of two branches: the log is taken up to where it stops
// verifying, and the members' next registrations bring the rest.
func storedGroup(id [32]byte, m *registerMsg) (*group, error) {
	var l *groupstate.Log
	for i, raw := range m.Entries {
		e, err := groupstate.Parse(raw)
		if err == nil {
			if l == nil {
				l, err = groupstate.NewLog(e)
			} else if e.Seq != l.Head().Seq+1 {
				err = fmt.Errorf("entry %d stored as %d", e.Seq, i)
			} else {
				_, err = l.Add(e)
			}
		}
		if err != nil {
			if l == nil {
				return nil, err
			}
			break
		}
	}
	if l == nil {
		return nil, errors.New("no state log")
	}
	if l.Group() != id {
		return nil, errors.New("the log is another group's")
	}
	g := &group{log: l, lists: map[identity.AccountID]heldList{}}
	if err := g.takeLists(m.Lists); err != nil {
		return nil, err
	}
	return g, nil
}

// persist writes what changed of g's registration: its expiry, its log
// from entry from on (entries beyond the log's end up to stored, the
// length last written, deleted: a fork may shorten the log) and the
// lists marked dirty.
func (s *Server) persist(id [32]byte, g *group, from, stored uint64) error {
	s.mu.Lock()
	entries := g.log.Entries(from)
	n := g.log.Head().Seq + 1
	type list struct {
		a   identity.AccountID
		raw []byte
	}
	var ls []list
	for a := range g.listsDirty {
		ls = append(ls, list{a, g.lists[a].raw}) // nil: gone
	}
	g.listsDirty = nil
	expires := g.expires
	s.mu.Unlock()
	// In transactions of at most a page each, and within what Badger
	// takes in one.
	write := func(fn func(tx *storage.Txn) error) error { return s.cfg.DB.Update(fn) }
	budget := int(min(int64(logBudget), s.cfg.DB.MaxTxnBytes()/2))
	for len(entries) > 0 {
		size := 0
		err := write(func(tx *storage.Txn) error {
			for len(entries) > 0 && size < budget {
				raw, err := entries[0].MarshalBinary()
				if err != nil {
					return err
				}
				if err := tx.Set(s.logs, entryKey(id, entries[0].Seq), raw); err != nil {
					return err
				}
				size += len(raw) + 64
				entries = entries[1:]
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for len(ls) > 0 {
		size := 0
		err := write(func(tx *storage.Txn) error {
			for len(ls) > 0 && size < budget {
				k := append(append([]byte(nil), id[:]...), ls[0].a[:]...)
				var err error
				if ls[0].raw == nil {
					err = tx.Delete(s.lists, k)
				} else {
					err = tx.Set(s.lists, k, ls[0].raw)
				}
				if err != nil {
					return err
				}
				size += len(ls[0].raw) + 64
				ls = ls[1:]
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return write(func(tx *storage.Txn) error {
		for seq := n; seq < stored; seq++ {
			if err := tx.Delete(s.logs, entryKey(id, seq)); err != nil {
				return err
			}
		}
		return tx.Set(s.reg, id[:], binary.BigEndian.AppendUint64(nil, uint64(expires.UnixMilli())))
	})
}

// forget deletes a group's stored log and lists (its registration
// expired).
func (s *Server) forget(id [32]byte) error {
	for _, ks := range []storage.Keyspace{s.logs, s.lists} {
		var keys [][]byte
		if err := s.cfg.DB.View(func(tx *storage.Txn) error {
			return tx.Iterate(ks, id[:], func(k, _ []byte) error {
				keys = append(keys, append([]byte(nil), k...))
				return nil
			})
		}); err != nil {
			return err
		}
		for len(keys) > 0 {
			chunk := keys[:min(len(keys), max(1, int(s.cfg.DB.MaxTxnBytes()/2/128)))]
			keys = keys[len(chunk):]
			if err := s.cfg.DB.Update(func(tx *storage.Txn) error {
				for _, k := range chunk {
					if err := tx.Delete(ks, k); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

// entryKey is a stored log entry's key: group ‖ seq (big-endian, so a
// group's entries iterate in order).
func entryKey(id [32]byte, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), id[:]...), seq)
}

// heldList is a member's signed device list as the relay keeps it.
type heldList struct {
	version uint64
	raw     []byte
	devices []identity.DeviceID
}

// verifyRegister checks a registration's log and lists and builds the
// group's state from them. Of the lists, only members' are kept (the
// newest per account), and only those are verified.
//
// Entries dated more than groupstate.MaxSkew ahead of now, and what
// follows them, are left out: members do not take them (a far-future
// time carries into every later entry and expires the group's invite
// links), and a joiner fetching the log here would follow them.
func verifyRegister(m *registerMsg, now time.Time) (*group, error) {
	if len(m.Entries) == 0 {
		return nil, errors.New("no state log")
	}
	ahead := now.UnixMilli() + groupstate.MaxSkew
	entries := make([]*groupstate.Entry, 0, len(m.Entries))
	for i, raw := range m.Entries {
		e, err := groupstate.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		if e.Time > ahead {
			break // (none left: Replay refuses an empty log)
		}
		entries = append(entries, e)
	}
	l, err := groupstate.Replay(entries)
	if err != nil {
		return nil, err
	}
	if l.Group() != m.Group {
		return nil, errors.New("the log is another group's")
	}
	g := &group{log: l, lists: map[identity.AccountID]heldList{}}
	if err := g.takeLists(m.Lists); err != nil {
		return nil, err
	}
	return g, nil
}

// takeLists keeps, of raws, the newest list of each member that is newer
// than the one held, after verifying it; then drops non-members' lists.
func (g *group) takeLists(raws [][]byte) error {
	st := g.log.State()
	best := map[identity.AccountID]*identity.DeviceList{}
	bestRaw := map[identity.AccountID][]byte{}
	for i, raw := range raws {
		dl, err := identity.ParseDeviceList(raw)
		if err != nil {
			return fmt.Errorf("device list %d: %w", i, err)
		}
		if st.Role(dl.Account) == groupstate.RoleNone {
			continue // not a member: of no use, and not kept
		}
		if h, ok := g.lists[dl.Account]; ok && h.version >= dl.Version {
			continue
		}
		if b := best[dl.Account]; b == nil || dl.Version > b.Version {
			best[dl.Account], bestRaw[dl.Account] = dl, raw
		}
	}
	for a, dl := range best {
		if err := dl.Verify(a); err != nil {
			return fmt.Errorf("the device list of %s: %w", a, err)
		}
		h := heldList{version: dl.Version, raw: bytes.Clone(bestRaw[a])}
		for _, c := range dl.Devices {
			h.devices = append(h.devices, c.Device)
		}
		g.lists[a] = h
		g.dirty(a)
	}
	g.prune()
	return nil
}

// dirty marks a's list to be written (or deleted) with the group.
func (g *group) dirty(a identity.AccountID) {
	if g.listsDirty == nil {
		g.listsDirty = map[identity.AccountID]bool{}
	}
	g.listsDirty[a] = true
}

// prune drops the lists of accounts that are no longer members and
// rebuilds the device map.
func (g *group) prune() {
	st := g.log.State()
	g.devices = map[identity.DeviceID]identity.AccountID{}
	for a, h := range g.lists {
		if st.Role(a) == groupstate.RoleNone {
			delete(g.lists, a)
			g.dirty(a)
			continue
		}
		for _, d := range h.devices {
			g.devices[d] = a
		}
	}
}

// logPage is the page of g's log and lists that GetLog asks for: the
// entries from sequence number from on and then the lists (by account)
// from the listsFrom-th on, up to budget bytes (at least one item).
func (g *group) logPage(id [32]byte, from, listsFrom uint64, budget int) (*registerMsg, error) {
	m := &registerMsg{Group: id, From: from, ListsFrom: listsFrom, Total: g.log.Head().Seq + 1, ListsTotal: uint64(len(g.lists))}
	size := 0
	for _, e := range g.log.Entries(from) {
		raw, err := e.MarshalBinary()
		if err != nil {
			return nil, err
		}
		if size > 0 && size+len(raw)+8 > budget {
			return m, nil
		}
		size += len(raw) + 8
		m.Entries = append(m.Entries, raw)
	}
	accts := slices.SortedFunc(maps.Keys(g.lists), func(a, b identity.AccountID) int { return bytes.Compare(a[:], b[:]) })
	for _, a := range accts[min(listsFrom, uint64(len(accts))):] {
		raw := g.lists[a].raw
		if size > 0 && size+len(raw)+8 > budget {
			break
		}
		size += len(raw) + 8
		m.Lists = append(m.Lists, raw)
	}
	return m, nil
}

// signer checks a registration's signature: by a device on a member's
// list, over this relay's ID, the group and a time within 10 minutes.
func (g *group) signer(m *registerMsg, relay peer.ID, now time.Time) (identity.AccountID, error) {
	acct, ok := g.devices[identity.DeviceID(m.Device)]
	switch {
	case !ok:
		return acct, errors.New("signed by a device that is not a member's")
	case time.UnixMilli(m.Time).Before(now.Add(-10*time.Minute)) || time.UnixMilli(m.Time).After(now.Add(10*time.Minute)):
		return acct, errors.New("signed at a time more than 10 minutes from now")
	case !identity.Verify(identity.DeviceID(m.Device).PublicKey(), RegisterLabel, registerSigned(string(relay), m.Group, m.Time), m.Sig):
		return acct, errors.New("bad signature")
	}
	return acct, nil
}

// join records g and subscribes to its topic, unless a group of that ID
// is recorded already (errJoined: merge into that one instead).
func (s *Server) join(id [32]byte, g *group) error {
	ctx, cancel := context.WithCancel(s.ctx)
	g.cancel = cancel
	s.mu.Lock()
	if s.groups[id] != nil {
		s.mu.Unlock()
		cancel()
		return errJoined
	}
	s.groups[id] = g
	s.mu.Unlock()
	if err := s.net.Join(id); err != nil {
		s.mu.Lock()
		delete(s.groups, id)
		s.mu.Unlock()
		cancel()
		return fmt.Errorf("history: join: %w", err)
	}
	s.wg.Add(1)
	go s.receive(ctx, id)
	return nil
}

// errJoined reports a group recorded meanwhile by another registration.
var errJoined = errors.New("history: group registered meanwhile")

// receive hands a group's accepted envelopes to the committer.
func (s *Server) receive(ctx context.Context, id [32]byte) {
	defer s.wg.Done()
	for {
		m, err := s.net.Next(ctx, id)
		if err != nil {
			return
		}
		select {
		case s.in <- queued{m: m}:
		case <-ctx.Done():
			return
		}
	}
}

// commit stores accepted envelopes, many per transaction, once each, and
// applies each group's quota.
//
// A batch is bounded in bytes as well as in count (a transaction over
// the store's limit fails whole: large envelopes from one group must not
// take others' with them). Once the server closes, what is queued is
// written before the committer returns.
func (s *Server) commit() {
	defer s.wg.Done()
	budget := max(s.cfg.DB.MaxTxnBytes()/2, 1)
	var carry *queued
	for {
		var batch []queued
		var size int64
		if carry != nil {
			batch, size, carry = append(batch, *carry), batchCost(carry.m), nil
		} else {
			select {
			case q := <-s.in:
				batch, size = append(batch, q), batchCost(q.m)
			case <-s.ctx.Done():
				s.drain()
				return
			}
		}
	more:
		for len(batch) < 512 {
			select {
			case q := <-s.in:
				if c := batchCost(q.m); size+c > budget {
					carry = &q
					break more
				} else {
					batch, size = append(batch, q), size+c
				}
			default:
				break more
			}
		}
		s.storeBatch(batch)
	}
}

// batchCost is about what storing m adds to a transaction: its stored
// value twice (the history and the ID index hold it and its key) and
// Badger's per-entry overhead.
func batchCost(m *groupnet.Message) int64 { return int64(len(m.Raw)) + 256 }

// storeBatch stores a batch and tells each waiting Store how it went.
func (s *Server) storeBatch(batch []queued) {
	msgs := make([]*groupnet.Message, len(batch))
	for i, q := range batch {
		msgs[i] = q.m
	}
	err := s.store(msgs)
	if err != nil {
		// Gossiped envelopes are lost for this relay (members that saw
		// them live still hold them, and their senders hand over what no
		// relay lists); a Store is answered with the error and retried.
		s.log.Error("history: store", "envelopes", len(batch), "err", err)
	}
	for _, q := range batch {
		if q.done != nil {
			q.done <- err
		}
	}
}

// drain writes what is queued when the server closes.
func (s *Server) drain() {
	for {
		var batch []queued
		var size int64
	more:
		for len(batch) < 512 {
			select {
			case q := <-s.in:
				batch, size = append(batch, q), size+batchCost(q.m)
				if size > s.cfg.DB.MaxTxnBytes()/2 {
					break more
				}
			default:
				break more
			}
		}
		if len(batch) == 0 {
			return
		}
		s.storeBatch(batch)
	}
}

// store writes a batch and trims groups over quota.
func (s *Server) store(batch []*groupnet.Message) error {
	// A state entry is kept, in the log and in the history, only if the
	// log held takes it (or holds it): a junk entry fills nothing.
	// One handed over with Store (From empty) is also published, once
	// per entry (when its first envelope is kept): its device may not
	// have reached the topic (a member that joined by a link publishes
	// its join as it joins the topic). Published for every envelope
	// kept or not, a banned account re-wrapping its old leave had the
	// relay broadcast each copy (outside review 17).
	kept := make([]*groupnet.Message, 0, len(batch))
	for _, m := range batch {
		if m.Envelope.Kind == groupmsg.KindState {
			if m.Entry == nil || !s.takeEntry(m.Envelope.Group, m.Entry) {
				continue
			}
		}
		kept = append(kept, m)
	}
	batch = kept
	now := s.cfg.Now().UnixMilli()
	type placed struct {
		group [32]byte
		seq   uint64
		size  int64
	}
	var done []placed
	var publish []*groupnet.Message // stored entries handed over with Store, first envelope of each
	// Sequence numbers are taken under the lock and given back (not
	// reused: a gap in numbering is harmless, since Get names what exists)
	// if the commit fails.
	err := s.cfg.DB.Update(func(tx *storage.Txn) error {
		done, publish = done[:0], publish[:0]
		inBatch := map[string]bool{}
		for _, m := range batch {
			g := m.Envelope.Group
			idKey := append(append([]byte(nil), g[:]...), m.ID...)
			if m.Entry != nil {
				// One envelope per entry, however often its device wraps it
				// again (an outside review filled a channel's quota with
				// one join wrapped many times): keyed by the entry.
				h := m.Entry.Hash()
				idKey = append(append(append([]byte(nil), g[:]...), 'E'), h[:]...)
			}
			if inBatch[string(idKey)] {
				continue
			}
			ok, err := tx.Has(s.ids, idKey)
			if err != nil {
				return err
			}
			if ok {
				continue
			}
			inBatch[string(idKey)] = true
			s.mu.Lock()
			gr := s.groups[g]
			var seq uint64
			if gr != nil {
				seq = gr.next
				gr.next++
			}
			s.mu.Unlock()
			if gr == nil {
				continue // left meanwhile
			}
			k := binary.BigEndian.AppendUint64(append([]byte(nil), g[:]...), seq)
			v := binary.BigEndian.AppendUint64(nil, uint64(now))
			v = append(append(v, m.ID...), m.Raw...)
			if err := tx.SetTTL(s.msgs, k, v, s.cfg.Retention); err != nil {
				return err
			}
			if err := tx.Set(s.seqs, g[:], binary.BigEndian.AppendUint64(nil, seq+1)); err != nil {
				return err
			}
			if err := tx.SetTTL(s.ids, idKey, binary.BigEndian.AppendUint64(nil, seq), s.cfg.Retention); err != nil {
				return err
			}
			done = append(done, placed{g, seq, int64(len(v))})
			if m.Entry != nil && m.From == "" {
				publish = append(publish, m)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, m := range publish {
		if err := s.net.Publish(s.ctx, m.Envelope.Group, m.Raw); err != nil {
			s.log.Debug("history: publish a stored entry", "err", err)
		}
	}
	if len(done) == 0 {
		return nil
	}
	var trim [][32]byte
	s.mu.Lock()
	for _, p := range done {
		if gr := s.groups[p.group]; gr != nil {
			gr.head = max(gr.head, p.seq)
			gr.bytes += p.size
			if gr.next-gr.first > uint64(s.cfg.MaxGroupMessages) || gr.bytes > s.cfg.MaxGroupBytes {
				trim = append(trim, p.group)
			}
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	for _, g := range trim {
		if err := s.trim(g); err != nil {
			s.log.Error("history: trim", "err", err)
		}
	}
	return nil
}

// trim deletes a group's oldest envelopes until it is within its quota.
func (s *Server) trim(id [32]byte) error {
	s.mu.Lock()
	gr := s.groups[id]
	if gr == nil {
		s.mu.Unlock()
		return nil
	}
	first, next, bytes := gr.first, gr.next, gr.bytes
	s.mu.Unlock()
	// In transactions of a bounded number of deletions: a quota lowered
	// by the operator may leave far more to delete than one transaction
	// takes.
	perTxn := max(1, int(s.cfg.DB.MaxTxnBytes()/2/128))
	for {
		var freed int64
		newFirst, over := first, false
		err := s.cfg.DB.Update(func(tx *storage.Txn) error {
			freed, newFirst, over = 0, first, false
			var del [][2][]byte
			err := tx.IterateFrom(s.msgs, id[:], binary.BigEndian.AppendUint64(nil, first), func(k, v []byte) error {
				seq := binary.BigEndian.Uint64(k[32:])
				if next-seq <= uint64(s.cfg.MaxGroupMessages) && bytes-freed <= s.cfg.MaxGroupBytes {
					return storage.ErrStop
				}
				if len(del) >= perTxn {
					over = true
					return storage.ErrStop
				}
				if len(v) >= 40 {
					del = append(del, [2][]byte{append([]byte(nil), k...), append(append([]byte(nil), id[:]...), v[8:40]...)})
				}
				freed += int64(len(v))
				newFirst = seq + 1
				return nil
			})
			if err != nil {
				return err
			}
			for _, d := range del {
				if err := tx.Delete(s.msgs, d[0]); err != nil {
					return err
				}
				if err := tx.Delete(s.ids, d[1]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		s.mu.Lock()
		if gr := s.groups[id]; gr != nil {
			gr.first = max(gr.first, newFirst)
			gr.bytes -= freed
		}
		s.mu.Unlock()
		if !over {
			return nil
		}
		first, bytes = newFirst, bytes-freed
	}
}

// expire drops registrations that were not renewed, hourly.
func (s *Server) expire() {
	defer s.wg.Done()
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		now := s.cfg.Now()
		var gone [][32]byte
		s.mu.Lock()
		for id, g := range s.groups {
			if g.expires.Before(now) {
				gone = append(gone, id)
				g.cancel()
				delete(s.groups, id)
			}
		}
		s.mu.Unlock()
		for _, id := range gone {
			s.net.Leave(id)
			s.regMu.Lock()
			err := s.cfg.DB.Update(func(tx *storage.Txn) error { return tx.Delete(s.reg, id[:]) })
			if err == nil {
				err = s.forget(id)
			}
			s.regMu.Unlock()
			if err != nil {
				s.log.Warn("history: an expired registration not deleted", "err", err)
			}
		}
	}
}

// takeEntry adds a state entry from gossip or a Store to the log held
// of group id (fork rule included) and writes it; it reports whether the
// log holds it (taken now, or before: by a registration that came
// first), which is what lets its envelope into the history.
func (s *Server) takeEntry(id [32]byte, e *groupstate.Entry) bool {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	s.mu.Lock()
	g := s.groups[id]
	if g == nil {
		s.mu.Unlock()
		return false
	}
	n0 := g.log.Head().Seq + 1
	if have := g.log.Entries(e.Seq); len(have) > 0 && have[0].Hash() == e.Hash() {
		s.mu.Unlock()
		return true
	}
	if e.Time > s.cfg.Now().UnixMilli()+groupstate.MaxSkew {
		s.mu.Unlock()
		return false // as registrations leave it out (see verifyRegister)
	}
	if _, err := g.log.Add(e); err != nil {
		s.mu.Unlock()
		s.log.Debug("history: a state entry from gossip not taken", "seq", e.Seq, "err", err)
		return false
	}
	g.prune()
	s.mu.Unlock()
	if err := s.persist(id, g, e.Seq, n0); err != nil {
		s.log.Warn("history: a state entry not written", "err", err)
	}
	return true
}

// maxBuilding is how many new groups a relay builds from several pages
// at once: each is held in memory (up to MaxRegisterPages pages) until
// its last page decides whether it is kept.
const maxBuilding = 4

// members is the server as groupnet.Members (and groupnet.Changes).
type members Server

// MayChange checks a state-log entry in gossip or a Store against the
// log the relay holds (groupnet.EntryMaySpread).
func (m *members) MayChange(id [32]byte, e *groupstate.Entry) error {
	s := (*Server)(m)
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[id]
	if g == nil {
		return groupnet.ErrNotAllowed
	}
	// In the log, recent, and by a member — or its author's own leave,
	// after which the author is never a member: one the relay took from
	// a registration or a Store, and publishes. (A leave refused here
	// never reached the members who lacked it when its author's node
	// left again after a fork had dropped its first leave.)
	if n := g.log.Head().Seq + 1; e.Seq+groupstate.ForkWindow >= n && (g.log.State().Role(e.Author()) != groupstate.RoleNone || e.Change.Kind == groupstate.KindLeave) {
		if have := g.log.Entries(e.Seq); len(have) > 0 && have[0].Hash() == e.Hash() {
			return nil
		}
	}
	return groupnet.EntryMaySpread(g.log.State(), e)
}

func (m *members) MayPublish(id [32]byte, device identity.DeviceID, kind groupmsg.Kind) (identity.AccountID, error) {
	s := (*Server)(m)
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[id]
	if g == nil {
		return identity.AccountID{}, groupnet.ErrUnknownDevice
	}
	acct, ok := g.devices[device]
	if !ok {
		return identity.AccountID{}, groupnet.ErrUnknownDevice
	}
	allowed := false
	switch kind {
	case groupmsg.KindSenderKey, groupmsg.KindEpoch:
		allowed = g.log.State().MayPost(acct)
	case groupmsg.KindGrants:
		allowed = g.log.State().Role(acct) >= groupstate.RoleAdmin
	case groupmsg.KindState:
		st := g.log.State()
		allowed = st.Role(acct) != groupstate.RoleNone && (!st.Channel() || st.Role(acct) >= groupstate.RoleAdmin)
	}
	if !allowed {
		return acct, groupnet.ErrNotAllowed
	}
	return acct, nil
}

// handle serves one request.
func (s *Server) handle(str network.Stream, log *slog.Logger) {
	defer str.Close()
	t, body, err := readFrame(str, typeRegister, typeQuery, typeGet, typeHeads, typeGetLog, typeStore, typeName, typeLookup)
	if err != nil {
		log.Debug("history: bad request", "err", err)
		s.answerStatus(str, CodeMalformed, err.Error())
		return
	}
	p := str.Conn().RemotePeer()
	if !s.requests.Allow(p, s.cfg.Now()) {
		s.answerStatus(str, CodeRateLimited, "too many requests")
		return
	}
	switch t {
	case typeRegister:
		m, err := decodeRegister(body)
		if err != nil {
			s.answerStatus(str, CodeMalformed, err.Error())
			return
		}
		code, text := s.register(m, func() (*registerMsg, error) {
			_, body, err := readFrame(str, typeRegister)
			if err != nil {
				return nil, err
			}
			return decodeRegister(body)
		})
		s.answerStatus(str, code, text)
	case typeQuery:
		m, err := decodeQuery(body)
		if err != nil {
			s.answerStatus(str, CodeMalformed, err.Error())
			return
		}
		s.answerPage(str, m.Group, func(tx *storage.Txn, pg *Page) error { return s.query(tx, m, pg) })
	case typeGet:
		m, err := decodeGet(body)
		if err != nil {
			s.answerStatus(str, CodeMalformed, err.Error())
			return
		}
		s.answerPage(str, m.Group, func(tx *storage.Txn, pg *Page) error { return s.get(tx, m, pg) })
	case typeHeads:
		m, err := decodeHeads(body)
		if err != nil {
			s.answerStatus(str, CodeMalformed, err.Error())
			return
		}
		s.heads(str, m)
	case typeName, typeLookup:
		m, err := decodeName(body)
		if err != nil {
			s.answerStatus(str, CodeMalformed, err.Error())
			return
		}
		if t == typeLookup {
			s.lookupName(str, m.Name)
			return
		}
		code, text := s.publishName(m)
		s.answerStatus(str, code, text)
	case typeStore:
		m, err := decodeStore(body)
		if err != nil {
			s.answerStatus(str, CodeMalformed, err.Error())
			return
		}
		code, text := s.storeOne(m)
		s.answerStatus(str, code, text)
	case typeGetLog:
		m, err := decodeQuery(body) // a group and the cursors
		if err != nil {
			s.answerStatus(str, CodeMalformed, err.Error())
			return
		}
		s.mu.Lock()
		var pg *registerMsg
		g := s.groups[m.Group]
		if g != nil {
			pg, err = g.logPage(m.Group, m.After, m.ListsAt, s.pageBudget)
		}
		s.mu.Unlock()
		switch {
		case g == nil:
			s.answerStatus(str, CodeUnknown, "no history of this group here")
		case err != nil:
			s.answerStatus(str, CodeUnavailable, err.Error())
		default:
			_, _ = str.Write(frame(typeLog, pg.appendBody(nil)))
		}
	}
}

// publishName binds a public name to a registered group: signed by a
// device of one of its admins, with a link whose invite key the group's
// log lists. First come, first served; the group that holds a name
// renews or changes its link.
func (s *Server) publishName(m *nameMsg) (Code, string) {
	now := s.cfg.Now()
	pub, ok := linkKey(m.Link, m.Group)
	if !ok {
		return CodeInvalid, "the link is not an invite link of this group"
	}
	s.mu.Lock()
	g := s.groups[m.Group]
	var acct identity.AccountID
	known, invited := false, false
	var st *groupstate.State
	if g != nil {
		acct, known = g.devices[identity.DeviceID(m.Device)]
		st = g.log.State()
		_, invited = st.Invites[pub]
	}
	s.mu.Unlock()
	switch {
	case g == nil:
		return CodeUnknown, "the relay keeps no history of this group: register it first"
	case !known || st.Role(acct) < groupstate.RoleAdmin:
		return CodeInvalid, "signed by a device that is not an admin's"
	case time.UnixMilli(m.Time).Before(now.Add(-10*time.Minute)) || time.UnixMilli(m.Time).After(now.Add(10*time.Minute)):
		return CodeInvalid, "signed at a time more than 10 minutes from now"
	case !identity.Verify(identity.DeviceID(m.Device).PublicKey(), NameLabel, nameSigned(string(s.cfg.Host.ID()), m), m.Sig):
		return CodeInvalid, "bad signature"
	case !invited:
		return CodeInvalid, "the group's log has no such invite (or it was revoked)"
	}
	// Kept signed: a client checks the admin's signature itself (a relay
	// is not trusted to say which group a name is).
	rec := m.appendBody(nil)
	taken := false
	err := s.cfg.DB.Update(func(tx *storage.Txn) error {
		taken = false
		old, err := tx.Get(s.names, []byte(m.Name))
		if err == nil && len(old) > 8 {
			if prev, err := decodeName(old[8:]); err == nil && prev.Group != m.Group && time.UnixMilli(int64(binary.BigEndian.Uint64(old))).After(now) {
				taken = true
				return nil
			}
		} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		// One name per group: a new one replaces the old.
		if prev, err := tx.Get(s.gnames, m.Group[:]); err == nil && string(prev) != m.Name {
			if err := tx.Delete(s.names, prev); err != nil {
				return err
			}
		} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		if err := tx.SetTTL(s.gnames, m.Group[:], []byte(m.Name), s.cfg.RegistrationTTL); err != nil {
			return err
		}
		v := binary.BigEndian.AppendUint64(nil, uint64(now.Add(s.cfg.RegistrationTTL).UnixMilli()))
		return tx.SetTTL(s.names, []byte(m.Name), append(v, rec...), s.cfg.RegistrationTTL)
	})
	switch {
	case err != nil:
		return CodeUnavailable, err.Error()
	case taken:
		return CodeFull, "the name is taken"
	}
	return CodeOK, ""
}

// lookupName answers a public name's record.
func (s *Server) lookupName(str network.Stream, name string) {
	var rec []byte
	err := s.cfg.DB.View(func(tx *storage.Txn) error {
		v, err := tx.Get(s.names, []byte(name))
		if err == nil && len(v) > 8 && time.UnixMilli(int64(binary.BigEndian.Uint64(v))).After(s.cfg.Now()) {
			rec = append([]byte(nil), v[8:]...)
		}
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		return err
	})
	if err == nil && rec != nil {
		// A name lives only while its group is kept here and its link's
		// invite is still in the log.
		live := false
		if m, derr := decodeName(rec); derr == nil {
			if pub, ok := linkKey(m.Link, m.Group); ok {
				s.mu.Lock()
				if g := s.groups[m.Group]; g != nil {
					_, live = g.log.State().Invites[pub]
				}
				s.mu.Unlock()
			}
		}
		if !live {
			rec = nil
		}
	}
	switch {
	case err != nil:
		s.answerStatus(str, CodeUnavailable, err.Error())
	case rec == nil:
		s.answerStatus(str, CodeUnknown, "no such public name here")
	default:
		_, _ = str.Write(frame(typeNameRec, rec))
	}
}

// linkKey returns the invite public key of a link to group
// (peergram://join/<group hex>/<seed base64url>[?…]).
func linkKey(link string, group [32]byte) ([32]byte, bool) {
	var pub [32]byte
	rest, ok := strings.CutPrefix(link, "peergram://join/")
	if !ok {
		return pub, false
	}
	rest, _, _ = strings.Cut(rest, "?")
	gid, seed, ok := strings.Cut(rest, "/")
	if !ok || gid != hex.EncodeToString(group[:]) {
		return pub, false
	}
	sd, err := base64.RawURLEncoding.DecodeString(seed)
	if err != nil || len(sd) != ed25519.SeedSize {
		return pub, false
	}
	copy(pub[:], ed25519.NewKeyFromSeed(sd).Public().(ed25519.PublicKey))
	return pub, true
}

// storeOne takes a member's envelope handed over directly: the checks of
// the gossip validators but the time window (the member was offline when
// it posted), then the committer, which keeps it once.
func (s *Server) storeOne(m *storeMsg) (Code, string) {
	env, err := groupmsg.Open(m.Group, m.Envelope)
	if err != nil {
		return CodeInvalid, err.Error()
	}
	now := s.cfg.Now()
	switch {
	case time.UnixMilli(m.Time).Before(now.Add(-10*time.Minute)) || time.UnixMilli(m.Time).After(now.Add(10*time.Minute)):
		return CodeInvalid, "signed at a time more than 10 minutes from now"
	case !identity.Verify(env.Device.PublicKey(), StoreLabel, storeSigned(string(s.cfg.Host.ID()), groupmsg.ID(m.Envelope), m.Time), m.Sig):
		return CodeInvalid, "not signed by the envelope's device"
	case time.UnixMilli(env.Time).After(now.Add(time.Minute)) || time.UnixMilli(env.Time).Before(now.Add(-s.cfg.Retention)):
		return CodeInvalid, "an envelope from the future or older than the relay keeps"
	case !s.storeRate.Allow(env.Device, now):
		return CodeRateLimited, "too many envelopes handed over by this device"
	}
	var acct identity.AccountID
	var entry *groupstate.Entry
	if env.Kind == groupmsg.KindState {
		entry, acct, err = groupnet.CheckEntry((*members)(s), m.Group, env)
	} else {
		acct, err = (*members)(s).MayPublish(m.Group, env.Device, env.Kind)
	}
	switch {
	case errors.Is(err, groupnet.ErrUnknownDevice):
		return CodeUnknown, "not a device of a member of a group kept here"
	case err != nil:
		return CodeInvalid, err.Error()
	}
	// Answered once written: the member deletes its own copy on OK.
	done := make(chan error, 1)
	select {
	case s.in <- queued{m: &groupnet.Message{Envelope: env, Account: acct, ID: groupmsg.ID(m.Envelope), Raw: bytes.Clone(m.Envelope), Entry: entry}, done: done}:
	case <-s.ctx.Done():
		return CodeUnavailable, "closing"
	}
	select {
	case err := <-done:
		if err != nil {
			return CodeUnavailable, "not stored: " + err.Error()
		}
		return CodeOK, ""
	case <-s.ctx.Done():
		return CodeUnavailable, "closing"
	}
}

func (s *Server) answerStatus(str network.Stream, c Code, text string) {
	_, _ = str.Write(frame(typeStatus, (&statusMsg{Code: c, Text: text}).appendBody(nil)))
}

// register verifies a registration, page by page (next reads the page
// after m, if m says one follows), and merges it into what the relay
// holds: a new group's topic is joined; a known group's log takes the
// new entries by groupstate's fork rule (an entry that loses a fork is
// ignored, so a removed member cannot roll the relay back to a branch
// where it is still in), and its lists the newer members' lists.
//
// Entries and lists verify by themselves, so what a known group's pages
// add is kept as they come, whether or not the signature passes; the
// last page's signature, by a device of a member of the group as it then
// stands, decides whether the registration is renewed, and whether a new
// group is kept at all: until then a new group's pages are held by this
// request only.
func (s *Server) register(m *registerMsg, next func() (*registerMsg, error)) (Code, string) {
	now := s.cfg.Now()
	var fresh *group // a group this relay does not hold, built from the pages so far
	for pages := 1; ; pages++ {
		var code Code
		var text string
		fresh, code, text = s.registerPage(m, fresh, now)
		if code != CodeOK {
			return code, text
		}
		if !m.More {
			break
		}
		if fresh != nil && pages == 1 {
			select {
			case s.building <- struct{}{}:
				defer func() { <-s.building }()
			default:
				return CodeRateLimited, "the relay builds as many new groups from pages as it takes at once"
			}
		}
		if pages >= MaxRegisterPages {
			return CodeInvalid, fmt.Sprintf("a registration of over %d pages", MaxRegisterPages)
		}
		group, from := m.Group, m.From+uint64(len(m.Entries))
		var err error
		if m, err = next(); err != nil {
			return CodeMalformed, err.Error()
		}
		if m.Group != group || m.From != from {
			return CodeMalformed, fmt.Sprintf("a page that does not follow the last (entry %d, want %d)", m.From, from)
		}
	}
	if fresh != nil {
		return s.keepNew(m, fresh, now)
	}
	s.regMu.Lock()
	defer s.regMu.Unlock()
	s.mu.Lock()
	g := s.groups[m.Group]
	var signErr error
	if g == nil {
		signErr = errors.New("the group's registration ended meanwhile")
	} else if _, signErr = g.signer(m, s.cfg.Host.ID(), now); signErr == nil {
		g.expires = now.Add(s.cfg.RegistrationTTL)
	}
	s.mu.Unlock()
	if signErr != nil {
		return CodeInvalid, "registration: " + signErr.Error()
	}
	n := g.log.Head().Seq + 1 // (whatever changes the log holds regMu, as this does)
	if err := s.persist(m.Group, g, n, n); err != nil {
		return CodeUnavailable, err.Error()
	}
	s.renewName(m.Group, now)
	return CodeOK, ""
}

// registerPage takes one page: into fresh, the group this request is
// building, if any; else into the group the relay holds (written at
// once); else, for a page from the group's creation, it starts fresh.
func (s *Server) registerPage(m *registerMsg, fresh *group, now time.Time) (*group, Code, string) {
	if fresh == nil {
		s.mu.Lock()
		held := s.groups[m.Group]
		s.mu.Unlock()
		switch {
		case held != nil:
			code, text := s.merge(m, held, now)
			return nil, code, text
		case m.From > 0:
			return nil, CodeUnknown, "no history of this group here: register its log from its creation"
		}
		g, err := verifyRegister(m, now)
		if err != nil {
			return nil, CodeInvalid, err.Error()
		}
		return g, CodeOK, ""
	}
	entries, code, text := pageEntries(m, fresh.log.Head().Seq+1, now)
	if code != CodeOK {
		return nil, code, text
	}
	for _, e := range entries {
		if _, err := fresh.log.Add(e); err != nil && !errors.Is(err, groupstate.ErrLostFork) {
			return nil, CodeInvalid, fmt.Sprintf("entry %d: %v", e.Seq, err)
		}
	}
	if err := fresh.takeLists(m.Lists); err != nil {
		return nil, CodeInvalid, err.Error()
	}
	return fresh, CodeOK, ""
}

// pageEntries parses a page's entries, which must start at m.From, no
// further than n (the length of the log they continue); those dated
// more than groupstate.MaxSkew ahead, and what follows, are left out.
func pageEntries(m *registerMsg, n uint64, now time.Time) ([]*groupstate.Entry, Code, string) {
	if m.From > n {
		return nil, CodeInvalid, fmt.Sprintf("the page starts at entry %d; the log held here has %d", m.From, n)
	}
	ahead := now.UnixMilli() + groupstate.MaxSkew
	entries := make([]*groupstate.Entry, 0, len(m.Entries))
	for i, raw := range m.Entries {
		e, err := groupstate.Parse(raw)
		if err != nil {
			return nil, CodeInvalid, fmt.Sprintf("entry %d: %v", i, err)
		}
		if e.Seq != m.From+uint64(i) {
			return nil, CodeInvalid, fmt.Sprintf("entry %d of the page has sequence number %d", i, e.Seq)
		}
		if e.Time > ahead {
			break
		}
		entries = append(entries, e)
	}
	return entries, CodeOK, ""
}

// keepNew keeps a group the relay did not hold, built from a
// registration's pages, if the last page's signer is a member's device:
// it is written and its topic joined (or, registered meanwhile by
// another request, merged into that one).
func (s *Server) keepNew(m *registerMsg, g *group, now time.Time) (Code, string) {
	acct, err := g.signer(m, s.cfg.Host.ID(), now)
	if err != nil {
		return CodeInvalid, "registration: " + err.Error()
	}
	s.regMu.Lock()
	defer s.regMu.Unlock()
	s.mu.Lock()
	held := s.groups[m.Group]
	n := len(s.groups)
	s.mu.Unlock()
	if held != nil {
		all := &registerMsg{Group: m.Group, Lists: nil, Time: m.Time, Device: m.Device, Sig: m.Sig}
		for _, h := range g.lists {
			all.Lists = append(all.Lists, h.raw)
		}
		return s.mergeLocked(all, held, g.log.Entries(0), now, true)
	}
	if n >= s.cfg.MaxGroups {
		return CodeFull, "the relay keeps no more groups"
	}
	if !s.newGroup.Allow(acct, now) {
		return CodeFull, "too many new groups from this account today"
	}
	g.expires = now.Add(s.cfg.RegistrationTTL)
	if err := s.resume(m.Group, g); err != nil {
		return CodeUnavailable, err.Error()
	}
	if err := s.persist(m.Group, g, 0, 0); err != nil {
		return CodeUnavailable, err.Error()
	}
	if err := s.join(m.Group, g); err != nil {
		if !errors.Is(err, errJoined) { // (under regMu no other request joins it; were it so, what it wrote is its own)
			_ = s.forget(m.Group)
			_ = s.cfg.DB.Update(func(tx *storage.Txn) error { return tx.Delete(s.reg, m.Group[:]) })
		}
		return CodeUnavailable, err.Error()
	}
	return CodeOK, ""
}

// merge takes a page of a group the relay holds: its entries by the fork
// rule, then its lists, and writes what changed.
func (s *Server) merge(m *registerMsg, g *group, now time.Time) (Code, string) {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	s.mu.Lock()
	n := g.log.Head().Seq + 1
	s.mu.Unlock()
	var entries []*groupstate.Entry
	if m.From == 0 {
		// From the creation: verified whole first, as a new group's
		// (its lists once, below).
		l, err := verifyRegister(&registerMsg{Group: m.Group, Entries: m.Entries}, now)
		if err != nil {
			return CodeInvalid, err.Error()
		}
		entries = l.log.Entries(0)
	} else {
		var code Code
		var text string
		if entries, code, text = pageEntries(m, n, now); code != CodeOK {
			return code, text
		}
	}
	return s.mergeLocked(m, g, entries, now, false)
}

// mergeLocked adds entries and m's lists to g and writes what changed;
// renew: and renews the registration if m's signer is a member's device.
// The caller holds regMu.
func (s *Server) mergeLocked(m *registerMsg, g *group, entries []*groupstate.Entry, now time.Time, renew bool) (Code, string) {
	s.mu.Lock()
	n0 := g.log.Head().Seq + 1
	start := n0 - min(n0, groupstate.ForkWindow+1)
	before := g.log.Entries(start)
	// As one branch: a fork is resolved against the registration's
	// whole branch, not entry by entry (entry by entry, a relay that
	// took a losing entry first could not take the winning branch).
	if _, err := g.log.AddBranch(entries); err != nil && !errors.Is(err, groupstate.ErrLostFork) {
		s.log.Debug("history: registered entries not taken", "err", err)
	}
	after := g.log.Entries(start)
	from := start
	for from-start < uint64(min(len(before), len(after))) && before[from-start].Hash() == after[from-start].Hash() {
		from++
	}
	listErr := g.takeLists(m.Lists)
	g.prune()
	var signErr error
	if renew {
		if _, signErr = g.signer(m, s.cfg.Host.ID(), now); signErr == nil {
			g.expires = now.Add(s.cfg.RegistrationTTL)
		}
	}
	s.mu.Unlock()
	if err := s.persist(m.Group, g, from, n0); err != nil {
		return CodeUnavailable, err.Error()
	}
	switch {
	case listErr != nil:
		return CodeInvalid, listErr.Error()
	case signErr != nil:
		return CodeInvalid, "registration: " + signErr.Error()
	}
	if renew {
		s.renewName(m.Group, now)
	}
	return CodeOK, ""
}

// renewName extends the public name group id holds by as long as the
// registration that renewed the group: the group holding a name renews
// it, whichever member's node registers it. A name whose link is no
// longer one of the group's invites (revoked), or whose signer is no
// longer an admin, is not renewed and lapses with its term; one that
// lapsed already (another group may hold it now) is not revived.
func (s *Server) renewName(id [32]byte, now time.Time) {
	var name, old []byte
	if err := s.cfg.DB.View(func(tx *storage.Txn) error {
		var err error
		if name, err = tx.Get(s.gnames, id[:]); err != nil {
			return err
		}
		old, err = tx.Get(s.names, name)
		return err
	}); err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			s.log.Warn("history: renewing a public name", "err", err)
		}
		return
	}
	if len(old) <= 8 || !time.UnixMilli(int64(binary.BigEndian.Uint64(old))).After(now) {
		return // lapsed (its term ends before the store drops it): not revived
	}
	prev, err := decodeName(old[8:])
	if err != nil || prev.Group != id {
		return
	}
	pub, ok := linkKey(prev.Link, id)
	s.mu.Lock()
	g := s.groups[id]
	valid := false
	if g != nil && ok {
		st := g.log.State()
		acct, known := g.devices[identity.DeviceID(prev.Device)]
		_, invited := st.Invites[pub]
		valid = known && invited && st.Role(acct) >= groupstate.RoleAdmin
	}
	s.mu.Unlock()
	if !valid {
		return
	}
	err = s.cfg.DB.Update(func(tx *storage.Txn) error {
		cur, err := tx.Get(s.names, name)
		if err != nil || !bytes.Equal(cur, old) {
			return err // changed meanwhile (a new publish): that one stands
		}
		if err := tx.SetTTL(s.gnames, id[:], name, s.cfg.RegistrationTTL); err != nil {
			return err
		}
		v := binary.BigEndian.AppendUint64(nil, uint64(now.Add(s.cfg.RegistrationTTL).UnixMilli()))
		return tx.SetTTL(s.names, name, append(v, old[8:]...), s.cfg.RegistrationTTL)
	})
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.log.Warn("history: renewing a public name", "err", err)
	}
}

// answerPage fills a Page in one snapshot and sends it.
func (s *Server) answerPage(str network.Stream, id [32]byte, fill func(*storage.Txn, *Page) error) {
	s.mu.Lock()
	g := s.groups[id]
	var first, head uint64
	if g != nil {
		first, head = g.first, g.head
	}
	s.mu.Unlock()
	if g == nil {
		s.answerStatus(str, CodeUnknown, "no history of this group here")
		return
	}
	pg := &Page{First: first, Head: head}
	if err := s.cfg.DB.View(func(tx *storage.Txn) error { return fill(tx, pg) }); err != nil {
		s.answerStatus(str, CodeUnavailable, err.Error())
		return
	}
	_, _ = str.Write(frame(typePage, pg.appendBody(nil)))
}

func decodeStored(k, v []byte, withEnvelope bool) (Item, bool) {
	if len(k) != 40 || len(v) < 40 {
		return Item{}, false
	}
	it := Item{Seq: binary.BigEndian.Uint64(k[32:]), Stored: int64(binary.BigEndian.Uint64(v))}
	copy(it.ID[:], v[8:40])
	if withEnvelope {
		it.Envelope = append([]byte{}, v[40:]...)
	}
	return it, true
}

func (s *Server) query(tx *storage.Txn, m *queryMsg, pg *Page) error {
	limit := int(m.Limit)
	if limit == 0 || limit > MaxPageItems {
		limit = MaxPageItems
	}
	if m.After == math.MaxUint64 {
		return nil // nothing comes after the last number (After+1 would wrap to the first)
	}
	size := 0
	oldest := s.oldest()
	return tx.IterateFrom(s.msgs, m.Group[:], binary.BigEndian.AppendUint64(nil, m.After+1), func(k, v []byte) error {
		if len(pg.Items) >= limit || (!m.IDsOnly && size+len(v) > pageBudget && len(pg.Items) > 0) {
			pg.More = true
			return storage.ErrStop
		}
		it, ok := decodeStored(k, v, !m.IDsOnly)
		if !ok || it.Stored < oldest {
			return nil
		}
		size += len(v)
		pg.Items = append(pg.Items, it)
		return nil
	})
}

func (s *Server) get(tx *storage.Txn, m *getMsg, pg *Page) error {
	size := 0
	oldest := s.oldest()
	for _, seq := range m.Seqs {
		k := binary.BigEndian.AppendUint64(append([]byte(nil), m.Group[:]...), seq)
		v, err := tx.Get(s.msgs, k)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if size+len(v) > pageBudget && len(pg.Items) > 0 {
			pg.More = true
			break
		}
		it, ok := decodeStored(k, v, true)
		if !ok || it.Stored < oldest {
			continue
		}
		size += len(v)
		pg.Items = append(pg.Items, it)
	}
	return nil
}

// oldest is the first storage time (Unix ms) served: an envelope stored
// before the retention the operator set now is not served, though it was
// written with a longer one.
func (s *Server) oldest() int64 {
	return s.cfg.Now().Add(-s.cfg.Retention).UnixMilli()
}

// heads answers with the heads that passed the client's cursors, waiting
// for one up to the asked wait.
func (s *Server) heads(str network.Stream, m *headsMsg) {
	wait := min(time.Duration(m.WaitMS)*time.Millisecond, s.cfg.MaxWait)
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ch := s.changed
		var moved []Head
		var all []Head
		var unknown []Head // in every answer: the client registers them again
		for _, h := range m.Heads {
			g := s.groups[h.Group]
			if g == nil {
				unknown = append(unknown, Head{Group: h.Group, Unknown: true, Store: s.storeID})
				continue
			}
			cur := Head{Group: h.Group, Seq: g.head, Store: s.storeID}
			all = append(all, cur)
			if cur.Seq > h.Seq {
				moved = append(moved, cur)
			}
		}
		s.mu.Unlock()
		if len(moved) > 0 || wait == 0 {
			if len(moved) == 0 {
				moved = all
			}
			_, _ = str.Write(frame(typeHeads, (&headsMsg{Heads: append(moved, unknown...)}).appendBody(nil)))
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			_, _ = str.Write(frame(typeHeads, (&headsMsg{Heads: append(all, unknown...)}).appendBody(nil)))
			return
		case <-s.ctx.Done():
			return
		}
	}
}

// ErrNotMember is a device that is not a member's, as the relay's copy of
// the group's log and device lists says.
var ErrNotMember = errors.New("history: not a member of the group")

// Member returns the account of device if that account is a member of
// group now, as far as this relay knows: the group is registered here,
// the device is on its account's newest list the relay holds, and the
// merged log gives the account a role. The SFU asks it before letting a
// device into a group call and again while the call runs.
func (s *Server) Member(group [32]byte, device identity.DeviceID) (identity.AccountID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[group]
	if g == nil {
		return identity.AccountID{}, fmt.Errorf("%w: the group is not registered on this relay", ErrNotMember)
	}
	acct, ok := g.devices[device]
	if !ok || g.log.State().Role(acct) == groupstate.RoleNone {
		return identity.AccountID{}, ErrNotMember
	}
	return acct, nil
}

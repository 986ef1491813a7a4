package relay

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/peergram/peergram/relay/directory"
	"github.com/peergram/peergram/relay/mailbox"
)

// DefaultListen are the listen multiaddrs used when Config.Listen is
// empty: TCP and QUIC on the IANA-unassigned port libp2p (and IPFS) use by
// convention, on every IPv4 interface.
var DefaultListen = []string{
	"/ip4/0.0.0.0/tcp/4001",
	"/ip4/0.0.0.0/udp/4001/quic-v1",
}

// DefaultGCInterval is how often the store's value log is garbage
// collected when Config.GCInterval is zero.
const DefaultGCInterval = 10 * time.Minute

// Config configures a Relay. The zero value with Home set is a usable
// relay with operator defaults.
type Config struct {
	// Home is the relay's directory, prepared by Init: identity key, store,
	// addrs file. Required.
	Home string

	// Listen are the libp2p multiaddrs to listen on (TCP and QUIC v1);
	// defaults to DefaultListen. Port 0 picks a free port. Run fails if any
	// of them cannot be listened on.
	Listen []string

	// MetricsAddr is the host:port of the HTTP server for Prometheus
	// /metrics and /healthz; "" (the default) runs no server. The host must
	// be a loopback address (127.0.0.1, [::1], localhost) unless
	// MetricsPublic is set: metrics tell peer counts and traffic patterns an
	// operator may not want to publish.
	MetricsAddr string

	// MetricsPublic allows a MetricsAddr on any interface (":9090",
	// "0.0.0.0:9090", a public address). Default false.
	MetricsPublic bool

	// Logger receives the relay's logs and those of its services; nil
	// discards them.
	Logger *slog.Logger

	// MaxEnvelopeSize is the largest mailbox envelope accepted, in bytes;
	// 0 means mailbox.DefaultMaxEnvelopeSize. Passed to mailbox.Config.
	MaxEnvelopeSize int

	// MaxMailboxEnvelopes is the most envelopes one mailbox holds; 0 means
	// mailbox.DefaultMaxMailboxEnvelopes. Passed to mailbox.Config.
	MaxMailboxEnvelopes int

	// MaxMailboxBytes is the most envelope bytes one mailbox holds; 0 means
	// mailbox.DefaultMaxMailboxBytes. Passed to mailbox.Config.
	MaxMailboxBytes int64

	// TTL is how long an unacknowledged envelope is kept; 0 means
	// mailbox.DefaultTTL (30 days). Passed to mailbox.Config.
	TTL time.Duration

	// DirectoryExpiry is how long the directory keeps an account, or a
	// listed device's bundle and record, that nobody publishes again; 0
	// means directory.DefaultExpiry (30 days). Passed to directory.Config.
	DirectoryExpiry time.Duration

	// DirectoryAccountQuota is the most bytes one account may store in the
	// directory; 0 means directory.DefaultAccountQuota (1 MiB). Passed to
	// directory.Config, which checks it.
	DirectoryAccountQuota int64
	// HistoryRetention is how long the relay keeps groups' envelopes for
	// members who were offline; 0 means 30 days. HistoryGroupMessages
	// and HistoryGroupBytes are one group's quota (0: 100,000 envelopes,
	// 256 MiB; over it the oldest go); HistoryMaxGroups bounds the groups
	// kept (0: 10,000). Passed to history.Config.
	HistoryRetention     time.Duration
	HistoryGroupMessages int
	HistoryGroupBytes    int64
	HistoryMaxGroups     int
	// BlobRetention is how long the blob store keeps a file chunk after
	// its last upload (0: 30 days); BlobAccountQuota bounds one account's
	// uploads (0: 4 GiB), BlobCapacity the store (0: 64 GiB). Passed to
	// blobs.Config.
	BlobRetention    time.Duration
	BlobAccountQuota int64
	BlobCapacity     int64
	// TURNListen is the UDP host:port of the relay's STUN/TURN server for
	// calls ("" = off); TURNPublicIP the address clients reach it at
	// (default TURNListen's host); TURNCredentialTTL how long the
	// credentials it issues are good for (0: 10 minutes). Passed to
	// turnserver.Config.
	TURNListen        string
	TURNPublicIP      string
	TURNCredentialTTL time.Duration
	// The SFU for group calls: on unless SFUDisabled. SFUPublicIP is
	// the address it announces in its ICE candidates (a relay behind a
	// 1:1 NAT); SFUPorts a UDP port range "MIN-MAX" for its media;
	// SFULoopback keeps its ICE on loopback (tests on one machine).
	SFUDisabled bool
	SFUPublicIP string
	SFUPorts    string
	SFULoopback bool

	// UnknownTTL is how long an envelope is kept in a mailbox whose owner
	// never subscribed to this relay; 0 means mailbox.DefaultUnknownTTL (7
	// days). Passed to mailbox.Config.
	UnknownTTL time.Duration

	// MaxStoreBytes caps the envelope bytes of all mailboxes together; 0
	// means mailbox.DefaultMaxStoreBytes (4 GiB). Passed to mailbox.Config.
	MaxStoreBytes int64

	// StrangerPercent is the share of each mailbox's quota open to
	// deposits without a delivery token, in percent; 0 means
	// mailbox.DefaultStrangerPercent (10). Passed to mailbox.Config.
	StrangerPercent int

	// DepositBudgets and StrangerBudgets are the mailbox depositor rate
	// limits; zero fields mean mailbox.DefaultDepositBudgets and
	// mailbox.DefaultStrangerBudgets. Passed to mailbox.Config.
	DepositBudgets, StrangerBudgets mailbox.Budgets

	// Resources are the circuit relay v2 limits; the zero value means
	// OperatorResources(). The resource manager's limits are derived from
	// them (see operatorLimits).
	Resources relayv2.Resources

	// Limits are the resource-manager limits of the mailbox and directory
	// protocols, per peer and in total; the zero value means
	// OperatorLimits() (every field documented there). A Limits given must
	// have every field positive.
	Limits Limits

	// GCInterval is how often the store's value log is garbage collected;
	// 0 means DefaultGCInterval (10 minutes).
	GCInterval time.Duration
}

// validated is a Config with defaults applied and its strings parsed.
type validated struct {
	Config
	listen []ma.Multiaddr
}

func (c Config) validate() (validated, error) {
	v := validated{Config: c}
	if c.Home == "" {
		return v, fmt.Errorf("%w: Home is required", ErrInvalidConfig)
	}
	if c.MaxEnvelopeSize < 0 || c.MaxMailboxEnvelopes < 0 || c.MaxMailboxBytes < 0 || c.TTL < 0 || c.GCInterval < 0 ||
		c.DirectoryExpiry < 0 || c.DirectoryAccountQuota < 0 ||
		c.HistoryRetention < 0 || c.HistoryGroupMessages < 0 || c.HistoryGroupBytes < 0 || c.HistoryMaxGroups < 0 ||
		c.BlobRetention < 0 || c.BlobAccountQuota < 0 || c.BlobCapacity < 0 ||
		c.UnknownTTL < 0 || c.MaxStoreBytes < 0 || c.StrangerPercent < 0 || c.StrangerPercent > 100 {
		return v, fmt.Errorf("%w: negative limit", ErrInvalidConfig)
	}
	if c.DirectoryAccountQuota > 0 && c.DirectoryAccountQuota < directory.MinAccountQuota {
		return v, fmt.Errorf("%w: DirectoryAccountQuota %d below %d bytes (the largest list with its bundles and records)",
			ErrInvalidConfig, c.DirectoryAccountQuota, directory.MinAccountQuota)
	}
	if v.Logger == nil {
		v.Logger = slog.New(slog.DiscardHandler)
	}
	if v.GCInterval == 0 {
		v.GCInterval = DefaultGCInterval
	}
	if v.Resources == (relayv2.Resources{}) {
		v.Resources = OperatorResources()
	}
	if err := checkResources(v.Resources); err != nil {
		return v, err
	}
	if v.Limits == (Limits{}) {
		v.Limits = OperatorLimits()
	}
	if err := checkLimits(v.Limits); err != nil {
		return v, err
	}
	listen := c.Listen
	if len(listen) == 0 {
		listen = DefaultListen
	}
	v.Listen = listen
	seen := make(map[string]bool, len(listen))
	for _, s := range listen {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return v, fmt.Errorf("%w: listen address %q: %v", ErrInvalidConfig, s, err)
		}
		if seen[a.String()] {
			return v, fmt.Errorf("%w: listen address %q given twice", ErrInvalidConfig, s)
		}
		seen[a.String()] = true
		v.listen = append(v.listen, a)
	}
	if c.MetricsAddr != "" {
		if err := checkMetricsAddr(c.MetricsAddr, c.MetricsPublic); err != nil {
			return v, err
		}
	}
	return v, nil
}

// checkResources rejects relay limits the circuit v2 service would
// misbehave with (a zero MaxReservations refuses everyone; a zero
// BufferSize makes the relay spin).
func checkResources(r relayv2.Resources) error {
	switch {
	case r.MaxReservations <= 0, r.MaxCircuits <= 0, r.BufferSize <= 0,
		r.MaxReservationsPerIP <= 0, r.MaxReservationsPerASN <= 0, r.ReservationTTL <= 0:
		return fmt.Errorf("%w: Resources: reservations, circuits, buffer size and TTL must be positive", ErrInvalidConfig)
	case r.Limit != nil && (r.Limit.Duration <= 0 || r.Limit.Data <= 0):
		return fmt.Errorf("%w: Resources.Limit: duration and data must be positive (or Limit nil for none)", ErrInvalidConfig)
	}
	return nil
}

// checkLimits rejects protocol limits the resource manager would read as
// "refuse everything" (zero) or that contradict themselves.
func checkLimits(l Limits) error {
	for _, p := range []struct {
		name string
		lim  ProtocolLimits
	}{{"Mailbox", l.Mailbox}, {"Directory", l.Directory}} {
		switch {
		case p.lim.StreamsPerPeer <= 0, p.lim.Streams <= 0, p.lim.MemoryPerPeer <= 0, p.lim.Memory <= 0:
			return fmt.Errorf("%w: Limits.%s: every limit must be positive", ErrInvalidConfig, p.name)
		case p.lim.StreamsPerPeer > p.lim.Streams, p.lim.MemoryPerPeer > p.lim.Memory:
			return fmt.Errorf("%w: Limits.%s: a per-peer limit exceeds the total", ErrInvalidConfig, p.name)
		}
	}
	return nil
}

// checkMetricsAddr accepts host:port with a loopback host, or any host
// when public is set.
func checkMetricsAddr(addr string, public bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: metrics address %q: want host:port: %v", ErrInvalidConfig, addr, err)
	}
	if port == "" {
		return fmt.Errorf("%w: metrics address %q: missing port", ErrInvalidConfig, addr)
	}
	if public {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: metrics address %q is not a loopback address (allow it explicitly to expose metrics beyond this machine)", ErrInvalidConfig, addr)
	}
	return nil
}

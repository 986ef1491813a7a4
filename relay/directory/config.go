package directory

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/pqxdh"
	"github.com/peergram/peergram/storage"
)

// Defaults of Config, and why.
const (
	// DefaultMaxOneTime is the most one-time prekeys of each kind stored
	// per device: twice the 50 a node generates at a time, so a device
	// whose relay still holds some can add a whole new batch. At 100 of
	// each kind a device's prekeys take about 135 KB.
	DefaultMaxOneTime = 100

	// DefaultAccountQuota is the most bytes one account may store: its
	// list, and per listed device its bundle, record and one-time prekeys
	// (counted at their encoded sizes). 1 MiB holds seven devices with
	// DefaultMaxOneTime prekeys of each kind. Lists, bundles and records
	// are always stored (together at most about 250 KB, see
	// MinAccountQuota); the quota stops one-time prekeys, so a device over
	// it learns from its stock count that fewer were stored. Without it
	// one account could store about 86 MB (64 devices × 1,000 prekeys of
	// each kind).
	DefaultAccountQuota = 1 << 20

	// DefaultExpiry is how long an account stays without being published
	// to before the relay deletes it, and how long a listed device's
	// bundle and record stay without being published again. A node
	// publishes each time it connects to its relay; 30 days matches the
	// mailbox's TTL, after which its envelopes are gone too.
	DefaultExpiry = 30 * 24 * time.Hour

	// DefaultExpiryInterval is how often the relay looks for expired
	// accounts and devices.
	DefaultExpiryInterval = time.Hour

	// markTTL is how long the relay remembers the highest one-time prekey
	// IDs of a device it deleted (expired or dropped from its list), so
	// that a replayed old bundle cannot bring back prekeys it handed out.
	markTTL = 365 * 24 * time.Hour
)

// MinAccountQuota is the space an account's list, bundles and records may
// take (identity.MaxDevices of each at their largest, about 250 KB): an
// AccountQuota must leave room for them.
const MinAccountQuota = maxListSize + identity.MaxDevices*(bundleHeadSize+maxRecordSize)

// Rate is a per-key rate limit: a bucket of Burst requests, refilled by
// one every Every. The zero Rate means the default of the Config field;
// Unlimited turns the limit off.
type Rate struct {
	Burst int
	Every time.Duration
}

// Unlimited is a Rate that allows everything.
var Unlimited = Rate{Burst: -1}

// Default rates, and why. A refused Publish or Fetch is answered
// RateLimited with the time to wait; a one-time prekey over its rate is
// withheld (the bundle is served without it: the initiator uses the
// signed and last-resort prekeys, and the session works, as with a
// drained pool).
var (
	// DefaultPublishRate: a node publishes when it connects, when its
	// device list changes and when it refills its prekeys; 10 at once and
	// one a minute is far above that.
	DefaultPublishRate = Rate{Burst: 10, Every: time.Minute}

	// DefaultFetchRate: a node fetches its contacts' lists when it starts
	// and before messaging a device it has no session with; 100 at once
	// (a node with many contacts coming online) and 2 a second.
	DefaultFetchRate = Rate{Burst: 100, Every: 500 * time.Millisecond}

	// DefaultOneTimePerPeer: one-time prekeys one peer may take, across
	// all devices: a new session per device, 50 at once (adding contacts
	// with several devices each) and one a minute.
	DefaultOneTimePerPeer = Rate{Burst: 50, Every: time.Minute}

	// DefaultOneTimePerDevice: one-time prekeys handed out for one device,
	// to all peers together: 10 at once and 6 an hour, so that draining a
	// device's 50 takes hours however many peer IDs the drainer makes,
	// while the device sees its stock fall and refills. Few devices start
	// more than six new sessions an hour; those beyond it use the
	// last-resort prekey.
	DefaultOneTimePerDevice = Rate{Burst: 10, Every: 10 * time.Minute}
)

// maxRateKeys bounds the peers and devices each rate limiter tracks
// (about 100 bytes each).
const maxRateKeys = 1 << 16

// Config configures a Server.
type Config struct {
	// DB stores lists, bundles and records. Required. The Server does not
	// close it.
	DB *storage.DB

	// Host serves the protocol. Required. The Server does not close it.
	Host host.Host

	// Logger receives the Server's logs; nil discards them.
	Logger *slog.Logger

	// Registerer receives the Server's metrics at Start (and loses them
	// at Close); nil registers nothing.
	Registerer prometheus.Registerer

	// MaxOneTime is the most one-time prekeys of each kind stored per
	// device; 0 means DefaultMaxOneTime (100), at most pqxdh.MaxOneTime.
	MaxOneTime int

	// AccountQuota is the most bytes one account may store, counted at the
	// objects' encoded sizes; 0 means DefaultAccountQuota (1 MiB). It must
	// leave room for the largest list with all its bundles and records
	// (about 250 KB).
	AccountQuota int64

	// Expiry is how long an account, or a listed device's bundle and
	// record, is kept without being published again; 0 means
	// DefaultExpiry (30 days).
	Expiry time.Duration

	// ExpiryInterval is how often expired accounts and devices are
	// deleted; 0 means DefaultExpiryInterval (1 hour).
	ExpiryInterval time.Duration

	// PublishRate limits publishes per peer; zero means DefaultPublishRate.
	PublishRate Rate

	// FetchRate limits fetches (and Stock requests) per peer; zero means
	// DefaultFetchRate.
	FetchRate Rate

	// OneTimePerPeer limits the one-time prekeys handed out to one peer;
	// zero means DefaultOneTimePerPeer.
	OneTimePerPeer Rate

	// OneTimePerDevice limits the one-time prekeys handed out for one
	// device; zero means DefaultOneTimePerDevice.
	OneTimePerDevice Rate

	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
}

// withDefaults validates c and fills in its defaults.
func (c Config) withDefaults() (Config, error) {
	if c.DB == nil || c.Host == nil {
		return c, fmt.Errorf("%w: DB and Host are required", ErrInvalidConfig)
	}
	switch {
	case c.MaxOneTime < 0 || c.MaxOneTime > pqxdh.MaxOneTime:
		return c, fmt.Errorf("%w: MaxOneTime %d outside 0..%d", ErrInvalidConfig, c.MaxOneTime, pqxdh.MaxOneTime)
	case c.AccountQuota < 0 || (c.AccountQuota > 0 && c.AccountQuota < MinAccountQuota):
		return c, fmt.Errorf("%w: AccountQuota %d below %d bytes (the largest list with its bundles and records)", ErrInvalidConfig, c.AccountQuota, MinAccountQuota)
	case c.Expiry < 0 || c.ExpiryInterval < 0:
		return c, fmt.Errorf("%w: negative expiry", ErrInvalidConfig)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxOneTime == 0 {
		c.MaxOneTime = DefaultMaxOneTime
	}
	if c.AccountQuota == 0 {
		c.AccountQuota = DefaultAccountQuota
	}
	if c.Expiry == 0 {
		c.Expiry = DefaultExpiry
	}
	if c.ExpiryInterval == 0 {
		c.ExpiryInterval = DefaultExpiryInterval
	}
	for _, r := range []struct {
		r   *Rate
		def Rate
	}{
		{&c.PublishRate, DefaultPublishRate}, {&c.FetchRate, DefaultFetchRate},
		{&c.OneTimePerPeer, DefaultOneTimePerPeer}, {&c.OneTimePerDevice, DefaultOneTimePerDevice},
	} {
		if *r.r == (Rate{}) {
			*r.r = r.def
		}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

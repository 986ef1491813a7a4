package directory

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Server's counters and gauges. They exist whether or not
// a Registerer was given, so the code never checks for nil.
type metrics struct {
	requests  *prometheus.CounterVec // labels op (publish, fetch, stock, none), code
	added     *prometheus.CounterVec // label kind
	notStored *prometheus.CounterVec // labels kind, reason (max_per_device, account_quota)
	served    *prometheus.CounterVec // label kind
	exhausted *prometheus.CounterVec // label kind
	withheld  *prometheus.CounterVec // label reason (peer_rate, device_rate)
	expired   *prometheus.CounterVec // label what (account, device)
	dropped   prometheus.Counter
	streams   prometheus.GaugeFunc

	open func() int // streams being served; set by NewServer
}

// kindNames label prekey kinds, by position in kinds.
var kindNames = [2]string{"x25519", "mlkem768"}

func newMetrics() *metrics {
	const ns, sub = "peergram", "directory"
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "requests_total",
			Help: "Requests answered, by operation (publish, fetch, stock; none if the frame did not decode) and status code (ok, or the reason of a refusal: rate_limited, forbidden, too_large, ...).",
		}, []string{"op", "code"}),
		added: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "onetime_prekeys_added_total",
			Help: "One-time prekeys stored by publishes, by kind.",
		}, []string{"kind"}),
		notStored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "onetime_prekeys_not_stored_total",
			Help: "New one-time prekeys a publish carried but the relay did not store, by kind and reason (max_per_device: the device holds the maximum; account_quota: the account's bytes are used up).",
		}, []string{"kind", "reason"}),
		served: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "onetime_prekeys_served_total",
			Help: "One-time prekeys handed out (and deleted) by fetches, by kind.",
		}, []string{"kind"}),
		exhausted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "onetime_prekeys_exhausted_total",
			Help: "Bundles handed out without a one-time prekey of a kind because the device has none left (the initiator falls back to the signed or last-resort prekey), by kind.",
		}, []string{"kind"}),
		withheld: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "onetime_prekeys_withheld_total",
			Help: "Bundles handed out without their one-time prekeys because a rate limit was reached, by reason (peer_rate: the requesting peer's; device_rate: the device's).",
		}, []string{"reason"}),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "expired_total",
			Help: "Accounts, and listed devices' bundles and records, deleted because they were not published for the expiry time.",
		}, []string{"what"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "devices_dropped_total",
			Help: "Devices whose bundle and record were deleted because a new device list no longer names them.",
		}),
	}
	m.streams = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: ns, Subsystem: sub, Name: "streams",
		Help: "Directory streams being served now.",
	}, func() float64 {
		if m.open == nil {
			return 0
		}
		return float64(m.open())
	})
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.added, m.notStored, m.served, m.exhausted, m.withheld, m.expired, m.dropped, m.streams}
}

// register registers every collector or none.
func (m *metrics) register(r prometheus.Registerer) error {
	if r == nil {
		return nil
	}
	var done []prometheus.Collector
	for _, c := range m.collectors() {
		if err := r.Register(c); err != nil {
			for _, d := range done {
				r.Unregister(d)
			}
			return errors.Join(errors.New("register metrics"), err)
		}
		done = append(done, c)
	}
	return nil
}

func (m *metrics) unregister(r prometheus.Registerer) {
	if r == nil {
		return
	}
	for _, c := range m.collectors() {
		r.Unregister(c)
	}
}

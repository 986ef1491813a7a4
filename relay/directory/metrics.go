package directory

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Server's counters. They exist whether or not a
// Registerer was given, so the code never checks for nil.
type metrics struct {
	requests  *prometheus.CounterVec // labels op (publish, fetch, none), code
	added     *prometheus.CounterVec // label kind
	served    *prometheus.CounterVec // label kind
	exhausted *prometheus.CounterVec // label kind
	dropped   prometheus.Counter
}

// kindNames label prekey kinds, by position in kinds.
var kindNames = [2]string{"x25519", "mlkem768"}

func newMetrics() *metrics {
	const ns, sub = "peergram", "directory"
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "requests_total",
			Help: "Requests answered, by operation (publish, fetch; none if the frame did not decode) and status code.",
		}, []string{"op", "code"}),
		added: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "onetime_prekeys_added_total",
			Help: "One-time prekeys stored by publishes, by kind.",
		}, []string{"kind"}),
		served: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "onetime_prekeys_served_total",
			Help: "One-time prekeys handed out (and deleted) by fetches, by kind.",
		}, []string{"kind"}),
		exhausted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "onetime_prekeys_exhausted_total",
			Help: "Bundles handed out without a one-time prekey of a kind (the initiator falls back to the signed or last-resort prekey), by kind.",
		}, []string{"kind"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "devices_dropped_total",
			Help: "Devices whose bundle and record were deleted because a new device list no longer names them.",
		}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.added, m.served, m.exhausted, m.dropped}
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

package mailbox

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Server's counters. They exist whether or not a
// Registerer was given, so the code never checks for nil.
type metrics struct {
	deposits    *prometheus.CounterVec // label result: stored, duplicate
	refusals    *prometheus.CounterVec // label code
	deliveries  prometheus.Counter
	acks        prometheus.Counter
	acksIgnored prometheus.Counter
	storedBytes prometheus.Counter
}

func newMetrics() *metrics {
	const ns, sub = "peergram", "mailbox"
	return &metrics{
		deposits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "deposits_total",
			Help: "Deposits accepted, by result (stored, duplicate).",
		}, []string{"result"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "refusals_total",
			Help: "Deposits, subscriptions and frames refused, by code.",
		}, []string{"code"}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "deliveries_total",
			Help: "Envelopes sent to subscribers (redeliveries included).",
		}),
		acks: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "acks_total",
			Help: "Envelopes deleted on their owner's ack.",
		}),
		acksIgnored: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "acks_ignored_total",
			Help: "Acked IDs that named no envelope of the subscriber's mailbox.",
		}),
		storedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "stored_bytes_total",
			Help: "Envelope bytes stored (duplicates not counted).",
		}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.deposits, m.refusals, m.deliveries, m.acks, m.acksIgnored, m.storedBytes}
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

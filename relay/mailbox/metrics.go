package mailbox

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Stream kinds, the values of the streams gauge's "kind" label.
const (
	streamPending   = "unauthenticated" // opened, not yet a deposit stream or an authenticated subscription
	streamDeposit   = "deposit"
	streamSubscribe = "subscribe"
)

// metrics are the Server's collectors. They exist whether or not a
// Registerer was given, so the code never checks for nil. Every label
// value is one of a fixed set of names (result, reason, stream kind), so
// no label carries a path, an address or a peer ID.
type metrics struct {
	deposits      *prometheus.CounterVec // label result: stored, duplicate, handed_off
	refusals      *prometheus.CounterVec // label reason: a Code's name, or auth_timeout
	deliveries    prometheus.Counter
	acks          prometheus.Counter
	acksIgnored   prometheus.Counter
	storedBytes   prometheus.Counter
	expired       prometheus.Counter
	fallbacks     prometheus.Counter
	heldEnvelopes prometheus.Gauge
	heldBytes     prometheus.Gauge
	streams       *prometheus.GaugeVec // label kind
}

func newMetrics() *metrics {
	const ns, sub = "peergram", "mailbox"
	return &metrics{
		deposits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "deposits_total",
			Help: "Deposits accepted, by result (stored, duplicate, handed_off).",
		}, []string{"result"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "refusals_total",
			Help: "Deposits, subscriptions and frames refused, by reason (relay_full, rate_limited, stranger_quota, quota_exceeded, too_large, malformed, unauthorized, auth_timeout, unavailable, internal).",
		}, []string{"reason"}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "deliveries_total",
			Help: "Envelopes sent to subscribers (redeliveries included).",
		}),
		acks: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "acks_total",
			Help: "Envelopes deleted (or handed off) on their owner's ack.",
		}),
		acksIgnored: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "acks_ignored_total",
			Help: "Acked IDs that named no envelope delivered to the subscriber.",
		}),
		storedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "stored_bytes_total",
			Help: "Envelope bytes stored (duplicates not counted).",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "expired_total",
			Help: "Envelopes deleted unread at the end of their lifetime.",
		}),
		fallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "handoff_fallbacks_total",
			Help: "Envelopes handed to a live subscriber that were stored instead (not acked in time, nacked, subscription ended).",
		}),
		heldEnvelopes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "held_envelopes",
			Help: "Envelopes stored in all mailboxes.",
		}),
		heldBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "held_bytes",
			Help: "Envelope bytes stored in all mailboxes (the figure Config.MaxStoreBytes caps).",
		}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "streams",
			Help: "Open mailbox streams, by kind (unauthenticated, deposit, subscribe).",
		}, []string{"kind"}),
	}
}

func (m *metrics) refusal(c Code) { m.refusals.WithLabelValues(c.String()).Inc() }

func (m *metrics) setHeld(u usage) {
	m.heldEnvelopes.Set(float64(u.count))
	m.heldBytes.Set(float64(u.bytes))
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.deposits, m.refusals, m.deliveries, m.acks, m.acksIgnored,
		m.storedBytes, m.expired, m.fallbacks, m.heldEnvelopes, m.heldBytes, m.streams}
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

package relay

import (
	"errors"
	"regexp"
	"strings"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	circuit "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/peergram/peergram/relay/directory"
	"github.com/peergram/peergram/relay/mailbox"
)

// The relay's own metrics, beside those of libp2p and of each protocol
// server:
//
//	peergram_relay_streams{scope, name, dir}         gauge: streams open now, read from the
//	                                                 resource manager at each scrape; scope
//	                                                 "system", "transient" (still negotiating)
//	                                                 or "protocol" with name the protocol ID
//	peergram_relay_rcmgr_refused_total{resource, scope, name}
//	                                                 counter: what the resource manager
//	                                                 refused, by resource (connection,
//	                                                 stream, memory) and the scope whose
//	                                                 limit was reached
//
// Label values are bounded: protocol and service names are those this
// relay serves (others become "other"), never peer IDs.

// streamProtocols are the protocols whose streams the relay reports.
var streamProtocols = []protocol.ID{mailbox.ProtocolID, directory.ProtocolID, circuit.ProtoIDv2Hop, circuit.ProtoIDv2Stop}

// streamCollector reports the resource manager's stream counts.
type streamCollector struct {
	rm   network.ResourceManager
	desc *prometheus.Desc
}

func newStreamCollector(rm network.ResourceManager) *streamCollector {
	return &streamCollector{rm: rm, desc: prometheus.NewDesc("peergram_relay_streams",
		"Streams open now, by resource-manager scope (system; transient: still negotiating their protocol; protocol, with name the protocol ID) and direction.",
		[]string{"scope", "name", "dir"}, nil)}
}

func (c *streamCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *streamCollector) Collect(ch chan<- prometheus.Metric) {
	emit := func(scope, name string, st network.ScopeStat) {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(st.NumStreamsInbound), scope, name, "inbound")
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(st.NumStreamsOutbound), scope, name, "outbound")
	}
	_ = c.rm.ViewSystem(func(s network.ResourceScope) error { emit("system", "", s.Stat()); return nil })
	_ = c.rm.ViewTransient(func(s network.ResourceScope) error { emit("transient", "", s.Stat()); return nil })
	for _, p := range streamProtocols {
		_ = c.rm.ViewProtocol(p, func(s network.ProtocolScope) error { emit("protocol", string(p), s.Stat()); return nil })
	}
}

// refusals counts the resource manager's refusals. It implements
// rcmgr.MetricsReporter, which libp2p calls on every allowed and refused
// connection, stream and memory reservation.
type refusals struct {
	c *prometheus.CounterVec // labels resource, scope, name
}

func newRefusals() *refusals {
	return &refusals{c: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "peergram_relay_rcmgr_refused_total",
		Help: "Connections, streams and memory reservations the resource manager refused, by resource and by the scope whose limit was reached " +
			"(open: a system, transient, peer or per-IP limit when opening; peer: a peer's connections; protocol, protocol_peer, service, service_peer with name the protocol or service).",
	}, []string{"resource", "scope", "name"})}
}

// knownName bounds the name label to the protocols and services this
// relay serves.
func knownName(s string) string {
	switch s {
	case mailbox.ProtocolID, directory.ProtocolID, string(circuit.ProtoIDv2Hop), string(circuit.ProtoIDv2Stop),
		mailboxService, directory.ServiceName:
		return s
	}
	if strings.HasPrefix(s, "libp2p.") { // libp2p's services: "libp2p.relay/v2", "libp2p.identify", ...
		return s
	}
	return "other"
}

func (r *refusals) BlockConn(network.Direction, bool) {
	r.c.WithLabelValues("connection", "open", "").Inc()
}
func (r *refusals) BlockStream(peer.ID, network.Direction) {
	r.c.WithLabelValues("stream", "open", "").Inc()
}
func (r *refusals) BlockPeer(peer.ID) { r.c.WithLabelValues("connection", "peer", "").Inc() }
func (r *refusals) BlockProtocol(p protocol.ID) {
	r.c.WithLabelValues("stream", "protocol", knownName(string(p))).Inc()
}
func (r *refusals) BlockProtocolPeer(p protocol.ID, _ peer.ID) {
	r.c.WithLabelValues("stream", "protocol_peer", knownName(string(p))).Inc()
}
func (r *refusals) BlockService(svc string) {
	r.c.WithLabelValues("stream", "service", knownName(svc)).Inc()
}
func (r *refusals) BlockServicePeer(svc string, _ peer.ID) {
	r.c.WithLabelValues("stream", "service_peer", knownName(svc)).Inc()
}
func (r *refusals) BlockMemory(int) { r.c.WithLabelValues("memory", "any", "").Inc() }

func (*refusals) AllowConn(network.Direction, bool)      {}
func (*refusals) AllowStream(peer.ID, network.Direction) {}
func (*refusals) AllowPeer(peer.ID)                      {}
func (*refusals) AllowProtocol(protocol.ID)              {}
func (*refusals) AllowService(string)                    {}
func (*refusals) AllowMemory(int)                        {}

// sourceLocation matches a label value that names a Go source line, as
// libp2p's event bus names its subscribers ("<file>.go-L<line>").
var sourceLocation = regexp.MustCompile(`\.go-L[0-9]+$`)

// pathFree is the Gatherer the /metrics handler serves: the relay's
// registry with build paths cut out of label values. libp2p names event
// bus subscribers after the file that subscribed, which in a binary built
// without -trimpath is an absolute path of the build machine
// ("/home/builder/go/pkg/mod/github.com/libp2p/go-libp2p/p2p/...go-L156"):
// it tells the world who built the relay where, and changes with every
// build. Such values keep their module-relative part, as -trimpath would
// give ("libp2p/go-libp2p/p2p/...go-L156").
type pathFree struct{ g prometheus.Gatherer }

func (p pathFree) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := p.g.Gather()
	for _, mf := range mfs {
		changed := false
		for _, m := range mf.Metric {
			for _, lp := range m.Label {
				if v, ok := trimBuildPath(lp.GetValue()); ok {
					lp.Value = &v
					changed = true
				}
			}
		}
		if changed {
			mf.Metric = dedupe(mf.Metric)
		}
	}
	return mfs, err
}

// trimBuildPath returns the module-relative part of a source location
// with a build path, and false for any other value.
func trimBuildPath(v string) (string, bool) {
	if !sourceLocation.MatchString(v) {
		return v, false
	}
	const modCache = "/pkg/mod/"
	switch {
	case strings.Contains(v, modCache):
		v = v[strings.LastIndex(v, modCache)+len(modCache):]
	case strings.HasPrefix(v, "/") || (len(v) > 2 && v[1] == ':'):
		// Outside the module cache (a replaced or vendored module, the
		// main module): keep the package directory and the file.
		parts := strings.FieldsFunc(v, func(r rune) bool { return r == '/' || r == '\\' })
		v = strings.Join(parts[max(0, len(parts)-2):], "/")
	default:
		return v, false
	}
	return strings.TrimPrefix(v, "github.com/"), true
}

// dedupe drops a metric whose labels, once trimmed, equal an earlier
// one's: Prometheus refuses a family with two series of the same labels.
func dedupe(ms []*dto.Metric) []*dto.Metric {
	seen := make(map[string]bool, len(ms))
	out := ms[:0]
	for _, m := range ms {
		var key strings.Builder
		for _, lp := range m.Label {
			key.WriteString(lp.GetName())
			key.WriteByte(0)
			key.WriteString(lp.GetValue())
			key.WriteByte(0)
		}
		if seen[key.String()] {
			continue
		}
		seen[key.String()] = true
		out = append(out, m)
	}
	return out
}

// registerRelayMetrics registers the relay's own collectors.
func registerRelayMetrics(reg prometheus.Registerer, rm network.ResourceManager, ref *refusals) error {
	var errs []error
	for _, c := range []prometheus.Collector{newStreamCollector(rm), ref.c} {
		errs = append(errs, reg.Register(c))
	}
	return errors.Join(errs...)
}

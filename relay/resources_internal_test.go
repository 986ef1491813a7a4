package relay

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	circuit "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
)

// The resource manager must admit what the relay service is configured
// for, on the smallest machine (no scaling) as on a large one, and the
// connection manager must start trimming before the hard limit.
func TestOperatorLimits(t *testing.T) {
	for _, res := range []relayv2.Resources{OperatorResources(), relayv2.DefaultResources()} {
		for _, m := range []struct {
			name string
			mem  int64
			fds  int
		}{
			{"base", 0, 0},
			{"8GiB", 8 << 30, 1 << 16},
		} {
			scaling := operatorLimits(res)
			lim := rcmgr.NewFixedLimiter(scaling.Scale(m.mem/8, m.fds/2))
			sys := lim.GetSystemLimits()
			rsv := res.MaxReservations
			if got := sys.GetConnLimit(network.DirInbound); got < 2*rsv {
				t.Errorf("%s, %d slots: system inbound conns %d < 2×reservations", m.name, rsv, got)
			}
			if got := sys.GetFDLimit(); got < sys.GetConnTotalLimit() && m.fds == 0 {
				t.Errorf("%s: base FD limit %d below conns %d", m.name, got, sys.GetConnTotalLimit())
			}
			if _, high := connManagerWater(res); high >= sys.GetConnTotalLimit() {
				t.Errorf("%s: connmgr high water %d not below the conn limit %d", m.name, high, sys.GetConnTotalLimit())
			}
			svc := lim.GetServiceLimits(relayv2.ServiceName)
			if svc.GetStreamLimit(network.DirInbound) < rsv || svc.GetStreamLimit(network.DirOutbound) < rsv {
				t.Errorf("%s: relay service streams in %d out %d < %d reservations", m.name,
					svc.GetStreamLimit(network.DirInbound), svc.GetStreamLimit(network.DirOutbound), rsv)
			}
			if want := int64(rsv) * int64(2*res.BufferSize); svc.GetMemoryLimit() < want {
				t.Errorf("%s: relay service memory %d < %d for one circuit per reservation", m.name, svc.GetMemoryLimit(), want)
			}
			sp := lim.GetServicePeerLimits(relayv2.ServiceName)
			if sp.GetStreamTotalLimit() < 2*res.MaxCircuits {
				t.Errorf("%s: relay streams per peer %d < 2×MaxCircuits", m.name, sp.GetStreamTotalLimit())
			}
			for _, p := range []protocol.ID{circuit.ProtoIDv2Hop, circuit.ProtoIDv2Stop} {
				if got := lim.GetProtocolLimits(p).GetStreamTotalLimit(); got < 2*rsv {
					t.Errorf("%s: %s streams %d < 2×reservations", m.name, p, got)
				}
			}
		}
	}
	// operatorLimits must not modify libp2p's shared defaults.
	if rcmgr.DefaultLimits.ServiceLimits != nil || rcmgr.DefaultLimits.SystemBaseLimit.ConnsInbound != 64 {
		t.Error("operatorLimits changed rcmgr.DefaultLimits")
	}
}

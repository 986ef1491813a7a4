package relay

import (
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	circuit "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
)

// OperatorResources returns the circuit relay v2 limits a Peergram relay
// operator runs with. The library's DefaultResources are sized for a
// libp2p node that relays as a side job (128 slots, 2 minutes and 128 KiB
// per relayed connection, enough for a hole-punch handshake and little
// else); a Peergram relay is a dedicated machine whose job is to keep NATed
// devices reachable. See the circuit relay v2 spec for what each limit
// means on the wire:
// https://github.com/libp2p/specs/blob/master/relay/circuit-v2.md#reservation
//
// Every field:
//
//   - Limit.Duration = 10 min (library: 2 min). When hole punching fails
//     (both sides behind symmetric NATs), a chat between two online devices
//     runs over a circuit: messages, receipts, typing notices and call
//     signalling. Ten minutes cuts the reconnect churn of such a chat by 5×
//     while still recycling circuits that the peers forgot.
//   - Limit.Data = 4 MiB per direction (library: 128 KiB). Thousands of
//     sealed text messages, or the SDP/ICE exchange of a call many times
//     over. Bulk data never rides a circuit: files go to the relay's blob
//     store and call media to TURN, so a larger cap would only invite abuse.
//   - ReservationTTL = 1 h (library: 1 h). Clients refresh before expiry;
//     a reservation also ends when its connection drops, so a longer TTL
//     buys nothing, and libp2p clients are tuned to this value.
//   - MaxReservations = 1024 (library: 128). A slot costs one mostly idle
//     connection (a few tens of KiB of kernel and yamux state); a small VPS
//     holds a thousand comfortably, and each slot is a NATed device that
//     can be reached through this relay.
//   - MaxCircuits = 32 per peer (library: 16). A device with many contacts
//     (or in groups) online at once is the destination of more circuits at
//     a time than a generic libp2p node.
//   - BufferSize = 8 KiB (library: 2 KiB). Circuits now carry up to 4 MiB,
//     and a bigger copy buffer means 4× fewer read/write calls for the
//     same data. Each circuit reserves two buffers (16 KiB) against the
//     relay service's memory limit, which operatorLimits sizes for it.
//   - MaxReservationsPerPeer = 1 (library: 1). Deprecated by libp2p: one
//     reservation is all a peer ever needs.
//   - MaxReservationsPerIP = 16 (library: 8). Carrier-grade NAT and office
//     networks put many devices behind one address; one address still
//     cannot take more than 1/64 of the slots.
//   - MaxReservationsPerASN = 256 (library: 32; applied to IPv6 peers only
//     by libp2p). The library's share of a quarter of all slots for one
//     network, kept as the slot count grows.
func OperatorResources() relayv2.Resources {
	return relayv2.Resources{
		Limit: &relayv2.RelayLimit{
			Duration: 10 * time.Minute,
			Data:     4 << 20,
		},
		ReservationTTL:        time.Hour,
		MaxReservations:       1024,
		MaxCircuits:           32,
		BufferSize:            8 << 10,
		MaxReservationsPerIP:  16,
		MaxReservationsPerASN: 256,
	}
}

// hopMessageSize is the memory the relay service reserves for each hop or
// stop message it reads (maxMessageSize in go-libp2p's circuitv2/relay).
const hopMessageSize = 4 << 10

// operatorLimits returns the resource manager configuration for a relay
// with the relay resources res, before scaling to the machine (the caller
// calls AutoScale, which adds each Increase per GiB of 1/8 of the RAM and
// takes file descriptors from the process limit).
//
// It starts from libp2p's defaults plus its limits for bundled services
// (libp2p.SetDefaultServiceLimits) and raises what a relay operator needs:
//
//   - system inbound connections: 2 × MaxReservations (a reservation holder
//     plus as many other peers: mailbox subscribers and depositors,
//     directory clients, circuit sources), outbound left at the default
//     (the relay dials only for AutoNAT dial-backs);
//   - system streams: 8 inbound and 4 outbound per inbound connection
//     (identify, ping, mailbox, directory, hop; stop streams go out);
//   - transient (handshaking) inbound connections: 128 (default 32) so the
//     reconnect burst of all reservation holders after a restart is not
//     throttled to a trickle;
//   - relay service: MaxReservations hop streams in and as many stop
//     streams out, and memory for that many circuits' two buffers plus a
//     message each way;
//   - relay service per peer and circuit protocols per peer: 2 ×
//     MaxCircuits streams (a peer both source and destination of its
//     maximum of circuits), never below libp2p's defaults.
func operatorLimits(res relayv2.Resources) rcmgr.ScalingLimitConfig {
	l := rcmgr.DefaultLimits // ScalingLimitConfig's maps are nil here; Add* allocates new ones
	libp2p.SetDefaultServiceLimits(&l)

	rsv := res.MaxReservations
	in := max(l.SystemBaseLimit.ConnsInbound, 2*rsv)
	l.SystemBaseLimit.ConnsInbound = in
	l.SystemBaseLimit.Conns = in + l.SystemBaseLimit.ConnsOutbound
	l.SystemBaseLimit.StreamsInbound = max(l.SystemBaseLimit.StreamsInbound, 8*in)
	l.SystemBaseLimit.StreamsOutbound = max(l.SystemBaseLimit.StreamsOutbound, 4*in)
	l.SystemBaseLimit.Streams = l.SystemBaseLimit.StreamsInbound + l.SystemBaseLimit.StreamsOutbound
	l.SystemBaseLimit.FD = max(l.SystemBaseLimit.FD, l.SystemBaseLimit.Conns)

	l.TransientBaseLimit.ConnsInbound = max(l.TransientBaseLimit.ConnsInbound, 128)
	l.TransientBaseLimit.Conns = l.TransientBaseLimit.ConnsInbound + l.TransientBaseLimit.ConnsOutbound

	circuitMem := int64(2*res.BufferSize + 2*hopMessageSize)
	svc := l.ServiceLimits[relayv2.ServiceName]
	svcBase := svc.BaseLimit
	svcBase.StreamsInbound = max(svcBase.StreamsInbound, rsv)
	svcBase.StreamsOutbound = max(svcBase.StreamsOutbound, rsv)
	svcBase.Streams = max(svcBase.Streams, 2*rsv)
	svcBase.Memory = max(svcBase.Memory, int64(rsv)*circuitMem)
	l.AddServiceLimit(relayv2.ServiceName, svcBase, svc.BaseLimitIncrease)

	perPeer := 2 * res.MaxCircuits
	sp := l.ServicePeerLimits[relayv2.ServiceName]
	spBase := sp.BaseLimit
	spBase.StreamsInbound = max(spBase.StreamsInbound, perPeer)
	spBase.StreamsOutbound = max(spBase.StreamsOutbound, perPeer)
	spBase.Streams = max(spBase.Streams, perPeer)
	spBase.Memory = max(spBase.Memory, int64(perPeer)*hopMessageSize)
	l.AddServicePeerLimit(relayv2.ServiceName, spBase, sp.BaseLimitIncrease)

	for _, proto := range []protocol.ID{circuit.ProtoIDv2Hop, circuit.ProtoIDv2Stop} {
		p := l.ProtocolLimits[proto]
		pBase := p.BaseLimit
		pBase.StreamsInbound = max(pBase.StreamsInbound, 2*rsv)
		pBase.StreamsOutbound = max(pBase.StreamsOutbound, 2*rsv)
		pBase.Streams = max(pBase.Streams, 2*rsv)
		l.AddProtocolLimit(proto, pBase, p.BaseLimitIncrease)

		pp := l.ProtocolPeerLimits[proto]
		ppBase := pp.BaseLimit
		ppBase.StreamsInbound = max(ppBase.StreamsInbound, perPeer)
		ppBase.StreamsOutbound = max(ppBase.StreamsOutbound, perPeer)
		ppBase.Streams = max(ppBase.Streams, perPeer)
		l.AddProtocolPeerLimit(proto, ppBase, pp.BaseLimitIncrease)
	}
	return l
}

// connManagerWater returns the connection manager's low and high water
// marks: trimming starts above MaxReservations + half of it and stops at
// MaxReservations, so idle peers are shed well before the resource
// manager's hard limit (2 × MaxReservations inbound). Peers holding a
// reservation are tagged by the relay service and trimmed last.
func connManagerWater(res relayv2.Resources) (low, high int) {
	return res.MaxReservations, res.MaxReservations + res.MaxReservations/2
}

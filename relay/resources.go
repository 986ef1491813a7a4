package relay

import (
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	circuit "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"

	"github.com/peergram/peergram/relay/directory"
	"github.com/peergram/peergram/relay/mailbox"
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

// ProtocolLimits bound what peers may hold of one Peergram protocol on the
// relay at a time. The relay gives them to the libp2p resource manager for
// the protocol's scope and its service's scope, so a stream over a limit
// is reset before (protocol) or as (service) its handler starts, and a
// memory reservation over a limit is refused (the handler answers
// Unavailable). Each field must be positive.
type ProtocolLimits struct {
	// StreamsPerPeer is the most inbound streams of the protocol one peer
	// may have open at once.
	StreamsPerPeer int
	// Streams is the most inbound streams of the protocol all peers
	// together may have open at once.
	Streams int
	// MemoryPerPeer is the most bytes one peer's streams of the protocol
	// may reserve at once (frame bodies being read, deposit pipelines).
	MemoryPerPeer int64
	// Memory is the most bytes all streams of the protocol may reserve at
	// once.
	Memory int64
}

// Limits are the resource-manager limits of the Peergram protocols a
// relay serves.
type Limits struct {
	Mailbox   ProtocolLimits // mailbox.ProtocolID
	Directory ProtocolLimits // directory.ProtocolID
}

// OperatorLimits returns the limits a relay runs with when Config.Limits
// is zero. libp2p's defaults for a protocol without limits of its own
// scale with the machine's memory: 512 + 256 inbound streams per GiB of
// the resource manager's share (1/8 of the RAM), so about 576 on a 2 GiB
// VPS, shared by every peer, and 64 per peer. About ten anonymous peers
// opening unauthenticated mailbox streams therefore used to lock every
// device out of a small relay. These limits make the per-peer limit the
// one that binds: the protocol's total admits every peer the resource
// manager admits connections for (2 × MaxReservations = 2,048 inbound
// with OperatorResources) at a legitimate peer's usage, so a flood needs
// hundreds of peers, and libp2p lets one IPv4 address (or IPv6 /56) open
// only 8 connections. They are fixed numbers, not scaled with the
// machine's memory, sized for a 2 GiB VPS with 1,024 reservations; an
// operator who raises MaxReservations raises them in proportion.
//
// Every field:
//
//   - Mailbox.StreamsPerPeer = 8. A device holds one subscription per
//     relay and one pipelined deposit stream (mailbox.Client shares one
//     per relay); 8 leaves room for a reconnect overlapping the teardown
//     of the stream it replaces, and for a client that spreads deposits
//     over a few streams.
//   - Mailbox.Streams = 4,096. Each of the 2,048 peers the relay admits
//     may hold a subscription and a deposit stream at once. A flood needs
//     512 peers at the per-peer limit, 64 IPv4 addresses.
//   - Mailbox.MemoryPerPeer = 32 MiB. The four deposit streams a
//     mailbox.Client spreads its deposits over, each with its whole
//     pipeline in flight (the server holds up to 8 MiB of one stream's
//     deposits, reserved in 1 MiB steps).
//   - Mailbox.Memory = 128 MiB. Eight such peers at once, or over a
//     hundred depositing an envelope each; a tenth of what a 2 GiB VPS
//     has left besides Badger's caches and the connections' buffers. A
//     deposit refused for memory is answered Unavailable and retried by
//     its sender; subscriptions reserve nothing and keep working.
//   - Directory.StreamsPerPeer = 4. One request per stream, answered in
//     milliseconds; a node fetches the bundles of a few devices at once.
//   - Directory.Streams = 1,024. Far more requests at once than 2,048
//     peers make; a flood needs 256 peers at the per-peer limit.
//   - Directory.MemoryPerPeer = 4 MiB. One Publish of the largest size
//     (directory.MaxPublishSize, 2 MiB) being read, with fetches beside
//     it.
//   - Directory.Memory = 64 MiB. 32 of the largest publishes at once; a
//     device's usual publish (a bundle with 50 one-time prekeys of each
//     kind) is about 70 KB. A publish refused for memory is answered
//     Unavailable; fetches reserve 4 KiB and keep working.
func OperatorLimits() Limits {
	return Limits{
		Mailbox: ProtocolLimits{
			StreamsPerPeer: 8,
			Streams:        4096,
			MemoryPerPeer:  32 << 20,
			Memory:         128 << 20,
		},
		Directory: ProtocolLimits{
			StreamsPerPeer: 4,
			Streams:        1024,
			MemoryPerPeer:  4 << 20,
			Memory:         64 << 20,
		},
	}
}

// peerStreamsInbound returns the most inbound streams one peer may have
// open on the relay, of all protocols together and while negotiating one:
// twice what a busy device needs (an inbound hop stream for each of its
// MaxCircuits circuits, its mailbox and directory streams, and
// otherPeerStreams for identify, ping and AutoNAT), at least 128. With
// OperatorResources and OperatorLimits it is 128, so that filling the
// relay's 16,384 inbound streams takes 128 peers.
func peerStreamsInbound(res relayv2.Resources, own Limits) int {
	return max(128, 2*(res.MaxCircuits+own.Mailbox.StreamsPerPeer+own.Directory.StreamsPerPeer+otherPeerStreams))
}

// otherPeerStreams are the inbound streams a peer may have open at once of
// libp2p's own protocols on the relay: identify and its push, ping,
// AutoNAT v1 and v2, with room for retries.
const otherPeerStreams = 16

// mailboxService is the resource-manager service the mailbox server
// attaches its streams to (the unexported serviceName of relay/mailbox;
// TestServiceNames checks it).
const mailboxService = "peergram.mailbox"

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
//     maximum of circuits), never below libp2p's defaults;
//   - inbound streams per peer: peerStreamsInbound, not scaled (libp2p:
//     256 + 128 per GiB), and transient (still negotiating their
//     protocol) inbound streams: as many as the system admits (libp2p:
//     128 + 128 per GiB). libp2p counts a stream against the transient
//     scope for up to 10 s until its protocol is negotiated, and has no
//     per-peer limit there: with its defaults three peers opening streams
//     they never negotiate held every transient slot and no peer could
//     open any stream. Now a peer holds at most peerStreamsInbound, and
//     filling the system's inbound streams takes 16,384 / 128 = 128 peers
//     (16 IPv4 addresses at 8 connections each);
//
// and sets the limits of Peergram's own protocols (see OperatorLimits)
// on their protocol and service scopes, so that neither libp2p's default
// for protocols nor its default for services binds first.
func operatorLimits(res relayv2.Resources, own Limits) rcmgr.ScalingLimitConfig {
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
	l.TransientBaseLimit.StreamsInbound = l.SystemBaseLimit.StreamsInbound
	l.TransientLimitIncrease.StreamsInbound = l.SystemLimitIncrease.StreamsInbound
	l.TransientBaseLimit.Streams = l.TransientBaseLimit.StreamsInbound + l.TransientBaseLimit.StreamsOutbound
	l.TransientLimitIncrease.Streams = l.TransientLimitIncrease.StreamsInbound + l.TransientLimitIncrease.StreamsOutbound

	l.PeerBaseLimit.StreamsInbound = peerStreamsInbound(res, own)
	l.PeerLimitIncrease.StreamsInbound = 0

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

	for _, p := range []struct {
		proto protocol.ID
		svc   string
		lim   ProtocolLimits
	}{
		{mailbox.ProtocolID, mailboxService, own.Mailbox},
		{directory.ProtocolID, directory.ServiceName, own.Directory},
	} {
		// The relay opens no streams of its own protocols; the outbound
		// limits equal the inbound ones only so that nothing is refused
		// for a surprising reason. No increase: the limits are fixed.
		total := rcmgr.BaseLimit{
			StreamsInbound: p.lim.Streams, StreamsOutbound: p.lim.Streams, Streams: p.lim.Streams,
			Memory: p.lim.Memory,
		}
		perPeer := rcmgr.BaseLimit{
			StreamsInbound: p.lim.StreamsPerPeer, StreamsOutbound: p.lim.StreamsPerPeer, Streams: p.lim.StreamsPerPeer,
			Memory: p.lim.MemoryPerPeer,
		}
		l.AddProtocolLimit(p.proto, total, rcmgr.BaseLimitIncrease{})
		l.AddProtocolPeerLimit(p.proto, perPeer, rcmgr.BaseLimitIncrease{})
		l.AddServiceLimit(p.svc, total, rcmgr.BaseLimitIncrease{})
		l.AddServicePeerLimit(p.svc, perPeer, rcmgr.BaseLimitIncrease{})
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

package relay

import (
	"errors"
	"net"
	"slices"
	"syscall"

	"github.com/libp2p/go-libp2p/core/host"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// fullAddrs returns the addresses h listens on, each ending in
// /p2p/<peer ID>. An unspecified listen address (0.0.0.0, ::) becomes one
// address per interface (loopback included); a specific one, loopback or
// not, stays as it is. Ports are the bound ones (port 0 resolved). Public
// addresses come first, then private ones, then loopback: the first line
// of the addrs file is the one operators copy into client configs.
func fullAddrs(h host.Host) ([]ma.Multiaddr, error) {
	ifaceAddrs, err := h.Network().InterfaceListenAddresses()
	if err != nil {
		return nil, err
	}
	p2p, err := ma.NewComponent("p2p", h.ID().String())
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(ifaceAddrs))
	out := make([]ma.Multiaddr, 0, len(ifaceAddrs))
	for _, a := range ifaceAddrs {
		full := a.Encapsulate(p2p)
		if seen[full.String()] {
			continue
		}
		seen[full.String()] = true
		out = append(out, full)
	}
	slices.SortStableFunc(out, func(a, b ma.Multiaddr) int { return reach(a) - reach(b) })
	return out, nil
}

// reach ranks an address by who can dial it: 0 anyone, 1 the local
// network, 2 this machine.
func reach(a ma.Multiaddr) int {
	switch {
	case manet.IsIPLoopback(a):
		return 2
	case manet.IsPublicAddr(a):
		return 0
	}
	return 1
}

// portInUse reports whether the TCP or UDP port of the listen address a
// is bound by someone else: it binds the port itself (without
// SO_REUSEPORT) and lets go at once.
func portInUse(a ma.Multiaddr) bool {
	var ip, tcpPort, udpPort string
	for _, c := range a {
		switch c.Protocol().Code {
		case ma.P_IP4, ma.P_IP6:
			ip = c.Value()
		case ma.P_TCP:
			tcpPort = c.Value()
		case ma.P_UDP:
			udpPort = c.Value()
		}
	}
	var err error
	switch {
	case ip == "":
		return false
	case tcpPort != "":
		var ln net.Listener
		if ln, err = net.Listen("tcp", net.JoinHostPort(ip, tcpPort)); err == nil {
			_ = ln.Close()
		}
	case udpPort != "":
		var pc net.PacketConn
		if pc, err = net.ListenPacket("udp", net.JoinHostPort(ip, udpPort)); err == nil {
			_ = pc.Close()
		}
	default:
		return false
	}
	return errors.Is(err, syscall.EADDRINUSE)
}

package relay

import (
	"slices"

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

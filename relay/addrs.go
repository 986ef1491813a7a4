package relay

import (
	"github.com/libp2p/go-libp2p/core/host"
	ma "github.com/multiformats/go-multiaddr"
)

// fullAddrs returns the addresses h listens on, each ending in
// /p2p/<peer ID>. An unspecified listen address (0.0.0.0, ::) becomes one
// address per interface (loopback included); a specific one, loopback or
// not, stays as it is. Ports are the bound ones (port 0 resolved).
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
	return out, nil
}

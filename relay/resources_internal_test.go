package relay

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	circuit "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"

	"github.com/peergram/peergram/relay/directory"
	"github.com/peergram/peergram/relay/mailbox"
	"github.com/peergram/peergram/storage"
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
			scaling := operatorLimits(res, OperatorLimits())
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
			own := OperatorLimits()
			sysIn := sys.GetStreamLimit(network.DirInbound)
			ours := 0
			for _, p := range []struct {
				proto protocol.ID
				svc   string
				lim   ProtocolLimits
			}{{mailbox.ProtocolID, mailboxService, own.Mailbox}, {directory.ProtocolID, directory.ServiceName, own.Directory}} {
				for _, l := range []struct {
					scope          string
					total, perPeer rcmgr.Limit
				}{
					{"protocol", lim.GetProtocolLimits(p.proto), lim.GetProtocolPeerLimits(p.proto)},
					{"service", lim.GetServiceLimits(p.svc), lim.GetServicePeerLimits(p.svc)},
				} {
					if got := l.total.GetStreamLimit(network.DirInbound); got != p.lim.Streams {
						t.Errorf("%s: %s %s inbound streams %d, want %d", m.name, p.proto, l.scope, got, p.lim.Streams)
					}
					if got := l.perPeer.GetStreamLimit(network.DirInbound); got != p.lim.StreamsPerPeer {
						t.Errorf("%s: %s %s inbound streams per peer %d, want %d", m.name, p.proto, l.scope, got, p.lim.StreamsPerPeer)
					}
					if got := l.total.GetMemoryLimit(); got != p.lim.Memory {
						t.Errorf("%s: %s %s memory %d, want %d", m.name, p.proto, l.scope, got, p.lim.Memory)
					}
					if got := l.perPeer.GetMemoryLimit(); got != p.lim.MemoryPerPeer {
						t.Errorf("%s: %s %s memory per peer %d, want %d", m.name, p.proto, l.scope, got, p.lim.MemoryPerPeer)
					}
				}
				ours += p.lim.Streams
			}
			// Filling our protocols and the circuit ones still leaves the
			// system streams for everything else.
			// (OperatorLimits are sized for OperatorResources.)
			if hop := lim.GetProtocolLimits(circuit.ProtoIDv2Hop).GetStreamLimit(network.DirInbound); res == OperatorResources() && ours+hop > sysIn {
				t.Errorf("%s: mailbox, directory and hop streams (%d) exceed the system's inbound streams %d", m.name, ours+hop, sysIn)
			}
			// A peer may hold what a busy device needs, and no more than
			// a 128th of the system's streams, negotiated or not.
			peerIn := lim.GetPeerLimits("").GetStreamLimit(network.DirInbound)
			if need := res.MaxCircuits + own.Mailbox.StreamsPerPeer + own.Directory.StreamsPerPeer + otherPeerStreams; peerIn < need {
				t.Errorf("%s: %d inbound streams per peer < %d a busy device needs", m.name, peerIn, need)
			}
			if res == OperatorResources() && sysIn/peerIn < 128 {
				t.Errorf("%s: %d peers fill the system's %d inbound streams, want at least 128", m.name, sysIn/peerIn, sysIn)
			}
			if got := lim.GetTransientLimits().GetStreamLimit(network.DirInbound); got != sysIn {
				t.Errorf("%s: transient inbound streams %d, want the system's %d", m.name, got, sysIn)
			}
		}
	}
	// operatorLimits must not modify libp2p's shared defaults.
	if rcmgr.DefaultLimits.ServiceLimits != nil || rcmgr.DefaultLimits.SystemBaseLimit.ConnsInbound != 64 {
		t.Error("operatorLimits changed rcmgr.DefaultLimits")
	}
}

// TestServiceNames checks that the servers attach their streams to the
// services operatorLimits sets limits for: a stream of each protocol,
// held open by its server, shows up in its service's scope.
func TestServiceNames(t *testing.T) {
	scaling := operatorLimits(OperatorResources(), OperatorLimits())
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(scaling.AutoScale()))
	if err != nil {
		t.Fatal(err)
	}
	srvHost, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.ResourceManager(rm), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	defer srvHost.Close()
	cli, err := libp2p.New(libp2p.NoListenAddrs, libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	db, err := storage.Open(storage.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mb, err := mailbox.NewServer(mailbox.Config{DB: db, Host: srvHost})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := directory.NewServer(directory.Config{DB: db, Host: srvHost})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []interface{ Start() error }{mb, dir} {
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
	}
	defer mb.Close()
	defer dir.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cli.Connect(ctx, peer.AddrInfo{ID: srvHost.ID(), Addrs: srvHost.Addrs()}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		proto protocol.ID
		svc   string
		first []byte
	}{
		{mailbox.ProtocolID, mailboxService, []byte{0, 0, 0, 1, 0x03}}, // Subscribe: the server waits for Auth
		{directory.ProtocolID, directory.ServiceName, []byte{0, 0}},    // half a header: the server waits
	} {
		str, err := cli.NewStream(ctx, srvHost.ID(), c.proto)
		if err != nil {
			t.Fatal(err)
		}
		defer str.Reset()
		if _, err := str.Write(c.first); err != nil {
			t.Fatal(err)
		}
		for {
			var n int
			_ = rm.ViewService(c.svc, func(s network.ServiceScope) error {
				n = s.Stat().NumStreamsInbound
				return nil
			})
			if n == 1 {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("no %s stream in service %q: the server uses another service name", c.proto, c.svc)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

package relay

import (
	"fmt"
	"net"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/peergram/peergram/relay/blobs"
	"github.com/peergram/peergram/relay/directory"
	"github.com/peergram/peergram/relay/history"
	"github.com/peergram/peergram/relay/mailbox"
	"github.com/peergram/peergram/relay/sfu"
	"github.com/peergram/peergram/relay/turnserver"
	"github.com/peergram/peergram/storage"
)

// The Peergram protocol servers the relay runs on its host and store.
// Each registers its metrics on the relay's registry and is closed by Run
// before the host and the store it uses.

func (r *Relay) startMailbox(stack *closers, db *storage.DB, h host.Host, reg prometheus.Registerer) error {
	srv, err := mailbox.NewServer(mailbox.Config{
		DB:                  db,
		Host:                h,
		MaxEnvelopeSize:     r.cfg.MaxEnvelopeSize,
		MaxMailboxEnvelopes: r.cfg.MaxMailboxEnvelopes,
		MaxMailboxBytes:     r.cfg.MaxMailboxBytes,
		TTL:                 r.cfg.TTL,
		UnknownTTL:          r.cfg.UnknownTTL,
		MaxStoreBytes:       r.cfg.MaxStoreBytes,
		StrangerPercent:     r.cfg.StrangerPercent,
		DepositBudgets:      r.cfg.DepositBudgets,
		StrangerBudgets:     r.cfg.StrangerBudgets,
		Logger:              r.log.With("component", "mailbox"),
		Registerer:          reg,
	})
	if err != nil {
		return fmt.Errorf("relay: mailbox: %w", err)
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("relay: mailbox: %w", err)
	}
	stack.push("mailbox server", srv.Close)
	return nil
}

func (r *Relay) startDirectory(stack *closers, db *storage.DB, h host.Host, reg prometheus.Registerer) error {
	srv, err := directory.NewServer(directory.Config{
		DB:           db,
		Host:         h,
		Logger:       r.log.With("component", "directory"),
		Registerer:   reg,
		Expiry:       r.cfg.DirectoryExpiry,
		AccountQuota: r.cfg.DirectoryAccountQuota,
	})
	if err != nil {
		return fmt.Errorf("relay: directory: %w", err)
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("relay: directory: %w", err)
	}
	stack.push("directory server", srv.Close)
	return nil
}

func (r *Relay) startBlobs(stack *closers, db *storage.DB, h host.Host, reg prometheus.Registerer) error {
	srv, err := blobs.NewServer(blobs.Config{
		DB:           db,
		Host:         h,
		Dir:          filepath.Join(r.cfg.Home, "blobs"),
		Retention:    r.cfg.BlobRetention,
		AccountQuota: r.cfg.BlobAccountQuota,
		Capacity:     r.cfg.BlobCapacity,
		Registerer:   reg,
		Logger:       r.log.With("component", "blobs"),
	})
	if err != nil {
		return fmt.Errorf("relay: blobs: %w", err)
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("relay: blobs: %w", err)
	}
	stack.push("blob server", srv.Close)
	return nil
}

func (r *Relay) startTURN(stack *closers, h host.Host) error {
	if r.cfg.TURNListen == "" {
		return nil
	}
	srv, err := turnserver.New(turnserver.Config{
		Host:     h,
		Listen:   r.cfg.TURNListen,
		PublicIP: r.cfg.TURNPublicIP,
		TTL:      r.cfg.TURNCredentialTTL,
		Log:      r.log.With("component", "turn"),
	})
	if err != nil {
		return fmt.Errorf("relay: turn: %w", err)
	}
	r.log.Info("STUN/TURN server for calls", "urls", srv.URLs())
	stack.push("turn server", srv.Close)
	return nil
}

func (r *Relay) startHistory(stack *closers, db *storage.DB, h host.Host) (*history.Server, error) {
	srv, err := history.NewServer(history.Config{
		DB:               db,
		Host:             h,
		Retention:        r.cfg.HistoryRetention,
		MaxGroupMessages: r.cfg.HistoryGroupMessages,
		MaxGroupBytes:    r.cfg.HistoryGroupBytes,
		MaxGroups:        r.cfg.HistoryMaxGroups,
		Logger:           r.log.With("component", "history"),
	})
	if err != nil {
		return nil, fmt.Errorf("relay: history: %w", err)
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("relay: history: %w", err)
	}
	stack.push("history server", srv.Close)
	return srv, nil
}

// startSFU serves group calls; who may join is what the history
// server's copy of each group's log says.
func (r *Relay) startSFU(stack *closers, h host.Host, members sfu.Members) error {
	if r.cfg.SFUDisabled {
		return nil
	}
	settings, err := r.cfg.sfuSettings()
	if err != nil {
		return err
	}
	srv, err := sfu.New(sfu.Config{Host: h, Members: members, Settings: settings, Log: r.log.With("component", "sfu")})
	if err != nil {
		return fmt.Errorf("relay: sfu: %w", err)
	}
	stack.push("sfu", srv.Close)
	return nil
}

// sfuSettings turns the SFU's options into Pion settings.
func (c *Config) sfuSettings() (func(*webrtc.SettingEngine), error) {
	var lo, hi uint16
	if c.SFUPorts != "" {
		if _, err := fmt.Sscanf(c.SFUPorts, "%d-%d", &lo, &hi); err != nil || lo == 0 || hi < lo {
			return nil, fmt.Errorf("%w: --sfu-ports is MIN-MAX, e.g. 50000-50999", ErrInvalidConfig)
		}
	}
	if c.SFUPublicIP != "" && net.ParseIP(c.SFUPublicIP) == nil {
		return nil, fmt.Errorf("%w: --sfu-public-ip %q is not an IP", ErrInvalidConfig, c.SFUPublicIP)
	}
	return func(se *webrtc.SettingEngine) {
		if lo != 0 {
			_ = se.SetEphemeralUDPPortRange(lo, hi)
		}
		if c.SFUPublicIP != "" {
			se.SetNAT1To1IPs([]string{c.SFUPublicIP}, webrtc.ICECandidateTypeHost)
		}
		if c.SFULoopback {
			se.SetIncludeLoopbackCandidate(true)
			se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
			se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
			se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
		}
	}, nil
}

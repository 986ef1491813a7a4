package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/peergram/peergram/relay"
)

func initCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Create the relay home: identity key and store",
		Long:  "init creates the relay home directory with a new Ed25519 identity (the relay's peer ID)\nand an empty store. It refuses to replace an existing identity.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			home, err := g.resolveHome()
			if err != nil {
				return err
			}
			if err := relay.Init(home); err != nil {
				return explain(err, home)
			}
			r, err := relay.New(relay.Config{Home: home})
			if err != nil {
				return explain(err, home)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "initialised relay home %s\npeer ID %s\n", home, r.ID())
			return err
		},
	}
}

// runFlags are the flags of the run command.
type runFlags struct {
	listen          []string
	metrics         string
	metricsPublic   bool
	maxEnvelopeSize int
	maxEnvelopes    int
	maxBytes        int64
	ttl             time.Duration
	unknownTTL      time.Duration
	maxStoreBytes   int64
	strangerPercent int
	dirExpiry       time.Duration
	dirQuota        int64
	histRetention   time.Duration
	histMessages    int
	histBytes       int64
	histGroups      int
	blobRetention   time.Duration
	blobQuota       int64
	blobCapacity    int64
	turnListen      string
	turnPublicIP    string
	turnTTL         time.Duration
	sfu             bool
	sfuPublicIP     string
	sfuPorts        string
	sfuLoopback     bool
}

func runCmd(g *globals) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the relay until SIGINT or SIGTERM",
		Long: "run starts the relay and prints its multiaddrs, one per line, once it listens (they are\n" +
			"also written to HOME/addrs). It stops cleanly on SIGINT or SIGTERM.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRelay(cmd, g, f)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.listen, "listen", relay.DefaultListen, "libp2p multiaddr to listen on (repeatable)")
	fl.StringVar(&f.metrics, "metrics", "", "HOST:PORT for Prometheus /metrics and /healthz (loopback only unless --metrics-public; default off)")
	fl.BoolVar(&f.metricsPublic, "metrics-public", false, "allow --metrics on a non-loopback address")
	fl.IntVar(&f.maxEnvelopeSize, "max-envelope-size", 0, "largest mailbox envelope in bytes (0 = 256 KiB)")
	fl.IntVar(&f.maxEnvelopes, "mailbox-max-envelopes", 0, "most envelopes one mailbox holds (0 = 100000)")
	fl.Int64Var(&f.maxBytes, "mailbox-max-bytes", 0, "most envelope bytes one mailbox holds (0 = 256 MiB)")
	fl.DurationVar(&f.ttl, "mailbox-ttl", 0, "how long undelivered envelopes are kept, e.g. 720h (0 = 30 days)")
	fl.DurationVar(&f.unknownTTL, "mailbox-unknown-ttl", 0, "how long envelopes are kept in a mailbox whose owner never subscribed here (0 = 7 days)")
	fl.Int64Var(&f.maxStoreBytes, "mailbox-max-store-bytes", 0, "most envelope bytes all mailboxes hold together (0 = 4 GiB)")
	fl.IntVar(&f.strangerPercent, "mailbox-stranger-percent", 0, "share of each mailbox's quota open to deposits without a delivery token, in percent (0 = 10)")
	fl.DurationVar(&f.dirExpiry, "directory-expiry", 0, "how long the directory keeps an account or device nobody publishes again, e.g. 720h (0 = 30 days)")
	fl.Int64Var(&f.dirQuota, "directory-account-quota", 0, "most bytes one account stores in the directory (0 = 1 MiB)")
	fl.DurationVar(&f.histRetention, "history-retention", 0, "how long group history is kept for members who were offline, e.g. 720h (0 = 30 days)")
	fl.IntVar(&f.histMessages, "history-group-messages", 0, "most envelopes kept per group; the oldest go first (0 = 100000)")
	fl.Int64Var(&f.histBytes, "history-group-bytes", 0, "most bytes kept per group (0 = 256 MiB)")
	fl.IntVar(&f.histGroups, "history-max-groups", 0, "most groups whose history the relay keeps (0 = 10000)")
	fl.DurationVar(&f.blobRetention, "blob-retention", 0, "how long the blob store keeps a file chunk after its last upload, e.g. 720h (0 = 30 days)")
	fl.Int64Var(&f.blobQuota, "blob-account-quota", 0, "most bytes of file chunks one account keeps in the blob store (0 = 4 GiB)")
	fl.Int64Var(&f.blobCapacity, "blob-capacity", 0, "most bytes the blob store holds in all (0 = 64 GiB)")
	fl.StringVar(&f.turnListen, "turn-listen", "", "UDP HOST:PORT of the STUN/TURN server for calls (default off)")
	fl.StringVar(&f.turnPublicIP, "turn-public-ip", "", "the IP clients reach the TURN server at (default the --turn-listen host)")
	fl.DurationVar(&f.turnTTL, "turn-credential-ttl", 0, "how long TURN credentials are good for (0 = 10m)")
	fl.BoolVar(&f.sfu, "sfu", true, "run the SFU for group voice/video chats")
	fl.StringVar(&f.sfuPublicIP, "sfu-public-ip", "", "the IP the SFU announces to participants (a relay behind a 1:1 NAT)")
	fl.StringVar(&f.sfuPorts, "sfu-ports", "", "UDP port range MIN-MAX for the SFU's media (default any)")
	fl.BoolVar(&f.sfuLoopback, "sfu-loopback", false, "keep the SFU's ICE on loopback (tests on one machine)")
	return cmd
}

func runRelay(cmd *cobra.Command, g *globals, f runFlags) error {
	home, err := g.resolveHome()
	if err != nil {
		return err
	}
	log, err := g.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	cfg := relay.Config{
		Home:                home,
		Listen:              f.listen,
		MetricsAddr:         f.metrics,
		MetricsPublic:       f.metricsPublic,
		Logger:              log,
		MaxEnvelopeSize:     f.maxEnvelopeSize,
		MaxMailboxEnvelopes: f.maxEnvelopes,
		MaxMailboxBytes:     f.maxBytes,
		TTL:                 f.ttl,
		UnknownTTL:          f.unknownTTL,
		MaxStoreBytes:       f.maxStoreBytes,
		StrangerPercent:     f.strangerPercent,

		DirectoryExpiry:       f.dirExpiry,
		DirectoryAccountQuota: f.dirQuota,
		HistoryRetention:      f.histRetention,
		HistoryGroupMessages:  f.histMessages,
		HistoryGroupBytes:     f.histBytes,
		HistoryMaxGroups:      f.histGroups,
		BlobRetention:         f.blobRetention,
		BlobAccountQuota:      f.blobQuota,
		BlobCapacity:          f.blobCapacity,
		TURNListen:            f.turnListen,
		TURNPublicIP:          f.turnPublicIP,
		TURNCredentialTTL:     f.turnTTL,
		SFUDisabled:           !f.sfu,
		SFUPublicIP:           f.sfuPublicIP,
		SFUPorts:              f.sfuPorts,
		SFULoopback:           f.sfuLoopback,
	}
	r, err := relay.New(cfg)
	if err != nil {
		return explain(err, home)
	}

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process the default way
	}()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case <-r.Ready():
		out := cmd.OutOrStdout()
		for _, a := range r.Addrs() {
			if _, err := fmt.Fprintln(out, a); err != nil {
				log.Warn("cannot print addresses", "err", err)
				break
			}
		}
	case err := <-done:
		return explain(err, home)
	}
	return explain(<-done, home)
}

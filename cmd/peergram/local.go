package main

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
)

func (a *app) newInitCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "init --name NAME",
		Short: "Create a new account and device in the home directory",
		Long: `Create a new account and device in the home directory: account and device
keys, prekeys, the local API token and identity.json. Prints the account ID.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			home, err := a.home()
			if err != nil {
				return err
			}
			if strings.TrimSpace(name) == "" {
				return fmt.Errorf("--name must not be empty")
			}
			info, err := a.initNode(home, name)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(a.stdout, info.AccountID)
			return err
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "your display name, shown to contacts (required)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func (a *app) newDaemonCmd() *cobra.Command {
	var (
		cfg      daemonConfig
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the node",
		Long: `Run the node until interrupted (SIGINT or SIGTERM). The node listens for
peers on the --listen addresses, keeps in touch with its --relay relays, and
serves the local API on --api, writing its URL to DIR/api.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			home, err := a.home()
			if err != nil {
				return err
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
			}
			cfg.Home = home
			cfg.Logger = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
			return a.runNode(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&cfg.Listen, "listen", nil, "libp2p listen multiaddr (repeatable; default all interfaces, TCP and QUIC, random ports)")
	f.StringVar(&cfg.APIAddr, "api", "", "local API address HOST:PORT, loopback only (default 127.0.0.1, random port)")
	f.StringArrayVar(&cfg.Relays, "relay", nil, "home relay multiaddr ending in /p2p/PEER_ID (repeatable)")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&cfg.Pprof, "pprof", "", "serve Go's profiles (/debug/pprof/) on HOST:PORT, loopback only (default off)")
	f.DurationVar(&cfg.FileUploadAfter, "file-upload-after", 0, "how long a sent file waits for its recipient to fetch it directly before it is uploaded to a relay (0 = 15s)")
	f.BoolVar(&cfg.CallLoopback, "call-loopback", false, "keep calls' ICE candidates on the loopback interface (tests, and daemons of one machine)")
	f.DurationVar(&cfg.CallRingTimeout, "call-ring-timeout", 0, "how long a call rings unanswered before it is missed (0 = 45s)")
	return cmd
}

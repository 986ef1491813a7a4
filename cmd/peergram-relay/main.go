// Command peergram-relay runs a Peergram relay super-node: circuit relay
// v2 and AutoNAT for NATed devices, store-and-forward mailboxes and the key
// directory, with Prometheus metrics for the operator.
//
//	peergram-relay init [--home DIR]
//	peergram-relay run  [--home DIR] [--listen MULTIADDR]... [--metrics HOST:PORT]
//	peergram-relay version
//	peergram-relay completion bash|zsh|fish|powershell
//
// The home directory is --home, else $PEERGRAM_RELAY_HOME, else
// ~/.peergram-relay. Logs go to stderr; run prints the relay's multiaddrs
// to stdout once it listens.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/libp2p/go-libp2p/gologshim"
	"github.com/spf13/cobra"

	"github.com/peergram/peergram/internal/version"
	"github.com/peergram/peergram/relay"
)

const (
	envHome     = "PEERGRAM_RELAY_HOME"
	defaultHome = ".peergram-relay" // under the user's home directory
	exitError   = 1
	exitUsage   = 2
)

func main() {
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}

// globals are the flags every command shares.
type globals struct {
	home     string
	logLevel string
}

// execute runs the command line args and returns the exit status.
func execute(args []string, stdout, stderr io.Writer) int {
	var g globals
	started := false // a command got past flag and argument parsing
	root := &cobra.Command{
		Use:           "peergram-relay",
		Short:         "Peergram relay super-node",
		Long:          "peergram-relay runs a Peergram relay: circuit relay v2 and AutoNAT for NATed devices,\nstore-and-forward mailboxes and the key directory, with Prometheus metrics.",
		Version:       version.Full(),
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			started = true
			return nil
		},
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&g.home, "home", "", "relay home directory (default $"+envHome+", else ~/"+defaultHome+")")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.AddCommand(initCmd(&g), runCmd(&g), versionCmd())

	cmd, err := root.ExecuteContextC(context.Background())
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "peergram-relay: %v\n", err)
	var ue usageError
	if !started || errors.As(err, &ue) || errors.Is(err, relay.ErrInvalidConfig) {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return exitUsage
	}
	return exitError
}

// usageError marks a bad flag value found after cobra's parsing: the
// command exits with exitUsage and points at --help.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// resolveHome applies the --home, $PEERGRAM_RELAY_HOME, ~/.peergram-relay
// precedence.
func (g *globals) resolveHome() (string, error) {
	if g.home != "" {
		return g.home, nil
	}
	if h := os.Getenv(envHome); h != "" {
		return h, nil
	}
	uh, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no --home given, $%s unset, and no user home directory: %w", envHome, err)
	}
	return filepath.Join(uh, defaultHome), nil
}

// logger builds the text logger on stderr at --log-level, and routes
// go-libp2p's own logs to it at warn and above (debug with --log-level
// debug) unless GOLOG_LOG_LEVEL asks for libp2p's own log settings.
func (g *globals) logger(stderr io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel)}
	}
	h := slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	if os.Getenv("GOLOG_LOG_LEVEL") == "" {
		libp2pLevel := max(level, slog.LevelWarn)
		if level <= slog.LevelDebug {
			libp2pLevel = slog.LevelDebug
		}
		gologshim.SetDefaultHandler(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: libp2pLevel}))
	}
	return slog.New(h), nil
}

// explain turns the relay's sentinel errors into what an operator should
// do about them.
func explain(err error, home string) error {
	switch {
	case errors.Is(err, relay.ErrNotInitialised):
		return fmt.Errorf("relay home %s is not initialised: run 'peergram-relay init --home %s'", home, shellQuote(home))
	case errors.Is(err, relay.ErrAlreadyInitialised):
		return fmt.Errorf("relay home %s is already initialised; refusing to replace its identity key", home)
	case errors.Is(err, relay.ErrLocked):
		return fmt.Errorf("another relay is already running on %s", home)
	}
	return err
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`!*?[]{}()<>|&;#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "peergram-relay", version.Full())
			return err
		},
	}
}

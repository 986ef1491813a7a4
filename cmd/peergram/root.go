package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/peergram/peergram/internal/version"
)

// app holds what the commands reach outside themselves, so tests can run
// them in-process.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	userHome       func() (string, error)
	initNode       func(home, name string) (nodeInfo, error)
	runNode        func(ctx context.Context, cfg daemonConfig) error

	homeFlag string // --home, as given
}

// envHome names the environment variable that sets the home directory when
// --home is absent.
const envHome = "PEERGRAM_HOME"

// run executes the command line and returns the exit code: 0 on success, 1
// on any error (printed to stderr).
func (a *app) run(ctx context.Context, args []string) int {
	root := a.newRoot()
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(a.stderr, "peergram: %v\n", err)
		return 1
	}
	return 0
}

func (a *app) newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "peergram",
		Short: "Peer-to-peer end-to-end encrypted messenger",
		Long: `Peergram is a peer-to-peer, end-to-end encrypted messenger.

Create an identity with 'peergram init', run the node with 'peergram daemon',
then use the other commands, which talk to the running daemon.`,
		Version:       version.Full(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.PersistentFlags().StringVar(&a.homeFlag, "home", "", "home directory (default $"+envHome+", then ~/.peergram)")
	_ = root.MarkPersistentFlagDirname("home")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())
	})
	root.AddCommand(
		a.newInitCmd(),
		a.newDaemonCmd(),
		a.newIDCmd(),
		a.newOpenCmd(),
		a.newContactsCmd(),
		a.newRequestsCmd(),
		a.newSendCmd(),
		a.newSendFileCmd(),
		a.newFilesCmd(),
		a.newDownloadCmd(),
		a.newDeleteFileCmd(),
		a.newCallCmd(),
		a.newCallsCmd(),
		a.newMessagesCmd(),
		a.newGroupCmd(),
		a.newChannelCmd(),
		a.newEventsCmd(),
		a.newWaitCmd(),
		a.newVersionCmd(),
	)
	groupsNeedSubcommands(root)
	return root
}

// groupsNeedSubcommands makes every command below root that only groups
// others ("group", "group poll", …) refuse an unknown subcommand with an
// error (cobra would print the help and succeed); alone it prints its
// help.
func groupsNeedSubcommands(root *cobra.Command) {
	for _, c := range root.Commands() {
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
			c.Args = func(cmd *cobra.Command, a []string) error {
				if len(a) > 0 {
					return fmt.Errorf("unknown command %q for %q (see '%s --help')", a[0], cmd.CommandPath(), cmd.CommandPath())
				}
				return nil
			}
			c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		}
		groupsNeedSubcommands(c)
	}
}

// home returns the home directory: --home, else $PEERGRAM_HOME, else
// ~/.peergram; made absolute so messages name it unambiguously.
func (a *app) home() (string, error) {
	dir := a.homeFlag
	if dir == "" {
		dir = a.getenv(envHome)
	}
	if dir == "" {
		h, err := a.userHome()
		if err != nil {
			return "", fmt.Errorf("no home directory: use --home or $%s (%w)", envHome, err)
		}
		dir = filepath.Join(h, ".peergram")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	return abs, nil
}

// args returns a cobra argument validator with a helpful message.
func args(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		switch {
		case len(a) > n:
			return fmt.Errorf("usage: %s (need %s; got %d arguments: quote a text with spaces)", cmd.UseLine(), names, len(a))
		case len(a) < n:
			return errors.New("usage: " + cmd.UseLine() + " (need " + names + ")")
		}
		return nil
	}
}

// argsAtLeast is args for a command taking n or more arguments.
func argsAtLeast(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if len(a) < n {
			return errors.New("usage: " + cmd.UseLine() + " (need " + names + ")")
		}
		return nil
	}
}

func (a *app) newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(a.stdout, "peergram", version.Full())
			return err
		},
	}
}

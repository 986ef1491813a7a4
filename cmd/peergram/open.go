package main

import (
	"context"
	"fmt"
	"os/exec"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/peergram/peergram/node/localapi"
)

func (a *app) newOpenCmd() *cobra.Command {
	var printOnly bool
	cmd := &cobra.Command{
		Use:   "open",
		Short: "Open the web client in your browser (a one-time login link)",
		Long: `Ask the running daemon for a one-time login link to its web client and open
it in the default browser. The link works once, within two minutes; visiting
it logs that browser in (an HttpOnly session cookie) and goes to the client.
With --print the link is printed instead, on one line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			link, err := call(cmd.Context(), func(ctx context.Context) (localapi.LoginLink, error) {
				return d.WebLogin(ctx)
			})
			if err != nil {
				return err
			}
			if printOnly {
				_, err := fmt.Fprintln(a.stdout, link.URL)
				return err
			}
			if err := openBrowser(link.URL); err != nil {
				fmt.Fprintf(a.stderr, "could not start a browser (%v); open this link yourself:\n", err)
				_, err := fmt.Fprintln(a.stdout, link.URL)
				return err
			}
			fmt.Fprintln(a.stderr, "opened the web client in your browser")
			return nil
		},
	}
	cmd.Flags().BoolVar(&printOnly, "print", false, "print the login link instead of opening a browser")
	return cmd
}

// openBrowser hands a URL to the desktop's browser launcher.
func openBrowser(url string) error {
	var name string
	switch runtime.GOOS {
	case "darwin":
		name = "open"
	case "windows":
		return exec.Command("rundll32", "url.dll,FileProtocolHandler", url).Start()
	default:
		name = "xdg-open"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return err
	}
	return exec.Command(path, url).Start()
}

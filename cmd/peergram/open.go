package main

import (
	"context"
	"fmt"
	"html"
	"os"
	"os/exec"
	"path/filepath"
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
			// The browser gets a file that redirects to the link, not the
			// link itself: a command line (xdg-open's, the browser's) is
			// readable by every user of the machine, and the code in the
			// link is a credential until it is spent.
			home, err := a.home()
			if err != nil {
				return err
			}
			page := filepath.Join(home, "open.html")
			if err := writeRedirect(page, link.URL); err != nil {
				return err
			}
			if err := openBrowser("file://" + page); err != nil {
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

// writeRedirect writes a page (readable by its owner only) that sends the
// browser on to url.
func writeRedirect(path, url string) error {
	u := html.EscapeString(url)
	page := "<!doctype html>\n<meta charset=\"utf-8\">\n<meta name=\"referrer\" content=\"no-referrer\">\n" +
		"<meta http-equiv=\"refresh\" content=\"0;url=" + u + "\">\n<title>Peergram</title>\n<a href=\"" + u + "\">Open Peergram</a>\n"
	_ = os.Remove(path) // a file left by another user's umask or a symlink is not written through
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(page); err != nil {
		f.Close()
		return err
	}
	return f.Close()
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

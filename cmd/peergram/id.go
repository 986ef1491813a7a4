package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
)

// identityFile is DIR/identity.json as the node writes it at init.
type identityFile struct {
	AccountID string `json:"account_id"`
	Link      string `json:"link"`
	PeerID    string `json:"peer_id"`
	Name      string `json:"name"`
}

// idOutput is what 'id --json' prints.
type idOutput struct {
	AccountID string   `json:"account_id"`
	Link      string   `json:"link"`
	PeerID    string   `json:"peer_id"`
	Name      string   `json:"name"`
	Addrs     []string `json:"addrs"` // empty when no daemon runs
}

// idProbeTimeout bounds asking a daemon for its addresses; id works
// without one.
const idProbeTimeout = 2 * time.Second

func (a *app) newIDCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "id",
		Short: "Show this node's account ID, link, peer ID and addresses",
		Long: `Show this node's account ID (first line), link, peer ID and listen
addresses, one per line. Works without a running daemon (addresses are then
empty).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			home, err := a.home()
			if err != nil {
				return err
			}
			path := filepath.Join(home, "identity.json")
			raw, err := os.ReadFile(path)
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("no identity in %s (create one with 'peergram init --home %s --name NAME')", home, home)
			}
			if err != nil {
				return err
			}
			var id identityFile
			if err := json.Unmarshal(raw, &id); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			out := idOutput{AccountID: id.AccountID, Link: id.Link, PeerID: id.PeerID, Name: id.Name, Addrs: a.liveAddrs(cmd.Context())}
			if asJSON {
				return printJSON(a.stdout, out)
			}
			w := a.stdout
			fmt.Fprintln(w, out.AccountID)
			fmt.Fprintln(w, out.Link)
			fmt.Fprintln(w, out.PeerID)
			for _, addr := range out.Addrs {
				fmt.Fprintln(w, clean(addr))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// liveAddrs asks the running daemon, if any, for its addresses; it returns
// an empty list when there is none.
func (a *app) liveAddrs(ctx context.Context) []string {
	d, err := a.connect()
	if err != nil {
		return []string{}
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(ctx, idProbeTimeout)
	defer cancel()
	id, err := d.Identity(ctx)
	if err != nil || id.Addrs == nil {
		return []string{}
	}
	return id.Addrs
}

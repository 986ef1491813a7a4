package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) newWaitCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "wait",
		Short: "Wait until the daemon is ready",
		Long: `Wait until the daemon of the home answers and has published its keys to every
home relay and subscribed to its mailbox there, so that others can find and
reach it. Exits 0 when ready, 1 after --timeout. Useful in scripts right
after starting 'peergram daemon' in the background.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			var last error
			for {
				last = a.ready(ctx)
				if last == nil {
					return nil
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("not ready after %s: %w", timeout, last)
				case <-time.After(100 * time.Millisecond):
				}
			}
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "give up after this long")
	return cmd
}

// ready reports nil once the daemon answers and every relay is ready.
func (a *app) ready(ctx context.Context) error {
	d, err := a.connect()
	if err != nil {
		return err
	}
	defer d.Close()
	st, err := d.Status(ctx)
	if err != nil {
		return d.explain(err)
	}
	for _, r := range st.Relays {
		if !r.Ready {
			return fmt.Errorf("relay %s not ready yet", r.Peer)
		}
	}
	return nil
}

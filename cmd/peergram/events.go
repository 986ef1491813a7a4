package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) newEventsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "events",
		Short: "Follow the daemon's events, one JSON object per line",
		Long: `Follow the daemon's event stream (new messages, status changes) until
interrupted, printing each event as one line of JSON.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			ctx := cmd.Context()
			events, err := d.Events(ctx)
			if err != nil {
				return d.explain(err)
			}
			for ev := range events {
				b, err := json.Marshal(ev)
				if err != nil {
					return err
				}
				if _, err := fmt.Fprintf(a.stdout, "%s\n", b); err != nil {
					return err
				}
			}
			if ctx.Err() != nil {
				return nil // interrupted
			}
			return fmt.Errorf("the daemon at %s ended the event stream", d.url)
		},
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) newEventsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "events",
		Short: "Follow the daemon's events, one JSON object per line",
		Long: `Follow the daemon's event stream (new messages, status changes) until
interrupted, printing each event as one line of JSON. When the daemon stops
or restarts, the command waits for it and reconnects (a note goes to
stderr); events that happened in between are not replayed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			first := true
			backoff := eventsRetryMin
			for {
				err := a.followEvents(ctx, first)
				if ctx.Err() != nil {
					return nil // interrupted
				}
				if first && err != nil {
					return err // no daemon at all: say so at once
				}
				if err == nil {
					backoff = eventsRetryMin // a stream ran: reconnect soon
				}
				first = false
				fmt.Fprintf(a.stderr, "peergram: event stream ended (%v); reconnecting\n", err)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, eventsRetryMax)
			}
		},
	}
}

// Reconnection delays of 'peergram events'.
const (
	eventsRetryMin = 250 * time.Millisecond
	eventsRetryMax = 5 * time.Second
)

// followEvents prints one event stream until it ends. It connects anew
// each time (the daemon writes a new token at every start). It returns nil
// when a stream was open and then ended, and the connection error
// otherwise.
func (a *app) followEvents(ctx context.Context, first bool) error {
	d, err := a.connect()
	if err != nil {
		return err
	}
	defer d.Close()
	events, err := d.Events(ctx)
	if err != nil {
		return d.explain(err)
	}
	if !first {
		fmt.Fprintln(a.stderr, "peergram: reconnected to the daemon")
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
	return nil
}

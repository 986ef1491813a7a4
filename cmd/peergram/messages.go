package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/peergram/peergram/node/chat"
)

// timeLayout is how plain output shows times, in the local time zone.
const timeLayout = "2006-01-02 15:04:05"

func (a *app) newMessagesCmd() *cobra.Command {
	var asJSON, markRead bool
	cmd := &cobra.Command{
		Use:   "messages CONTACT",
		Short: "Show the chat with a contact, oldest first",
		Long: `Show the chat with a contact (alias or account ID), oldest first: one line
per message with time, sender, status and text. Listing marks incoming
messages read, which sends read receipts; --mark-read=false does not.`,
		Args:              args(1, "a contact"),
		ValidArgsFunction: a.completeContact,
		RunE: func(cmd *cobra.Command, argv []string) error {
			contact := argv[0]
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			ms, err := call(cmd.Context(), func(ctx context.Context) ([]chat.Message, error) {
				return d.Messages(ctx, contact, markRead)
			})
			if err != nil {
				return d.contactError(err, contact)
			}
			if asJSON {
				if ms == nil {
					ms = []chat.Message{}
				}
				return printJSON(a.stdout, ms)
			}
			names := a.contactNames(cmd.Context(), d)
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			for _, m := range ms {
				from := "you"
				if !m.Outgoing {
					from = names[m.From]
					if from == "" {
						from = m.From
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.SentAt.Local().Format(timeLayout), clean(from), clean(string(m.Status)), clean(m.Text))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (an array of messages)")
	cmd.Flags().BoolVar(&markRead, "mark-read", true, "mark incoming messages read (sends read receipts)")
	return cmd
}

// contactNames maps account IDs to aliases; empty if the list fails (the
// IDs are shown instead).
func (a *app) contactNames(ctx context.Context, d *daemon) map[string]string {
	names := make(map[string]string)
	cs, err := call(ctx, d.Contacts)
	if err != nil {
		return names
	}
	for _, c := range cs {
		names[c.AccountID] = c.Name
	}
	return names
}

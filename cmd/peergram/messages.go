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
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			for _, m := range ms {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.SentAt.Local().Format(timeLayout), clean(sender(m)), clean(status(m)), forwardMark(m.Forwarded)+clean(m.Text))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (an array of messages)")
	cmd.Flags().BoolVar(&markRead, "mark-read", true, "mark incoming messages read (sends read receipts)")
	return cmd
}

// sender is how plain output names who wrote m: "you", a contact's alias,
// or the name a non-contact gives itself, marked as such.
func sender(m chat.Message) string {
	switch {
	case m.Outgoing:
		return "you"
	case m.FromContact && m.FromName != "":
		return m.FromName
	case m.FromName != "":
		return m.FromName + " (not a contact)"
	}
	return m.From + " (not a contact)"
}

// status is the status column: the status, and why a failed message
// failed or what is odd about an incoming one.
func status(m chat.Message) string {
	s := string(m.Status)
	switch {
	case m.Error != "":
		s += " (" + m.Error + ")"
	case m.Warning != "":
		s += " (!)"
	}
	return s
}

package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/node/localapi"
)

func (a *app) newSendCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "send CONTACT TEXT",
		Short: "Send a message ('-' as TEXT reads it from stdin)",
		Long: `Send a message to a contact, named by alias or account ID. With '-' as TEXT
the message is read from standard input (one trailing newline is dropped).
Exits once the daemon has stored the message in its outbox; delivery goes on
in the background (see 'peergram messages'). Prints the message ID.`,
		Args:              args(2, "a contact and a text"),
		ValidArgsFunction: a.completeContact,
		RunE: func(cmd *cobra.Command, argv []string) error {
			contact, text := argv[0], argv[1]
			if text == "-" {
				b, err := io.ReadAll(io.LimitReader(a.stdin, localapi.MaxBodyBytes+1))
				if err != nil {
					return fmt.Errorf("read stdin: %w", err)
				}
				if len(b) > localapi.MaxBodyBytes {
					return fmt.Errorf("message on stdin is over %d bytes", localapi.MaxBodyBytes)
				}
				text = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
			}
			if text == "" {
				return fmt.Errorf("empty message; nothing sent")
			}
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			m, err := call(cmd.Context(), func(ctx context.Context) (chat.Message, error) {
				return d.Send(ctx, contact, text)
			})
			if err != nil {
				return d.contactError(err, contact)
			}
			if asJSON {
				return printJSON(a.stdout, m)
			}
			_, err = fmt.Fprintln(a.stdout, m.ID)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the stored message as JSON")
	return cmd
}

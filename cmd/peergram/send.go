package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/node/localapi"
)

func (a *app) newSendCmd() *cobra.Command {
	var (
		asJSON bool
		wait   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "send CONTACT TEXT",
		Short: "Send a message ('-' as TEXT reads it from stdin)",
		Long: `Send a message to a contact, named by alias or account ID. With '-' as TEXT
the message is read from standard input (one trailing newline is dropped).
Exits once the daemon has stored the message in its outbox; delivery goes on
in the background (see 'peergram messages'). Prints the message ID.

With --wait DURATION the command instead returns once the recipient's device
has confirmed the message (status delivered or read), and fails if that does
not happen within DURATION or the message fails.`,
		Args:              args(2, "a contact and a text"),
		ValidArgsFunction: a.completeContact,
		RunE: func(cmd *cobra.Command, argv []string) error {
			contact := argv[0]
			text, err := a.messageText(argv[1])
			if err != nil {
				return err
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
			if wait > 0 {
				if m, err = a.waitDelivered(cmd.Context(), d, m, wait); err != nil {
					return err
				}
			}
			if asJSON {
				return printJSON(a.stdout, m)
			}
			_, err = fmt.Fprintln(a.stdout, m.ID)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the stored message as JSON")
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait up to this long for the recipient's device to confirm delivery (e.g. 1m)")
	return cmd
}

// waitDelivered polls the chat until m is delivered or read, fails, or the
// time runs out.
func (a *app) waitDelivered(ctx context.Context, d *daemon, m chat.Message, timeout time.Duration) (chat.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		ms, err := d.Messages(ctx, m.Chat, false)
		if err != nil && ctx.Err() == nil {
			return m, d.explain(err)
		}
		for _, x := range ms {
			if x.ID != m.ID {
				continue
			}
			m = x
			switch x.Status {
			case chat.StatusDelivered, chat.StatusRead:
				return x, nil
			case chat.StatusFailed:
				return x, fmt.Errorf("message %s failed: %s", x.ID, clean(x.Error))
			}
		}
		select {
		case <-ctx.Done():
			return m, fmt.Errorf("message %s not delivered within %s (status %s; it stays in the outbox)", m.ID, timeout, m.Status)
		case <-tick.C:
		}
	}
}

// messageText is a message's text argument: "-" reads it from stdin (one
// trailing newline dropped); an empty text is refused.
func (a *app) messageText(arg string) (string, error) {
	text := arg
	if text == "-" {
		b, err := io.ReadAll(io.LimitReader(a.stdin, localapi.MaxBodyBytes+1))
		if err != nil {
			return "", fmt.Errorf("read stdin: %w", err)
		}
		if len(b) > localapi.MaxBodyBytes {
			return "", fmt.Errorf("message on stdin is over %d bytes", localapi.MaxBodyBytes)
		}
		text = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	}
	if text == "" {
		return "", fmt.Errorf("empty message; nothing sent")
	}
	return text, nil
}

package main

import (
	"context"
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/peergram/peergram/calls"
)

// mediaFlags are a call's --audio, --video and --record.
type mediaFlags struct{ audio, video, record string }

func (m *mediaFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&m.audio, "audio", "", "send audio from an Ogg/Opus file")
	cmd.Flags().StringVar(&m.video, "video", "", "send video from an IVF/VP8 file")
	cmd.Flags().StringVar(&m.record, "record", "", "record what the peer sends into DIR/<track>.ogg|.ivf")
}

// media makes the paths absolute: the daemon opens them.
func (m *mediaFlags) media() (calls.Media, error) {
	var out calls.Media
	for _, p := range []struct {
		in  string
		out *string
	}{{m.audio, &out.Audio}, {m.video, &out.Video}, {m.record, &out.Record}} {
		if p.in == "" {
			continue
		}
		abs, err := filepath.Abs(p.in)
		if err != nil {
			return out, err
		}
		*p.out = abs
	}
	return out, nil
}

func (a *app) newCallCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "call",
		Short: "Voice and video calls: start, answer, decline, hang up, share a screen",
		Long: `Calls run in the daemon: it sends audio and video from files (Ogg/Opus,
IVF/VP8) and records what it receives (--record DIR: DIR/<track>.ogg|.ivf). The
offer, answer and ICE candidates travel inside the end-to-end session, so both
sides can compare the verification code ('peergram calls').`,
	}
	cmd.AddCommand(a.newCallStartCmd(), a.newCallAnswerCmd(), a.newCallSimpleCmd("decline", "Decline a ringing call"),
		a.newCallSimpleCmd("hangup", "End a call (a ringing outgoing call is cancelled)"), a.newCallShareCmd(), a.newCallSimpleCmd("unshare", "Stop sharing the screen"))
	return cmd
}

func (a *app) newCallStartCmd() *cobra.Command {
	var (
		m      mediaFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "start CONTACT",
		Short: "Call a contact; prints the call ID once it rings",
		Long: `Call a contact (alias or account ID). The call rings on every device of the
contact; the command prints the call ID on the first line once a device rings
(or the call is answered already) and exits; the call goes on in the daemon.
A call that ends before it rings (busy, declined, missed: nobody answered or
the contact's devices are offline) prints its ID and fails with its state.`,
		Args:              args(1, "a contact"),
		ValidArgsFunction: a.completeContact,
		RunE: func(cmd *cobra.Command, argv []string) error {
			media, err := m.media()
			if err != nil {
				return err
			}
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			ctx := cmd.Context()
			c, err := d.StartCall(ctx, argv[0], media)
			if err != nil {
				return d.contactError(err, argv[0])
			}
			// Wait until it rings, or ends; the ring timeout bounds it.
			for c.State == calls.StateCalling {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(50 * time.Millisecond):
				}
				rctx, cancel := context.WithTimeout(ctx, requestTimeout)
				c, err = d.Call(rctx, c.ID)
				cancel()
				if err != nil {
					return d.explain(err)
				}
			}
			if asJSON {
				if err := printJSON(a.stdout, c); err != nil {
					return err
				}
			} else if _, err := fmt.Fprintln(a.stdout, c.ID); err != nil {
				return err
			}
			if c.State != calls.StateRinging && c.State != calls.StateAccepted {
				return fmt.Errorf("the call is %s%s", c.State, reason(c))
			}
			return nil
		},
	}
	m.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the call as JSON")
	return cmd
}

func reason(c calls.Call) string {
	if c.Reason == "" {
		return ""
	}
	return " (" + c.Reason + ")"
}

func (a *app) newCallAnswerCmd() *cobra.Command {
	var (
		m      mediaFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "answer CALL_ID",
		Short: "Answer a ringing call; prints the verification code",
		Args:  args(1, "a call ID"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			media, err := m.media()
			if err != nil {
				return err
			}
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			c, err := d.AnswerCall(cmd.Context(), argv[0], media)
			if err != nil {
				return d.explain(err)
			}
			if asJSON {
				return printJSON(a.stdout, c)
			}
			_, err = fmt.Fprintf(a.stdout, "%s\n%s\n", c.ID, c.Verification)
			return err
		},
	}
	m.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the call as JSON")
	return cmd
}

// newCallSimpleCmd is decline, hangup and unshare: a call ID, the state
// after it printed.
func (a *app) newCallSimpleCmd(name, short string) *cobra.Command {
	return &cobra.Command{
		Use:   name + " CALL_ID",
		Short: short,
		Args:  args(1, "a call ID"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			var c calls.Call
			switch name {
			case "decline":
				c, err = d.DeclineCall(cmd.Context(), argv[0])
			case "hangup":
				c, err = d.HangupCall(cmd.Context(), argv[0])
			default:
				c, err = d.UnshareScreen(cmd.Context(), argv[0])
			}
			if err != nil {
				return d.explain(err)
			}
			_, err = fmt.Fprintln(a.stdout, c.State)
			return err
		},
	}
}

func (a *app) newCallShareCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "share CALL_ID FILE",
		Short: "Share a screen (an IVF/VP8 file) in a running call",
		Args:  args(2, "a call ID and an IVF/VP8 file"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			file, err := filepath.Abs(argv[1])
			if err != nil {
				return err
			}
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			c, err := d.ShareScreen(cmd.Context(), argv[0], file)
			if err != nil {
				return d.explain(err)
			}
			_, err = fmt.Fprintln(a.stdout, c.State)
			return err
		},
	}
}

func (a *app) newCallsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "calls",
		Short: "List calls, newest first",
		Long: `List this device's calls, newest first: ID, peer, direction, state, when it
started and ended, the verification code, and the packets sent and received per
track (JSON: id, peer, direction, state, started_at, ended_at, verification,
tracks[{name, kind, direction, packets, frames, file}]).`,
		Args: args(0, ""),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			cs, err := d.Calls(cmd.Context())
			if err != nil {
				return d.explain(err)
			}
			if asJSON {
				if cs == nil {
					cs = []calls.Call{}
				}
				return printJSON(a.stdout, cs)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tPEER\tDIRECTION\tSTATE\tSTARTED\tVERIFICATION\tPACKETS SENT/RECEIVED")
			for _, c := range cs {
				var sent, recv uint64
				for _, t := range c.Tracks {
					if t.Direction == "sent" {
						sent += t.Packets
					} else {
						recv += t.Packets
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s%s\t%s\t%s\t%d/%d\n", c.ID, clean(c.Peer), c.Direction, c.State, clean(reason(c)),
					c.StartedAt.Local().Format(time.DateTime), c.Verification, sent, recv)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/peergram/peergram/calls"
)

func (a *app) newGroupCallCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "call",
		Short: "Group voice and video chats: start, join, leave, mute, status",
		Long: `A group call runs through a relay's SFU: each member sends its audio and video
once, and the relay forwards them to the others. Every frame is encrypted with
SFrame under keys handed out inside the group's end-to-end encryption, so the
relay forwards what it cannot read. The call runs in the daemon, which sends
from files (--audio Ogg/Opus, --video IVF/VP8) and records what it receives
(--record DIR: DIR/<device>-audio.ogg, DIR/<device>-video.ivf).`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(
		a.newGroupCallJoinCmd("start", "Start a call in a group on your home relay and join it; prints the call ID",
			func(ctx context.Context, d *daemon, g string, m calls.Media) (calls.GroupCall, error) {
				return d.StartGroupCall(ctx, g, m)
			}),
		a.newGroupCallJoinCmd("join", "Join the call running in a group; prints the call ID",
			func(ctx context.Context, d *daemon, g string, m calls.Media) (calls.GroupCall, error) {
				return d.JoinGroupCall(ctx, g, m)
			}),
		a.newGroupCallSimpleCmd("leave", "Leave the group's call (the last one out ends it)",
			func(ctx context.Context, d *daemon, g string) (calls.GroupCall, error) {
				return d.LeaveGroupCall(ctx, g)
			}),
		a.newGroupCallSimpleCmd("mute", "Stop sending your audio in the group's call",
			func(ctx context.Context, d *daemon, g string) (calls.GroupCall, error) {
				return d.MuteGroupCall(ctx, g, true)
			}),
		a.newGroupCallSimpleCmd("unmute", "Send your audio again",
			func(ctx context.Context, d *daemon, g string) (calls.GroupCall, error) {
				return d.MuteGroupCall(ctx, g, false)
			}),
		a.newGroupCallSimpleCmd("status", "Show the group's call: participants, who speaks, tracks",
			func(ctx context.Context, d *daemon, g string) (calls.GroupCall, error) { return d.GroupCall(ctx, g) }),
	)
	return cmd
}

func (a *app) newGroupCallJoinCmd(use, short string, do func(context.Context, *daemon, string, calls.Media) (calls.GroupCall, error)) *cobra.Command {
	var (
		m      mediaFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   use + " GROUP",
		Short: short,
		Args:  args(1, "a group"),
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
			g, err := do(cmd.Context(), d, argv[0], media)
			if err != nil {
				return d.groupError(err, argv[0])
			}
			if asJSON {
				return printJSON(a.stdout, g)
			}
			_, err = fmt.Fprintln(a.stdout, g.ID)
			return err
		},
	}
	m.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the call as JSON")
	return cmd
}

func (a *app) newGroupCallSimpleCmd(use, short string, do func(context.Context, *daemon, string) (calls.GroupCall, error)) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   use + " GROUP",
		Short: short,
		Args:  args(1, "a group"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			g, err := do(cmd.Context(), d, argv[0])
			if err != nil {
				return d.groupError(err, argv[0])
			}
			if asJSON {
				return printJSON(a.stdout, g)
			}
			return printGroupCall(a, g)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the call as JSON")
	return cmd
}

func printGroupCall(a *app, g calls.GroupCall) error {
	tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "call\t%s\nstate\t%s%s\nmuted\t%v\n", g.ID, g.State, map[bool]string{true: " (" + g.Reason + ")", false: ""}[g.Reason != ""], g.Muted)
	for _, p := range g.Participants {
		flags := ""
		if p.Speaking {
			flags += " speaking"
		}
		if p.Muted {
			flags += " muted"
		}
		fmt.Fprintf(tw, "participant\t%s\t%s%s\n", clean(p.Account), clean(p.Device), flags)
	}
	for _, t := range g.Tracks {
		fmt.Fprintf(tw, "track\t%s %s\t%s\t%d packets, %d frames\t%s\n", t.Direction, t.Kind, clean(t.Name), t.Packets, t.Frames, t.File)
	}
	return tw.Flush()
}

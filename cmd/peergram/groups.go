package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/peergram/peergram/node/chat"
)

func (a *app) newGroupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "group",
		Short: "Create groups and show them (members, messages and channels are coming)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(a.newGroupCreateCmd(), a.newGroupListCmd(), a.newGroupInfoCmd(), a.newGroupAddCmd(),
		a.newGroupSendCmd(), a.newGroupMessagesCmd(), a.newGroupRemoveCmd(), a.newGroupLeaveCmd(), a.newGroupJoinCmd(),
		a.newGroupRoleCmd("promote", "admin", "Make a member an admin (the owner only)"),
		a.newGroupRoleCmd("demote", "member", "Make an admin a member again (the owner only)"))
	return cmd
}

// groupError explains an error of a call about one group.
func (d *daemon) groupError(err error, group string) error {
	if errors.Is(err, chat.ErrUnknownGroup) {
		return fmt.Errorf("unknown group %q (see 'peergram group list'; a title that several groups share needs the group's ID)", clean(group))
	}
	return d.explain(err)
}

func (a *app) newGroupCreateCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "create TITLE",
		Short: "Create a group you own; prints its ID on the first line",
		Args:  args(1, "a title"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			g, err := call(cmd.Context(), func(ctx context.Context) (chat.Group, error) {
				return d.CreateGroup(ctx, argv[0])
			})
			if err != nil {
				return d.explain(err)
			}
			if asJSON {
				return printJSON(a.stdout, g)
			}
			fmt.Fprintln(a.stdout, g.ID)
			fmt.Fprintf(a.stdout, "created group %s\n", clean(g.Title))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the group as JSON (group_id, title, role, members)")
	return cmd
}

func (a *app) newGroupListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List your groups",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			gs, err := call(cmd.Context(), d.Groups)
			if err != nil {
				return d.explain(err)
			}
			if asJSON {
				if gs == nil {
					gs = []chat.Group{}
				}
				return printJSON(a.stdout, gs)
			}
			if len(gs) == 0 {
				fmt.Fprintln(a.stdout, "no groups yet (create one with 'peergram group create TITLE')")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TITLE\tMEMBERS\tROLE\tID")
			for _, g := range gs {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", clean(g.Title), len(g.Members), g.Role, g.ID)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the groups as a JSON array")
	return cmd
}

func (a *app) newGroupInfoCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info GROUP",
		Short: "Show a group (by ID or title) and its members",
		Args:  args(1, "a group ID or title"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			g, err := call(cmd.Context(), func(ctx context.Context) (chat.Group, error) {
				return d.Group(ctx, argv[0])
			})
			if err != nil {
				return d.groupError(err, argv[0])
			}
			if asJSON {
				return printJSON(a.stdout, g)
			}
			fmt.Fprintf(a.stdout, "%s\nid: %s\nyour role: %s\n", clean(g.Title), g.ID, g.Role)
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ROLE\tNAME\tACCOUNT")
			for _, m := range g.Members {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", m.Role, clean(m.Name), m.AccountID)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the group as JSON (group_id, title, role, members: account_id, name, role)")
	return cmd
}

func (a *app) newGroupAddCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "add GROUP CONTACT...",
		Short: "Add contacts to a group; each gets the group's log and joins (a member added by one of its contacts joins at once)",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			g, err := call(cmd.Context(), func(ctx context.Context) (chat.Group, error) {
				return d.AddGroupMembers(ctx, argv[0], argv[1:])
			})
			switch {
			case errors.Is(err, chat.ErrUnknownContact):
				return fmt.Errorf("%v (members are added from your contacts: see 'peergram contacts list')", d.explain(err))
			case err != nil:
				return d.groupError(err, argv[0])
			}
			if asJSON {
				return printJSON(a.stdout, g)
			}
			fmt.Fprintf(a.stdout, "%s has %d members\n", clean(g.Title), len(g.Members))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the group as JSON")
	return cmd
}

func (a *app) newGroupSendCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "send GROUP TEXT|-",
		Short: "Post to a group (- reads the text from stdin); exits once the message is stored and published; prints its ID",
		Args:  args(2, "a group and a text"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			group := argv[0]
			text, err := a.messageText(argv[1])
			if err != nil {
				return err
			}
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			m, err := call(cmd.Context(), func(ctx context.Context) (chat.GroupMessage, error) {
				return d.SendGroup(ctx, group, text)
			})
			if err != nil {
				return d.groupError(err, group)
			}
			if asJSON {
				return printJSON(a.stdout, m)
			}
			fmt.Fprintln(a.stdout, m.ID)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the message as JSON")
	return cmd
}

func (a *app) newGroupMessagesCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "messages GROUP",
		Short: "Show a group's messages, oldest first",
		Args:  args(1, "a group ID or title"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			ms, err := call(cmd.Context(), func(ctx context.Context) ([]chat.GroupMessage, error) {
				return d.GroupMessages(ctx, argv[0])
			})
			if err != nil {
				return d.groupError(err, argv[0])
			}
			if asJSON {
				if ms == nil {
					ms = []chat.GroupMessage{}
				}
				return printJSON(a.stdout, ms)
			}
			for _, m := range ms {
				who := m.FromName
				if who == "" {
					who = m.From
				}
				fmt.Fprintf(a.stdout, "%s  %s: %s\n", m.SentAt.Local().Format("2006-01-02 15:04"), clean(who), clean(m.Text))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the messages as a JSON array (id, group, from, from_name, outgoing, text, sent_at)")
	return cmd
}

func (a *app) newGroupRemoveCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "remove GROUP MEMBER",
		Short: "Remove a member (contact alias or account ID); every member starts a new key, so it reads nothing sent after",
		Args:  args(2, "a group and a member"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			g, err := call(cmd.Context(), func(ctx context.Context) (chat.Group, error) {
				return d.RemoveGroupMember(ctx, argv[0], argv[1])
			})
			if err != nil {
				return d.groupError(err, argv[0])
			}
			if asJSON {
				return printJSON(a.stdout, g)
			}
			fmt.Fprintf(a.stdout, "%s has %d members\n", clean(g.Title), len(g.Members))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the group as JSON")
	return cmd
}

// newGroupRoleCmd is "group promote" (role "admin") or "group demote"
// (role "member").
func (a *app) newGroupRoleCmd(use, role, short string) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   use + " GROUP MEMBER",
		Short: short,
		Args:  args(2, "a group and a member"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			g, err := call(cmd.Context(), func(ctx context.Context) (chat.Group, error) {
				return d.SetGroupRole(ctx, argv[0], argv[1], role)
			})
			if err != nil {
				return d.groupError(err, argv[0])
			}
			if asJSON {
				return printJSON(a.stdout, g)
			}
			fmt.Fprintf(a.stdout, "%s is now %s of %s\n", clean(argv[1]), map[string]string{"admin": "an admin", "member": "a member"}[role], clean(g.Title))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the group as JSON")
	return cmd
}

func (a *app) newGroupJoinCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "join GROUP_OR_LINK",
		Short: "Accept an invitation to a group (group list shows them, role invited)",
		Args:  args(1, "a group or an invite link"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			g, err := call(cmd.Context(), func(ctx context.Context) (chat.Group, error) {
				return d.JoinGroup(ctx, argv[0])
			})
			if err != nil {
				return d.groupError(err, argv[0])
			}
			if asJSON {
				return printJSON(a.stdout, g)
			}
			fmt.Fprintf(a.stdout, "joined %s (%d members)\n", clean(g.Title), len(g.Members))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the group as JSON")
	return cmd
}

func (a *app) newGroupLeaveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "leave GROUP",
		Short: "Leave a group (its owner cannot)",
		Args:  args(1, "a group"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			if _, err := call(cmd.Context(), func(ctx context.Context) (chat.Group, error) {
				return d.LeaveGroup(ctx, argv[0])
			}); err != nil {
				return d.groupError(err, argv[0])
			}
			fmt.Fprintf(a.stdout, "left %s\n", clean(argv[0]))
			return nil
		},
	}
}

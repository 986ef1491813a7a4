package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/node/localapi"
)

func (a *app) newGroupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "group",
		Short: "Groups: create, members and roles, invitations, messages, replies, polls and pins",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(a.newGroupCreateCmd(), a.newGroupListCmd(), a.newGroupInfoCmd(), a.newGroupEditCmd("a group's (or channel's)"), a.newGroupPhotoCmd("a group's (or channel's)"), a.newGroupAddCmd(),
		a.newGroupSendCmd(), a.newGroupMessagesCmd(), a.newGroupRemoveCmd(), a.newGroupLeaveCmd(), a.newGroupJoinCmd(), a.newGroupDeclineCmd(), a.newGroupPollCmd(),
		a.newGroupPinCmd("pin", true, "Pin a message (members may unless the group's permissions say otherwise)"),
		a.newGroupPinCmd("unpin", false, "Unpin a message"),
		a.newGroupInviteCmd(),
		a.newGroupBanCmd("ban", true, "Ban an account: out of the group (a new key for the others) and not to be added again"),
		a.newGroupBanCmd("unban", false, "Lift a ban"),
		a.newGroupRoleCmd("promote", "admin", "Make a member an admin (the owner only)"),
		a.newGroupRoleCmd("demote", "member", "Make an admin a member again (the owner only)"),
		a.newGroupCallCmd())
	return cmd
}

// groupSender is how plain output names who wrote a group message: a
// contact's alias, or the name another member gives itself, marked.
func groupSender(m chat.GroupMessage) string {
	switch {
	case m.FromName == "":
		return m.From
	case m.FromContact:
		return m.FromName
	}
	return m.FromName + " (not a contact)"
}

// groupName is how a group is named in a line of output: its title, or
// its ID while the title has not arrived (a join by link gets the title
// from a member's node after the log).
func groupName(g chat.Group) string {
	if g.Title == "" {
		return "group " + g.ID + " (its title has not arrived yet)"
	}
	return clean(g.Title)
}

// plural is "1 thing" or "n things".
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return strconv.Itoa(n) + " " + thing + "s"
}

// groupError explains an error of a call about one group.
//
// The daemon's own words are kept where they say more than that the group
// is unknown (several groups share the title; no channel has that name).
func (d *daemon) groupError(err error, group string) error {
	if errors.Is(err, chat.ErrUnknownGroup) {
		var apiErr *localapi.Error
		if errors.As(err, &apiErr) && apiErr.Message != fmt.Sprintf("%v: %q", chat.ErrUnknownGroup, group) {
			return fmt.Errorf("%s (see 'peergram group list')", clean(apiErr.Message))
		}
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

// newGroupEditCmd is "group edit" and "channel edit": the title and
// description of what's names (a group, a channel).
func (a *app) newGroupEditCmd(what string) *cobra.Command {
	var asJSON bool
	var title, descr string
	cmd := &cobra.Command{
		Use:   "edit GROUP [--title TITLE] [--description TEXT]",
		Short: "Change " + what + " title or description (admins, or members the group's permissions allow; --description \"\" removes it)",
		Args:  args(1, "a group"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			var ch chat.GroupInfoChange
			if cmd.Flags().Changed("title") {
				ch.Title = &title
			}
			if cmd.Flags().Changed("description") {
				ch.Description = &descr
			}
			if ch.Title == nil && ch.Description == nil {
				return errors.New("nothing to change: give --title or --description")
			}
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			g, err := call(cmd.Context(), func(ctx context.Context) (chat.Group, error) {
				return d.SetGroupInfo(ctx, argv[0], ch)
			})
			if err != nil {
				return d.groupError(err, argv[0])
			}
			if asJSON {
				return printJSON(a.stdout, g)
			}
			fmt.Fprintf(a.stdout, "%s\nid: %s\n", clean(g.Title), g.ID)
			if g.Description != "" {
				fmt.Fprintf(a.stdout, "description: %s\n", clean(g.Description))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&title, "title", "", "the new title (1 to 128 bytes)")
	cmd.Flags().StringVar(&descr, "description", "", "the new description (at most 700 bytes; empty removes it)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the group as JSON")
	return cmd
}

// newGroupPhotoCmd is "group photo" and "channel photo": set, remove
// or save the photo of what's names.
func (a *app) newGroupPhotoCmd(what string) *cobra.Command {
	var asJSON, remove bool
	var save string
	cmd := &cobra.Command{
		Use:   "photo GROUP [IMAGE | --remove | --save FILE]",
		Short: "Set " + what + " photo from an image (cropped to a square, 640 px JPEG), remove it, or save it to FILE",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if n := len(argv) - 1 + btoi(remove) + btoi(save != ""); n != 1 {
				return errors.New("give one of: an image to set, --remove, --save FILE")
			}
			var img []byte
			if len(argv) == 2 {
				fi, err := os.Stat(argv[1])
				if err != nil {
					return err
				}
				if fi.Size() > localapi.MaxGroupPhotoBytes {
					return fmt.Errorf("%s is %d bytes; an image of at most %d", argv[1], fi.Size(), localapi.MaxGroupPhotoBytes)
				}
				if img, err = os.ReadFile(argv[1]); err != nil {
					return err
				}
			}
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			if save != "" {
				b, err := call(cmd.Context(), func(ctx context.Context) ([]byte, error) { return d.GroupPhoto(ctx, argv[0]) })
				if err != nil {
					return d.groupError(err, argv[0])
				}
				if err := os.WriteFile(save, b, 0o600); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "saved the photo (%d bytes, JPEG) to %s\n", len(b), save)
				return nil
			}
			g, err := call(cmd.Context(), func(ctx context.Context) (chat.Group, error) { return d.SetGroupPhoto(ctx, argv[0], img) })
			if err != nil {
				return d.groupError(err, argv[0])
			}
			if asJSON {
				return printJSON(a.stdout, g)
			}
			if g.Photo == "" {
				fmt.Fprintf(a.stdout, "%s: photo removed\n", clean(g.Title))
			} else {
				fmt.Fprintf(a.stdout, "%s\nphoto: %s\n", clean(g.Title), g.Photo)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&remove, "remove", false, "remove the photo")
	cmd.Flags().StringVar(&save, "save", "", "write the photo (JPEG) to this file")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the group as JSON (photo: the photo's ID)")
	return cmd
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
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
			if g.Description != "" {
				fmt.Fprintf(a.stdout, "description: %s\n", clean(g.Description))
			}
			if g.Photo != "" {
				fmt.Fprintf(a.stdout, "photo: %s\n", g.Photo)
			}
			if g.Channel {
				fmt.Fprintf(a.stdout, "channel: %s\n", plural(g.Subscribers, "subscriber"))
			}
			if g.PublicName != "" {
				fmt.Fprintf(a.stdout, "public name: @%s\n", g.PublicName)
			}
			for _, id := range g.Pinned {
				fmt.Fprintf(a.stdout, "pinned: %s\n", id)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ROLE\tNAME\tACCOUNT")
			for _, m := range g.Members {
				name := clean(m.Name)
				if !m.Contact && m.Name != "" {
					name += " (not a contact)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", m.Role, name, m.AccountID)
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
		Args:  argsAtLeast(2, "a group and at least one contact"),
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
			fmt.Fprintf(a.stdout, "%s has %s\n", groupName(g), plural(len(g.Members), "member"))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the group as JSON")
	return cmd
}

func (a *app) newGroupSendCmd() *cobra.Command {
	var asJSON bool
	var replyTo string
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
				return d.PostGroup(ctx, group, chat.GroupPost{Text: text, ReplyTo: replyTo})
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
	cmd.Flags().StringVar(&replyTo, "reply-to", "", "the ID of the message this one answers")
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
				who := groupSender(m)
				line := clean(m.Text)
				if m.Poll != nil {
					line = "poll " + pollSummary(m.Poll)
				}
				if m.ReplyTo != "" {
					line = "(reply to " + m.ReplyTo[:12] + ") " + line
				}
				if m.MentionsMe {
					line = "(mentions you) " + line
				}
				line = forwardMark(m.Forwarded) + line
				fmt.Fprintf(a.stdout, "%s  %s: %s\n", m.SentAt.Local().Format("2006-01-02 15:04"), clean(who), line)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the messages as a JSON array (id, group, from, from_name, outgoing, text, sent_at, reply_to, mentions, mentions_me, poll)")
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
			fmt.Fprintf(a.stdout, "%s has %s\n", groupName(g), plural(len(g.Members), "member"))
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
		Short: "Join by an invite link, or accept an invitation (group list shows them, role invited)",
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
			fmt.Fprintf(a.stdout, "joined %s (%s)\n", groupName(g), plural(len(g.Members), "member"))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the group as JSON")
	return cmd
}

func (a *app) newGroupDeclineCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "decline GROUP",
		Short: "Decline an invitation (group list shows them, role invited): it goes, and the group's members see you leave",
		Args:  args(1, "a group"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			if _, err := call(cmd.Context(), func(ctx context.Context) (struct{}, error) {
				return struct{}{}, d.DeclineGroup(ctx, argv[0])
			}); err != nil {
				return d.groupError(err, argv[0])
			}
			fmt.Fprintf(a.stdout, "declined %s\n", clean(argv[0]))
			return nil
		},
	}
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

// forwardMark marks a forward's line with where the forwarder says it
// came from ("" for a message that is not one).
func forwardMark(f *chat.Forward) string {
	if f == nil {
		return ""
	}
	return "[forwarded from " + clean(f.From) + "] "
}

// pollSummary is a poll on one line: question, options with votes.
func pollSummary(p *chat.Poll) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%q", clean(p.Question))
	for i, o := range p.Options {
		mine := ""
		if slices.Contains(p.MyVotes, i) {
			mine = "*"
		}
		fmt.Fprintf(&b, " [%d%s] %s: %d", i+1, mine, clean(o.Text), o.Votes)
	}
	fmt.Fprintf(&b, " (%d voters", p.Voters)
	if p.Closed {
		b.WriteString(", closed")
	}
	b.WriteString(")")
	return b.String()
}

func (a *app) newGroupInviteCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "invite",
		Short: "Invite links to a group: create, revoke (join with group join LINK)",
	}
	var expires time.Duration
	var asJSON bool
	create := &cobra.Command{
		Use:   "create GROUP",
		Short: "Make an invite link; prints it on the first line",
		Args:  args(1, "a group"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			inv, err := call(cmd.Context(), func(ctx context.Context) (chat.Invite, error) {
				return d.CreateInvite(ctx, argv[0], expires)
			})
			if err != nil {
				return d.groupError(err, argv[0])
			}
			if asJSON {
				return printJSON(a.stdout, inv)
			}
			fmt.Fprintln(a.stdout, inv.Link)
			if inv.Expires != nil {
				fmt.Fprintf(a.stdout, "expires %s\n", inv.Expires.Local().Format("2006-01-02 15:04"))
			}
			return nil
		},
	}
	create.Flags().DurationVar(&expires, "expires", 0, "how long the link works, e.g. 24h (0 = until revoked)")
	create.Flags().BoolVar(&asJSON, "json", false, "print the invite as JSON (link, group_id, expires)")
	revoke := &cobra.Command{
		Use:   "revoke GROUP LINK",
		Short: "Revoke an invite link",
		Args:  args(2, "a group and a link"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			g, err := call(cmd.Context(), func(ctx context.Context) (chat.Group, error) {
				return d.RevokeInvite(ctx, argv[0], argv[1])
			})
			if err != nil {
				return d.groupError(err, argv[0])
			}
			fmt.Fprintf(a.stdout, "revoked a link of %s\n", clean(g.Title))
			return nil
		},
	}
	cmd.AddCommand(create, revoke)
	return cmd
}

func (a *app) newGroupBanCmd(use string, ban bool, short string) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   use + " GROUP MEMBER",
		Short: short,
		Args:  args(2, "a group and a member (alias or account ID)"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			g, err := call(cmd.Context(), func(ctx context.Context) (chat.Group, error) {
				return d.BanGroupMember(ctx, argv[0], argv[1], ban)
			})
			if err != nil {
				return d.groupError(err, argv[0])
			}
			if asJSON {
				return printJSON(a.stdout, g)
			}
			fmt.Fprintf(a.stdout, "%s has %s, %d banned\n", groupName(g), plural(len(g.Members), "member"), len(g.Banned))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the group as JSON")
	return cmd
}

func (a *app) newGroupPinCmd(use string, pin bool, short string) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   use + " GROUP MESSAGE_ID",
		Short: short,
		Args:  args(2, "a group and a message ID"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			g, err := call(cmd.Context(), func(ctx context.Context) (chat.Group, error) {
				return d.PinGroupMessage(ctx, argv[0], argv[1], pin)
			})
			if err != nil {
				return d.groupError(err, argv[0])
			}
			if asJSON {
				return printJSON(a.stdout, g)
			}
			fmt.Fprintf(a.stdout, "%s has %s\n", groupName(g), plural(len(g.Pinned), "pinned message"))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the group as JSON")
	return cmd
}

func (a *app) newGroupPollCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "poll",
		Short: "Polls in a group: create, vote, close, results",
	}
	var multiple, asJSON bool
	create := &cobra.Command{
		Use:   "create GROUP QUESTION OPTION OPTION...",
		Short: "Post a poll (2 to 10 options); prints its ID",
		Args:  argsAtLeast(4, "a group, a question and at least two options"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			m, err := call(cmd.Context(), func(ctx context.Context) (chat.GroupMessage, error) {
				return d.CreatePoll(ctx, argv[0], chat.PollSpec{Question: argv[1], Options: argv[2:], Multiple: multiple})
			})
			if err != nil {
				return d.groupError(err, argv[0])
			}
			if asJSON {
				return printJSON(a.stdout, m)
			}
			fmt.Fprintln(a.stdout, m.ID)
			return nil
		},
	}
	create.Flags().BoolVar(&multiple, "multiple", false, "voters may pick several options")
	create.Flags().BoolVar(&asJSON, "json", false, "print the poll's message as JSON")
	cmd.AddCommand(create,
		a.newPollActionCmd("vote GROUP POLL_ID OPTION...", "Vote: options by number (from 1) or by their text; none takes your vote back", 2, true),
		a.newPollActionCmd("close GROUP POLL_ID", "Close a poll you created", 2, false),
		a.newPollActionCmd("results GROUP POLL_ID", "Show a poll's results", 2, false))
	return cmd
}

func (a *app) newPollActionCmd(use, short string, minArgs int, vote bool) *cobra.Command {
	var asJSON bool
	name := strings.Fields(use)[0]
	need := "a group and a poll ID"
	if vote {
		need = "a group and a poll ID, then the options (none takes your vote back)"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  argsAtLeast(minArgs, need),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if !vote && len(argv) != 2 {
				return fmt.Errorf("%s takes a group and a poll ID", name)
			}
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			group, poll := argv[0], argv[1]
			p, err := call(cmd.Context(), func(ctx context.Context) (chat.Poll, error) {
				switch name {
				case "vote":
					cur, err := d.GroupPoll(ctx, group, poll)
					if err != nil {
						return chat.Poll{}, err
					}
					opts, err := pollOptions(&cur, argv[2:])
					if err != nil {
						return chat.Poll{}, err
					}
					return d.VotePoll(ctx, group, poll, opts)
				case "close":
					return d.ClosePoll(ctx, group, poll)
				}
				return d.GroupPoll(ctx, group, poll)
			})
			if err != nil {
				return d.groupError(err, group)
			}
			if asJSON {
				return printJSON(a.stdout, p)
			}
			fmt.Fprintln(a.stdout, pollSummary(&p))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the poll as JSON (id, question, options with votes, multiple, closed, voters, my_votes)")
	return cmd
}

// pollOptions reads vote arguments: option numbers from 1, or texts.
func pollOptions(p *chat.Poll, args []string) ([]int, error) {
	out := []int{}
	for _, arg := range args {
		found := -1
		for i, o := range p.Options {
			if o.Text == arg {
				found = i
			}
		}
		if found < 0 {
			k, err := strconv.Atoi(arg)
			if err != nil || k < 1 || k > len(p.Options) {
				return nil, fmt.Errorf("%w: %q is not an option (1 to %d, or an option's text)", chat.ErrInvalid, arg, len(p.Options))
			}
			found = k - 1
		}
		out = append(out, found)
	}
	return out, nil
}

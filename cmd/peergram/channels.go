package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/peergram/peergram/node/chat"
)

// The channel commands: a channel is a group in which only admins post,
// so most of them are the group commands under names a channel's owner
// and subscribers use.

func (a *app) newChannelCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "channel",
		Short: "Channels: create, post, join by link, messages, info, edit, invite links, forward a post",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(a.newChannelCreateCmd(), a.newChannelPostCmd(), a.newChannelJoinCmd(), a.newChannelMessagesCmd(),
		a.newChannelInfoCmd(), a.newGroupEditCmd("a channel's"), a.newGroupPhotoCmd("a channel's"), a.newChannelListCmd(), a.newChannelInviteCmd(), a.newChannelForwardCmd(), a.newChannelPublishCmd())
	return cmd
}

// subscribers is a channel's subscriber count (its member count for a
// group).
func subscribers(g chat.Group) int {
	if g.Subscribers > 0 {
		return g.Subscribers
	}
	return len(g.Members)
}

// groupCall runs one call about a group and prints its result as JSON or
// with text.
func groupCall[T any](a *app, cmd *cobra.Command, group string, asJSON bool, f func(context.Context, *daemon) (T, error), text func(T)) error {
	d, err := a.connect()
	if err != nil {
		return err
	}
	defer d.Close()
	v, err := call(cmd.Context(), func(ctx context.Context) (T, error) { return f(ctx, d) })
	if err != nil {
		return d.groupError(err, group)
	}
	if asJSON {
		return printJSON(a.stdout, v)
	}
	text(v)
	return nil
}

func (a *app) newChannelCreateCmd() *cobra.Command {
	var asJSON bool
	var public string
	cmd := &cobra.Command{
		Use:   "create TITLE",
		Short: "Create a channel you own; prints its ID on the first line",
		Args:  args(1, "a title"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return groupCall(a, cmd, argv[0], asJSON, func(ctx context.Context, d *daemon) (chat.Group, error) {
				g, err := d.CreateChannel(ctx, argv[0])
				if err != nil || public == "" {
					return g, err
				}
				return d.PublishChannelName(ctx, g.ID, public)
			}, func(g chat.Group) {
				fmt.Fprintln(a.stdout, g.ID)
				fmt.Fprintf(a.stdout, "created channel %s\n", clean(g.Title))
				if g.PublicName != "" {
					fmt.Fprintf(a.stdout, "public: anyone joins with peergram channel join @%s\n", g.PublicName)
				}
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the channel as JSON (group_id, title, channel, subscribers, public_name, …)")
	cmd.Flags().StringVar(&public, "public", "", "make it public under this name (5-32 of a-z, 0-9, _) at your relays")
	return cmd
}

func (a *app) newChannelPublishCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "publish CHANNEL NAME",
		Short: "Make a channel public under a name at your relays (anyone joins with @NAME)",
		Args:  args(2, "a channel and a name"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return groupCall(a, cmd, argv[0], asJSON, func(ctx context.Context, d *daemon) (chat.Group, error) {
				return d.PublishChannelName(ctx, argv[0], argv[1])
			}, func(g chat.Group) {
				fmt.Fprintf(a.stdout, "%s is public: anyone joins with peergram channel join @%s\n", clean(g.Title), g.PublicName)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the channel as JSON")
	return cmd
}

func (a *app) newChannelPostCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "post CHANNEL TEXT|-",
		Short: "Post to a channel (its admins only; - reads stdin); prints the post's ID",
		Args:  args(2, "a channel and a text"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			text, err := a.messageText(argv[1])
			if err != nil {
				return err
			}
			return groupCall(a, cmd, argv[0], asJSON, func(ctx context.Context, d *daemon) (chat.GroupMessage, error) {
				g, err := d.Group(ctx, argv[0])
				if err != nil {
					return chat.GroupMessage{}, err
				}
				if !g.Channel {
					return chat.GroupMessage{}, fmt.Errorf("%s is a group, not a channel: post with 'peergram group send'", groupName(g))
				}
				return d.PostGroup(ctx, g.ID, chat.GroupPost{Text: text})
			}, func(m chat.GroupMessage) { fmt.Fprintln(a.stdout, m.ID) })
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the post as JSON")
	return cmd
}

func (a *app) newChannelJoinCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "join LINK|@NAME",
		Short: "Subscribe to a channel by its invite link or its public name",
		Args:  args(1, "an invite link or @name"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return groupCall(a, cmd, argv[0], asJSON, func(ctx context.Context, d *daemon) (chat.Group, error) {
				return d.JoinGroup(ctx, argv[0])
			}, func(g chat.Group) {
				fmt.Fprintf(a.stdout, "joined %s (%s)\n", groupName(g), plural(subscribers(g), "subscriber"))
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the channel as JSON")
	return cmd
}

func (a *app) newChannelMessagesCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "messages CHANNEL",
		Short: "Show a channel's posts, oldest first",
		Args:  args(1, "a channel"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return groupCall(a, cmd, argv[0], asJSON, func(ctx context.Context, d *daemon) ([]chat.GroupMessage, error) {
				ms, err := d.GroupMessages(ctx, argv[0])
				if ms == nil {
					ms = []chat.GroupMessage{}
				}
				return ms, err
			}, func(ms []chat.GroupMessage) {
				for _, m := range ms {
					fmt.Fprintf(a.stdout, "%s  %s%s\n", m.SentAt.Local().Format("2006-01-02 15:04"), forwardMark(m.Forwarded), clean(m.Text))
				}
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the posts as a JSON array (id, from, text, sent_at, …)")
	return cmd
}

func (a *app) newChannelInfoCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info CHANNEL",
		Short: "Show a channel: title, subscribers, your role",
		Args:  args(1, "a channel"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return groupCall(a, cmd, argv[0], asJSON, func(ctx context.Context, d *daemon) (chat.Group, error) {
				return d.Group(ctx, argv[0])
			}, func(g chat.Group) {
				kind := "channel"
				if !g.Channel {
					kind = "group (not a channel)"
				}
				fmt.Fprintf(a.stdout, "%s  %s\n%s, %s, your role: %s\n", g.ID, clean(g.Title), kind, plural(subscribers(g), "subscriber"), g.Role)
				if g.PublicName != "" {
					fmt.Fprintf(a.stdout, "public name: @%s\n", g.PublicName)
				}
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the channel as JSON (group_id, title, channel, subscribers, members, …)")
	return cmd
}

func (a *app) newChannelListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List your channels",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return groupCall(a, cmd, "", asJSON, func(ctx context.Context, d *daemon) ([]chat.Group, error) {
				gs, err := d.Groups(ctx)
				out := []chat.Group{}
				for _, g := range gs {
					if g.Channel {
						out = append(out, g)
					}
				}
				return out, err
			}, func(gs []chat.Group) {
				if len(gs) == 0 {
					fmt.Fprintln(a.stdout, "no channels yet")
				}
				for _, g := range gs {
					fmt.Fprintf(a.stdout, "%s  %s  (%s, %s)\n", g.ID, clean(g.Title), plural(g.Subscribers, "subscriber"), g.Role)
				}
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the channels as a JSON array")
	return cmd
}

func (a *app) newChannelInviteCmd() *cobra.Command {
	var asJSON bool
	var expires time.Duration
	cmd := &cobra.Command{
		Use:   "invite CHANNEL",
		Short: "Make an invite link to a channel; prints it on the first line",
		Args:  args(1, "a channel"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return groupCall(a, cmd, argv[0], asJSON, func(ctx context.Context, d *daemon) (chat.Invite, error) {
				return d.CreateInvite(ctx, argv[0], expires)
			}, func(inv chat.Invite) { fmt.Fprintln(a.stdout, inv.Link) })
		},
	}
	cmd.Flags().DurationVar(&expires, "expires", 0, "how long the link works (0 = until revoked)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the invite as JSON")
	return cmd
}

func (a *app) newChannelForwardCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "forward CHANNEL POST_ID CHAT",
		Short: "Forward a post into a chat (a contact or a group); prints the new message's ID",
		Args:  args(3, "a channel, a post ID and a chat"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return groupCall(a, cmd, argv[0], false, func(ctx context.Context, d *daemon) (string, error) {
				return d.ForwardGroupMessage(ctx, argv[0], argv[1], argv[2])
			}, func(id string) { fmt.Fprintln(a.stdout, id) })
		},
	}
	return cmd
}

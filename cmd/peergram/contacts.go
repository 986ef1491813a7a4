package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/peergram/peergram/node/chat"
)

func (a *app) newContactsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "contacts",
		Short: "Add, list, rename and remove contacts",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(a.newContactsAddCmd(), a.newContactsListCmd(), a.newContactsRenameCmd(), a.newContactsRemoveCmd())
	return cmd
}

func (a *app) newContactsRenameCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "rename CONTACT NEW_NAME",
		Short:             "Change a contact's local alias",
		Args:              args(2, "a contact and its new name"),
		ValidArgsFunction: a.completeContact,
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			c, err := call(cmd.Context(), func(ctx context.Context) (chat.Contact, error) {
				return d.RenameContact(ctx, argv[0], argv[1])
			})
			if err != nil {
				return d.contactError(err, argv[0])
			}
			if asJSON {
				return printJSON(a.stdout, c)
			}
			fmt.Fprintf(a.stdout, "renamed %s to %s\n", clean(c.AccountID), clean(c.Name))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the contact as JSON")
	return cmd
}

func (a *app) newContactsRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove CONTACT",
		Short: "Remove a contact (the chat stays; its later messages arrive as a request)",
		Args:  args(1, "a contact"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			if _, err := call(cmd.Context(), func(ctx context.Context) (struct{}, error) {
				return struct{}{}, d.RemoveContact(ctx, argv[0])
			}); err != nil {
				return d.contactError(err, argv[0])
			}
			fmt.Fprintf(a.stdout, "removed %s\n", clean(argv[0]))
			return nil
		},
		ValidArgsFunction: a.completeContact,
	}
}

func (a *app) newRequestsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "requests",
		Short: "Message requests: accounts that wrote to you and are not contacts",
		Long: `Accounts that are not your contacts can write to you; their messages wait as
message requests, and they get no delivered or read receipts until you accept.
'requests list' shows them, 'requests accept' makes one a contact (as
'contacts add' does), 'requests ignore' drops its later messages.`,
		Args: cobra.NoArgs,
	}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List message requests",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			rs, err := call(cmd.Context(), d.Requests)
			if err != nil {
				return d.explain(err)
			}
			if asJSON {
				if rs == nil {
					rs = []chat.Contact{}
				}
				return printJSON(a.stdout, rs)
			}
			if len(rs) == 0 {
				fmt.Fprintln(a.stderr, "no message requests")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME (NOT A CONTACT)\tACCOUNT ID")
			for _, c := range rs {
				fmt.Fprintf(tw, "%s\t%s\n", clean(c.Display), clean(c.AccountID))
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	var name string
	accept := &cobra.Command{
		Use:   "accept ACCOUNT_ID",
		Short: "Accept a message request: the account becomes a contact",
		Args:  args(1, "an account ID"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			c, err := call(cmd.Context(), func(ctx context.Context) (chat.Contact, error) {
				return d.AcceptRequest(ctx, argv[0], name)
			})
			if err != nil {
				return d.contactError(err, argv[0])
			}
			fmt.Fprintf(a.stdout, "added %s %s\n", clean(c.Name), clean(c.AccountID))
			return nil
		},
	}
	accept.Flags().StringVar(&name, "name", "", "local alias (default: the name the account gives itself)")
	ignore := &cobra.Command{
		Use:   "ignore ACCOUNT_ID",
		Short: "Ignore a message request: its later messages are dropped",
		Args:  args(1, "an account ID"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			if _, err := call(cmd.Context(), func(ctx context.Context) (struct{}, error) {
				return struct{}{}, d.IgnoreRequest(ctx, argv[0])
			}); err != nil {
				return d.contactError(err, argv[0])
			}
			fmt.Fprintf(a.stdout, "ignored %s\n", clean(argv[0]))
			return nil
		},
	}
	cmd.AddCommand(list, accept, ignore)
	return cmd
}

func (a *app) newContactsAddCmd() *cobra.Command {
	var (
		name   string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "add ACCOUNT_ID_OR_LINK",
		Short: "Add a contact by account ID or peergram:// link",
		Args:  args(1, "an account ID or peergram:// link"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			c, err := call(cmd.Context(), func(ctx context.Context) (chat.Contact, error) {
				return d.AddContact(ctx, argv[0], name)
			})
			if err != nil {
				return d.explain(err)
			}
			if asJSON {
				return printJSON(a.stdout, c)
			}
			fmt.Fprintf(a.stdout, "added %s %s\n", clean(c.Name), clean(c.AccountID))
			if c.Display != "" && c.Display != c.Name {
				fmt.Fprintf(a.stdout, "their own name: %s\n", clean(c.Display))
			}
			if c.Safety != "" {
				fmt.Fprintf(a.stdout, "safety number: %s\n", clean(c.Safety))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "local alias for the contact (default chosen by the node)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the contact as JSON")
	return cmd
}

func (a *app) newContactsListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List contacts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			cs, err := call(cmd.Context(), d.Contacts)
			if err != nil {
				return d.explain(err)
			}
			if asJSON {
				if cs == nil {
					cs = []chat.Contact{}
				}
				return printJSON(a.stdout, cs)
			}
			if len(cs) == 0 {
				fmt.Fprintln(a.stderr, "no contacts yet; add one with 'peergram contacts add ACCOUNT_ID'")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tACCOUNT ID\tDEVICES")
			for _, c := range cs {
				fmt.Fprintf(tw, "%s\t%s\t%d\n", clean(c.Name), clean(c.AccountID), c.Devices)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// completeContact completes a CONTACT argument with the aliases the running
// daemon knows; nothing if no daemon answers.
func (a *app) completeContact(cmd *cobra.Command, argv []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(argv) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	d, err := a.connect()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), idProbeTimeout)
	defer cancel()
	cs, err := d.Contacts(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []cobra.Completion
	for _, c := range cs {
		names = append(names, cobra.CompletionWithDesc(c.Name, c.AccountID))
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

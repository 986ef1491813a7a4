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
		Short: "Add and list contacts",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(a.newContactsAddCmd(), a.newContactsListCmd())
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

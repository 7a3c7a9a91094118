package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/abusemilter/abusemilter/internal/cli"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// complaintsOptions are the options of "abusectl complaints".
type complaintsOptions struct {
	Env          *env
	Account      string
	Unattributed bool
	JSON         bool
}

func newComplaintsCommand(g *globalOptions) *cobra.Command {
	var o complaintsOptions
	cmd := &cobra.Command{
		Use:   "complaints ACCOUNT|--unattributed [--json]",
		Short: "list the complaints about an account's mail, or those no account could be found for",
		Long: `Lists the complaints recorded against an account (within desk.retention, or
the complaint window when longer), newest first: when, the feedback type,
who reported it, the original's Message-ID, queue id and instance, and how
it was attributed. --unattributed lists the complaints that no account
could be found for, with the reason.`,
		Example: "  abusectl complaints alice\n  abusectl complaints --unattributed --json",
		Args:    maxArgs(1, "one ACCOUNT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, e *env, out io.Writer) error {
				o.Env = e
				if len(args) == 1 {
					o.Account = args[0]
				}
				return runComplaints(ctx, o, out)
			})
		},
	}
	cmd.Flags().BoolVar(&o.Unattributed, "unattributed", false, "list the complaints no account could be found for")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON (fields in docs/abusectl.md)")
	return cmd
}

func runComplaints(ctx context.Context, o complaintsOptions, out io.Writer) error {
	if (o.Account == "") == !o.Unattributed {
		return cli.Usagef("complaints: give an ACCOUNT or --unattributed (not both)")
	}
	account, err := optionalAccountName(o.Account)
	if err != nil {
		return err
	}
	admin, err := o.Env.store(ctx)
	if err != nil {
		return err
	}
	list, err := admin.Complaints(ctx, account)
	if err != nil {
		return o.Env.storeError(err)
	}
	v := struct {
		Complaints []complaintJSON `json:"complaints"`
	}{Complaints: []complaintJSON{}}
	for _, c := range list {
		v.Complaints = append(v.Complaints, complaintView(c))
	}
	if o.JSON {
		return writeJSON(out, v)
	}
	if len(list) == 0 {
		what := fmt.Sprintf("for account %q", account)
		if o.Unattributed {
			what = "unattributed"
		}
		_, err := fmt.Fprintf(out, "no complaint %s\n", what)
		return err
	}
	var t table
	last := "ATTRIBUTED BY"
	if o.Unattributed {
		last = "WHY UNATTRIBUTED"
	}
	t.header("WHEN", "TYPE", "REPORTER", "MESSAGE-ID", "QUEUE ID", "SUBJECT", last)
	for _, c := range v.Complaints {
		why := c.AttributedBy
		if o.Unattributed {
			why = c.Reason
		}
		t.add(plain, clock(parseJSONTime(c.At)), c.Type, cell(c.Reporter, 40), cell(c.MessageID, 50), cell(c.QueueID, 14), cell(c.Subject, 40), why)
	}
	return t.write(out, "", o.Env.color)
}

// complaintView is a recorded complaint as the JSON output shows it.
func complaintView(c ratelimit.Complaint) complaintJSON {
	return complaintJSON{ID: c.ID, Account: c.Account, AttributedBy: c.AttributedBy, Reason: c.Reason, Type: c.Type,
		Reporter: c.Reporter, MessageID: c.MessageID, QueueID: c.QueueID, Instance: c.Instance, Subject: c.Subject, At: jsonTime(c.At)}
}

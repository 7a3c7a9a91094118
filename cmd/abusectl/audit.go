package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/abusemilter/abusemilter/internal/cli"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// auditOptions are the options of "abusectl audit".
type auditOptions struct {
	Env     *env
	Actor   string
	Subject string
	Limit   int
	Offset  int
	JSON    bool
}

func newAuditCommand(g *globalOptions) *cobra.Command {
	var o auditOptions
	cmd := &cobra.Command{
		Use:   "audit [--actor USER] [--subject SUBJECT] [--limit N] [--offset N] [--json]",
		Short: "print the audit log of every subject, newest first",
		Long: `Prints the admin actions on every subject, newest first: lock, unlock, reset,
override, exempt, release and purge requests and their outcomes, complaints;
from abusectl (the OS user), the console ("NAME (console)"), the complaint
pipe and the MTA instances. The store keeps the newest 10000 entries; status
shows a subject's own latest ones.

--actor keeps the entries by one user (exactly as recorded), --subject those
of one subject (ACCOUNT, sender:ADDR, client:IP, as status reads it);
--offset skips that many matching entries, for the next page.`,
		Example: "  abusectl audit\n  abusectl audit --actor 'alice (console)' --limit 20\n  abusectl audit --subject sender:news@shop.example --json",
		Args:    exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, e *env, out io.Writer) error {
				o.Env = e
				return runAudit(ctx, o, out)
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Actor, "actor", "", "only the entries by this user")
	fl.StringVar(&o.Subject, "subject", "", "only the entries of this subject")
	fl.IntVar(&o.Limit, "limit", 50, "print at most N entries")
	fl.IntVar(&o.Offset, "offset", 0, "skip the newest N matching entries")
	fl.BoolVar(&o.JSON, "json", false, "print JSON (fields in docs/abusectl.md)")
	return cmd
}

// auditLogJSON is the --json output of audit.
type auditLogJSON struct {
	Entries []auditLogEntryJSON `json:"entries"`
}

type auditLogEntryJSON struct {
	Subject string `json:"subject"`
	auditJSON
}

func runAudit(ctx context.Context, o auditOptions, out io.Writer) error {
	if o.Limit < 1 || o.Limit > ratelimit.AuditLogKeep {
		return cli.Usagef("--limit %d: want 1 to %d", o.Limit, ratelimit.AuditLogKeep)
	}
	if o.Offset < 0 {
		return cli.Usagef("--offset %d: want 0 or more", o.Offset)
	}
	q := ratelimit.AuditQuery{Actor: o.Actor, Offset: o.Offset, Limit: o.Limit}
	if o.Subject != "" {
		s, err := parseSubject(o.Subject)
		if err != nil {
			return err
		}
		q.Subject = s
	}
	admin, err := o.Env.store(ctx)
	if err != nil {
		return err
	}
	entries, err := admin.AuditLog(ctx, q)
	if err != nil {
		return o.Env.storeError(err)
	}
	if o.JSON {
		v := auditLogJSON{Entries: []auditLogEntryJSON{}}
		for _, a := range entries {
			v.Entries = append(v.Entries, auditLogEntryJSON{Subject: a.Subject.String(),
				auditJSON: auditJSON{At: jsonTime(a.At), By: a.By, Action: a.Action, Detail: a.Detail}})
		}
		return writeJSON(out, v)
	}
	if len(entries) == 0 {
		_, err := fmt.Fprintln(out, "no audit entry matches")
		return err
	}
	var t table
	t.header("WHEN", "BY", "ACTION", "SUBJECT", "DETAIL")
	for _, a := range entries {
		t.add(plain, clock(a.At), a.By, a.Action, a.Subject.String(), a.Detail)
	}
	return t.write(out, "", o.Env.color)
}

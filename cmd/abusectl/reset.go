package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/abusemilter/abusemilter/ratelimit"
)

// resetOptions are the options of "abusectl reset".
type resetOptions struct {
	Env     *env
	Subject string
	Limit   string // empty: every counter, and an account's strikes
}

func newResetCommand(g *globalOptions) *cobra.Command {
	var o resetOptions
	cmd := &cobra.Command{
		Use:   "reset ACCOUNT|ADDRESS|sender:ADDR|client:IP [--limit NAME]",
		Short: "clear counters (and an account's strikes)",
		Long: `Clears what the subject has used, so its next message starts from zero.
Without --limit every counter of the subject is cleared, and for an account
its strikes too; with --limit only that limit's counter. A lock stays: use
unlock.

A bare address is the account of that name or the sender, whichever of
the two exists (see status); when both or neither do, nothing is reset and
the error says what each would clear: name it as acct:ADDR or sender:ADDR.

Limit names: account_messages, account_recipients, account_new_recipients,
sender_messages, client_messages, the rule IDs of replies (ACCOUNT_MSG_RATE,
...), or short names: messages, recipients, new_recipients.`,
		Example: `  abusectl reset alice
  abusectl reset alice --limit recipients
  abusectl reset sender:newsletter@example.com`,
		Args: exactArgs(1, "one ACCOUNT, sender:ADDR or client:IP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, e *env, out io.Writer) error {
				o.Env, o.Subject = e, args[0]
				return runReset(ctx, o, out)
			})
		},
	}
	cmd.Flags().StringVar(&o.Limit, "limit", "", "clear only this limit's counter (NAME)")
	must(cmd.RegisterFlagCompletionFunc("limit", completeLimits))
	return cmd
}

func runReset(ctx context.Context, o resetOptions, out io.Writer) error {
	s, bare, err := bareAddress(o.Subject)
	if err != nil {
		return err
	}
	if bare {
		command := "reset"
		if o.Limit != "" {
			command += " --limit " + o.Limit
		}
		s, err = resolveChange(ctx, o.Env, o.Subject, change{
			command: command,
			decides: o.Limit != "",
			applies: func(s ratelimit.Subject) bool { _, err := parseLimit(s, o.Limit); return o.Limit == "" || err == nil },
			would: func(s ratelimit.Subject) string {
				dim, _ := parseLimit(s, o.Limit)
				return "clear " + resetWhat(s, dim) + " of " + s.String()
			},
		})
		if err != nil {
			return err
		}
	}
	var dim ratelimit.Dimension
	if o.Limit != "" {
		if dim, err = parseLimit(s, o.Limit); err != nil {
			return err
		}
	}
	admin, err := o.Env.store(ctx)
	if err != nil {
		return err
	}
	if err := admin.Reset(ctx, s, dim, o.Env.user); err != nil {
		return o.Env.storeError(err)
	}
	_, err = fmt.Fprintf(out, "reset %s of %s\n", resetWhat(s, dim), s)
	return err
}

// resetWhat says what a reset of s clears.
func resetWhat(s ratelimit.Subject, dim ratelimit.Dimension) string {
	what := "every counter"
	if dim != "" {
		what = "the " + string(dim) + " counter"
	} else if s.Kind == ratelimit.KindAccount {
		what += " and the strikes"
	}
	return what
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/abusemilter/abusemilter/ratelimit"
)

// resetOptions are the options of "abusectl reset".
type resetOptions struct {
	Env     *env
	Subject string
	Limit   string // empty: every counter, and an account's strikes
}

func resetCommand() *command {
	return &command{
		name:     "reset",
		synopsis: "ACCOUNT|sender:ADDR|client:IP [--limit NAME]",
		summary:  "clear counters (and an account's strikes)",
		details: `Clears what the subject has used, so its next message starts from zero.
Without --limit every counter of the subject is cleared, and for an account
its strikes too; with --limit only that limit's counter. A lock stays: use
unlock.

Limit names: account_messages, account_recipients, account_new_recipients,
sender_messages, client_messages, the rule IDs of replies (ACCOUNT_MSG_RATE,
...), or short names: messages, recipients, new_recipients.`,
		examples: []string{
			"abusectl reset alice",
			"abusectl reset alice --limit recipients",
			"abusectl reset sender:newsletter@example.com",
		},
		setup: func(fs *flag.FlagSet) runner {
			var o resetOptions
			fs.StringVar(&o.Limit, "limit", "", "clear only this limit's counter (`NAME`)")
			return func(ctx context.Context, e *env, args []string, out io.Writer) error {
				if len(args) != 1 {
					return usageErrorf("reset takes one ACCOUNT, sender:ADDR or client:IP, got %d arguments", len(args))
				}
				o.Env, o.Subject = e, args[0]
				return runReset(ctx, o, out)
			}
		},
	}
}

func runReset(ctx context.Context, o resetOptions, out io.Writer) error {
	s, err := parseSubject(o.Subject)
	if err != nil {
		return err
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
	what := "every counter"
	if dim != "" {
		what = "the " + string(dim) + " counter"
	} else if s.Kind == ratelimit.KindAccount {
		what += " and the strikes"
	}
	_, err = fmt.Fprintf(out, "reset %s of %s\n", what, s)
	return err
}

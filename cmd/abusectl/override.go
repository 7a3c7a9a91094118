package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/abusemilter/abusemilter/internal/cli"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// overrideOptions are the options of "abusectl override".
type overrideOptions struct {
	Env     *env
	Subject string
	Limit   string
	Rate    string // "500/1h" or "20/10m,500/24h"
	For     time.Duration
	Remove  bool
}

func newOverrideCommand(g *globalOptions) *cobra.Command {
	var o overrideOptions
	cmd := &cobra.Command{
		Use:   "override ACCOUNT|ADDRESS|sender:ADDR|client:IP --limit NAME (--rate N/WINDOW[,N/WINDOW] [--for DURATION] | --remove)",
		Short: "replace (or restore) the rates of one limit for one subject",
		Long: `Replaces the configured rates of one limit for one subject, e.g. to let a
customer send a legitimate mailing, or to throttle a suspicious one. The
milters apply it to the subject's very next message. --for makes it expire;
--remove restores the configured rates (exit 1 when there is no override).

A bare address is resolved as for reset: nothing is changed when it could
be either the account or the sender of that name. Limit names as for reset.
Several windows: --rate 20/10m,500/24h.`,
		Example: `  abusectl override alice --limit messages --rate 500/1h --for 24h
  abusectl override sender:shop@example.com --limit sender_messages --rate 50/1h
  abusectl override alice --limit messages --remove`,
		Args: exactArgs(1, "one ACCOUNT, sender:ADDR or client:IP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, e *env, out io.Writer) error {
				o.Env, o.Subject = e, args[0]
				return runOverride(ctx, o, out)
			})
		},
	}
	cmd.Flags().StringVar(&o.Limit, "limit", "", "which limit (NAME, required)")
	cmd.Flags().StringVar(&o.Rate, "rate", "", "new rates, N/WINDOW[,N/WINDOW...]")
	cli.DurationVar(cmd.Flags(), &o.For, "for", 0, "expire after this long (default: until removed)")
	cmd.Flags().BoolVar(&o.Remove, "remove", false, "remove the override (restore the configured rates)")
	must(cmd.RegisterFlagCompletionFunc("limit", completeLimits))
	must(cmd.RegisterFlagCompletionFunc("rate", cobra.NoFileCompletions))
	return cmd
}

func runOverride(ctx context.Context, o overrideOptions, out io.Writer) error {
	s, bare, err := bareAddress(o.Subject)
	if err != nil {
		return err
	}
	if o.Limit == "" {
		return cli.Usagef("override: --limit is required")
	}
	if !bare {
		if _, err := parseLimit(s, o.Limit); err != nil {
			return err
		}
	}
	if o.Remove == (o.Rate != "") {
		return cli.Usagef("override: give either --rate or --remove")
	}
	if err := nonNegative("for", o.For); err != nil {
		return err
	}
	if o.Remove && o.For != 0 {
		return cli.Usagef("override: --for goes with --rate, not --remove")
	}
	var rates []ratelimit.Rate
	if !o.Remove {
		if rates, err = parseRates(o.Rate); err != nil {
			return err
		}
	}
	if bare {
		command := "override --limit " + o.Limit + " --rate " + o.Rate
		if o.Remove {
			command = "override --limit " + o.Limit + " --remove"
		}
		s, err = resolveChange(ctx, o.Env, o.Subject, change{
			command: command,
			decides: o.Limit != "",
			applies: func(s ratelimit.Subject) bool { _, err := parseLimit(s, o.Limit); return err == nil },
			would: func(s ratelimit.Subject) string {
				dim, _ := parseLimit(s, o.Limit)
				if o.Remove {
					return fmt.Sprintf("remove the override of %s for %s", dim, s)
				}
				return fmt.Sprintf("set %s of %s to %s %s", dim, s, o.Rate, forText(o.For))
			},
		})
		if err != nil {
			return err
		}
	}
	dim, err := parseLimit(s, o.Limit)
	if err != nil {
		return err
	}
	admin, err := o.Env.store(ctx)
	if err != nil {
		return err
	}
	if o.Remove {
		st, err := admin.Status(ctx, s)
		if err != nil {
			return o.Env.storeError(err)
		}
		found := false
		for _, ov := range st.Overrides {
			found = found || ov.Dimension == dim
		}
		if !found {
			return &notFoundError{fmt.Sprintf("%s has no override of %s", s, dim)}
		}
		if err := admin.SetOverride(ctx, s, dim, nil, 0, o.Env.user); err != nil {
			return o.Env.storeError(err)
		}
		_, err = fmt.Fprintf(out, "removed the override of %s for %s: the configured rates apply\n", dim, s)
		return err
	}
	if err := admin.SetOverride(ctx, s, dim, rates, o.For, o.Env.user); err != nil {
		return o.Env.storeError(err)
	}
	var parts []string
	for _, r := range rates {
		parts = append(parts, r.String())
	}
	_, err = fmt.Fprintf(out, "%s of %s is now %s %s\n", dim, s, strings.Join(parts, ","), forText(o.For))
	return err
}

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

// lockOptions are the options of "abusectl lock".
type lockOptions struct {
	Env     *env
	Account string
	Reason  string
	For     time.Duration // 0: until unlocked
}

func newLockCommand(g *globalOptions) *cobra.Command {
	var o lockOptions
	cmd := &cobra.Command{
		Use:   "lock ACCOUNT|ADDRESS --reason TEXT [--for DURATION]",
		Short: "lock an account: its mail is refused until unlocked (or for a while)",
		Long: `Locks an account. The milters refuse its next message (defer or reject, as
strikes.lock_action says) with rule ACCOUNT_LOCKED, until "abusectl unlock"
or until --for has passed. The reason and your user name are recorded in
the audit log and shown by status and locked.

A bare address (carol@example.com) is the account of that name when one
exists (counters, a lock, strikes, or a config entry: an ad-hoc account of
a login that is an address, a sender-login map account); otherwise nothing
is locked and the error says so. acct:carol@example.com locks it anyway.`,
		Example: `  abusectl lock alice --reason "phishing campaign, ticket 4711"
  abusectl lock alice --reason "compromised password" --for 24h`,
		Args: exactArgs(1, "one ACCOUNT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, e *env, out io.Writer) error {
				o.Env, o.Account = e, args[0]
				return runLock(ctx, o, out)
			})
		},
	}
	cmd.Flags().StringVar(&o.Reason, "reason", "", "why (required; shown to admins, not in SMTP replies)")
	cli.DurationVar(cmd.Flags(), &o.For, "for", 0, "lock for this long (e.g. 2h, 7d; default until unlocked)")
	return cmd
}

// optionalAccountName is accountName for an optional argument: "" stays
// "" (every account).
func optionalAccountName(arg string) (string, error) {
	if arg == "" {
		return "", nil
	}
	return accountName(arg)
}

// accountName reads an account argument: a bare name or acct:NAME.
func accountName(arg string) (string, error) {
	s, err := parseSubject(arg)
	if err != nil {
		return "", err
	}
	if s.Kind != ratelimit.KindAccount {
		return "", cli.Usagef("%q is a %s: only accounts can be locked", arg, s.Kind)
	}
	return s.Name, nil
}

func runLock(ctx context.Context, o lockOptions, out io.Writer) error {
	if _, _, err := bareAddress(o.Account); err != nil {
		return err
	}
	if strings.TrimSpace(o.Reason) == "" {
		return cli.Usagef("lock: --reason is required (it is what the next admin reads)")
	}
	if err := nonNegative("for", o.For); err != nil {
		return err
	}
	account, err := accountArg(ctx, o.Env, o.Account, fmt.Sprintf("lock --reason %q", o.Reason), func(a string) string {
		return fmt.Sprintf("lock account %q %s", a, forText(o.For))
	})
	if err != nil {
		return err
	}
	admin, err := o.Env.store(ctx)
	if err != nil {
		return err
	}
	if err := admin.Lock(ctx, account, o.Reason, o.Env.user, o.For); err != nil {
		return o.Env.storeError(err)
	}
	_, err = fmt.Fprintf(out, "locked account %q %s: %q (by %s)\n", account, forText(o.For), o.Reason, o.Env.user)
	return err
}

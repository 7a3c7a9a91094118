package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/abusemilter/abusemilter/ratelimit"
)

// lockOptions are the options of "abusectl lock".
type lockOptions struct {
	Env     *env
	Account string
	Reason  string
	For     time.Duration // 0: until unlocked
}

func lockCommand() *command {
	return &command{
		name:     "lock",
		synopsis: "ACCOUNT --reason TEXT [--for DURATION]",
		summary:  "lock an account: its mail is refused until unlocked (or for a while)",
		details: `Locks an account. The milters refuse its next message (defer or reject, as
strikes.lock_action says) with rule ACCOUNT_LOCKED, until "abusectl unlock"
or until --for has passed. The reason and your user name are recorded in
the audit log and shown by status and locked.`,
		examples: []string{
			`abusectl lock alice --reason "phishing campaign, ticket 4711"`,
			`abusectl lock alice --reason "compromised password" --for 24h`,
		},
		setup: func(fs *flag.FlagSet) runner {
			var o lockOptions
			fs.StringVar(&o.Reason, "reason", "", "why (required; shown to admins, not in SMTP replies)")
			fs.Var(durationValue{&o.For}, "for", "lock for this `duration` (e.g. 2h, 7d; default until unlocked)")
			return func(ctx context.Context, e *env, args []string, out io.Writer) error {
				if len(args) != 1 {
					return usageErrorf("lock takes one ACCOUNT, got %d arguments", len(args))
				}
				o.Env, o.Account = e, args[0]
				return runLock(ctx, o, out)
			}
		},
	}
}

// accountName reads an account argument: a bare name or acct:NAME.
func accountName(arg string) (string, error) {
	s, err := parseSubject(arg)
	if err != nil {
		return "", err
	}
	if s.Kind != ratelimit.KindAccount {
		return "", usageErrorf("%q is a %s: only accounts can be locked", arg, s.Kind)
	}
	return s.Name, nil
}

func runLock(ctx context.Context, o lockOptions, out io.Writer) error {
	account, err := accountName(o.Account)
	if err != nil {
		return err
	}
	if strings.TrimSpace(o.Reason) == "" {
		return usageErrorf("lock: --reason is required (it is what the next admin reads)")
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

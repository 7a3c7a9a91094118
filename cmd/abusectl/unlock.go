package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/abusemilter/abusemilter/ratelimit"
)

// unlockOptions are the options of "abusectl unlock".
type unlockOptions struct {
	Env     *env
	Account string
}

func unlockCommand() *command {
	return &command{
		name:     "unlock",
		synopsis: "ACCOUNT",
		summary:  "unlock a locked account (and clear its strikes)",
		details: `Removes the lock of an account and clears its strikes, so that the next
refusal does not lock it again at once. The milters accept its next message
(subject to the limits). Fails (exit 1) when the account is not locked.`,
		examples: []string{"abusectl unlock alice"},
		setup: func(fs *flag.FlagSet) runner {
			var o unlockOptions
			return func(ctx context.Context, e *env, args []string, out io.Writer) error {
				if len(args) != 1 {
					return usageErrorf("unlock takes one ACCOUNT, got %d arguments", len(args))
				}
				o.Env, o.Account = e, args[0]
				return runUnlock(ctx, o, out)
			}
		},
	}
}

func runUnlock(ctx context.Context, o unlockOptions, out io.Writer) error {
	account, err := accountName(o.Account)
	if err != nil {
		return err
	}
	admin, err := o.Env.store(ctx)
	if err != nil {
		return err
	}
	st, err := admin.Status(ctx, ratelimit.Account(account))
	if err != nil {
		return o.Env.storeError(err)
	}
	if st.Lock == nil {
		return &notFoundError{fmt.Sprintf("account %q is not locked (strikes: %d; to clear them use reset)", account, st.Strikes)}
	}
	if err := admin.Unlock(ctx, account, o.Env.user); err != nil {
		return o.Env.storeError(err)
	}
	_, err = fmt.Fprintf(out, "unlocked account %q (was locked by %s: %q); strikes cleared\n", account, st.Lock.By, st.Lock.Reason)
	return err
}

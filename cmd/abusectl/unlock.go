package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/abusemilter/abusemilter/ratelimit"
)

// unlockOptions are the options of "abusectl unlock".
type unlockOptions struct {
	Env     *env
	Account string
}

func newUnlockCommand(g *globalOptions) *cobra.Command {
	var o unlockOptions
	return &cobra.Command{
		Use:   "unlock ACCOUNT|ADDRESS",
		Short: "unlock a locked account (and clear its strikes)",
		Long: `Removes the lock of an account and clears its strikes, so that the next
refusal does not lock it again at once. The milters accept its next message
(subject to the limits). Fails (exit 1) when the account is not locked.
A bare address is the account of that name, as for lock.`,
		Example: "  abusectl unlock alice",
		Args:    exactArgs(1, "one ACCOUNT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, e *env, out io.Writer) error {
				o.Env, o.Account = e, args[0]
				return runUnlock(ctx, o, out)
			})
		},
	}
}

func runUnlock(ctx context.Context, o unlockOptions, out io.Writer) error {
	account, err := accountArg(ctx, o.Env, o.Account, "unlock", func(a string) string {
		return fmt.Sprintf("unlock account %q and clear its strikes", a)
	})
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

package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/abusemilter/abusemilter/internal/cli"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// unlockOptions are the options of "abusectl unlock".
type unlockOptions struct {
	Env     *env
	Account string
	// ReleaseHeld and PurgeHeld also release (purge) the messages held
	// for the account; Wait bounds the wait for their outcomes.
	ReleaseHeld, PurgeHeld bool
	Wait                   time.Duration
}

func newUnlockCommand(g *globalOptions) *cobra.Command {
	var o unlockOptions
	cmd := &cobra.Command{
		Use:   "unlock ACCOUNT|ADDRESS [--release-held|--purge-held]",
		Short: "unlock a locked account (and clear its strikes)",
		Long: `Removes the lock of an account and clears its strikes, so that the next
refusal does not lock it again at once. The milters accept its next message
(subject to the limits). Fails (exit 1) when the account is not locked.

With --release-held (or --purge-held) the messages held for the account
are then released (purged) as "abusectl release --account" does.
A bare address is the account of that name, as for lock.`,
		Example: "  abusectl unlock alice\n  abusectl unlock alice --release-held",
		Args:    exactArgs(1, "one ACCOUNT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, e *env, out io.Writer) error {
				o.Env, o.Account = e, args[0]
				return runUnlock(ctx, o, out)
			})
		},
	}
	cmd.Flags().BoolVar(&o.ReleaseHeld, "release-held", false, "also release the messages held for the account")
	cmd.Flags().BoolVar(&o.PurgeHeld, "purge-held", false, "also purge the messages held for the account")
	cli.DurationVar(cmd.Flags(), &o.Wait, "wait", 30*time.Second, "wait this long for the held messages' outcomes")
	cmd.MarkFlagsMutuallyExclusive("release-held", "purge-held")
	return cmd
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
	if _, err := fmt.Fprintf(out, "unlocked account %q (was locked by %s: %q); strikes cleared\n", account, st.Lock.By, st.Lock.Reason); err != nil {
		return err
	}
	if !o.ReleaseHeld && !o.PurgeHeld {
		return nil
	}
	action := ratelimit.Release
	if o.PurgeHeld {
		action = ratelimit.Purge
	}
	return runHeldAction(ctx, heldActionOptions{Env: o.Env, Action: action, Account: account, Wait: o.Wait}, out)
}

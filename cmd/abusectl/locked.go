package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/abusemilter/abusemilter/ratelimit"
)

// lockedOptions are the options of "abusectl locked".
type lockedOptions struct {
	Env  *env
	JSON bool
}

func newLockedCommand(g *globalOptions) *cobra.Command {
	var o lockedOptions
	cmd := &cobra.Command{
		Use:   "locked [--json]",
		Short: "list every locked account with reason, who locked it and for how long",
		Long: `Lists the accounts that are locked now: by strikes ("auto") or by an admin,
with the reason, when and how long ago, and when the lock ends.`,
		Example: "  abusectl locked\n  abusectl locked --json",
		Args:    exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, e *env, out io.Writer) error {
				o.Env = e
				return runLocked(ctx, o, out)
			})
		},
	}
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON (fields in docs/abusectl.md)")
	return cmd
}

// lockedJSON is the --json output of locked.
type lockedJSON struct {
	Locked []lockJSON `json:"locked"`
}

func runLocked(ctx context.Context, o lockedOptions, out io.Writer) error {
	admin, err := o.Env.store(ctx)
	if err != nil {
		return err
	}
	locked, err := admin.Locked(ctx)
	if err != nil {
		return o.Env.storeError(err)
	}
	now := o.Env.now()
	v := lockedJSON{Locked: []lockJSON{}}
	for _, la := range locked {
		v.Locked = append(v.Locked, lockView(la, now))
	}
	if o.JSON {
		return writeJSON(out, v)
	}
	if len(locked) == 0 {
		_, err := fmt.Fprintln(out, "no account is locked")
		return err
	}
	var t table
	t.header("ACCOUNT", "BY", "SINCE", "AGE", "UNTIL", "REASON")
	for _, la := range locked {
		until := "removed"
		if !la.Lock.Until.IsZero() {
			until = clock(la.Lock.Until)
		}
		t.add(bad, la.Account, la.Lock.By, clock(la.Lock.At), short(now.Sub(la.Lock.At)), until, la.Lock.Reason)
	}
	return t.write(out, "", o.Env.color)
}

func lockView(la ratelimit.LockedAccount, now time.Time) lockJSON {
	return lockJSON{Account: la.Account, Reason: la.Lock.Reason, By: la.Lock.By, At: jsonTime(la.Lock.At),
		AgeSeconds: seconds(now.Sub(la.Lock.At)), Until: jsonTime(la.Lock.Until)}
}

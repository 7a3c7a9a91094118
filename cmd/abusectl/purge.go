package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/abusemilter/abusemilter/ratelimit"
)

func newPurgeCommand(g *globalOptions) *cobra.Command {
	o := heldActionOptions{Action: ratelimit.Purge}
	cmd := &cobra.Command{
		Use:   "purge QUEUEID...|--account ACCOUNT [--wait DURATION]",
		Short: "purge held messages: the instance holding each runs desk.purge_command",
		Long: `Asks the milter instance that held each message to delete it: that instance
runs desk.purge_command on its own host (postsuper -d QUEUEID hold by
default: only the hold queue is touched) and reports the outcome, which is
printed here. A message that had already left the hold queue, or that no
instance answered for within --wait, is reported so, and the command exits
1. The request and its outcome are recorded in the account's audit log with
your user name.`,
		Example: "  abusectl purge 4Xyz1abC2\n  abusectl purge --account alice",
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, e *env, out io.Writer) error {
				o.Env, o.QueueIDs = e, args
				return runHeldAction(ctx, o, out)
			})
		},
	}
	heldActionFlags(cmd, &o)
	return cmd
}

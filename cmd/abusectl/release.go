package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/abusemilter/abusemilter/ratelimit"
)

func newReleaseCommand(g *globalOptions) *cobra.Command {
	o := heldActionOptions{Action: ratelimit.Release}
	cmd := &cobra.Command{
		Use:   "release QUEUEID...|--account ACCOUNT [--wait DURATION]",
		Short: "release held messages: the instance holding each runs desk.release_command",
		Long: `Asks the milter instance that held each message to release it: that instance
runs desk.release_command on its own host (postsuper -H QUEUEID by
default) and reports the outcome, which is printed here. A message that had
already left the hold queue, or that no instance answered for within
--wait, is reported so, and the command exits 1. The request and its
outcome are recorded in the account's audit log with your user name.`,
		Example: "  abusectl release 4Xyz1abC2\n  abusectl release --account alice",
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

// Command abusectl is the rate-limit admin CLI of abusemilter: it shows why
// an account was deferred or locked (usage per limit window, strikes, lock,
// overrides, exemptions, audit log), ranks the busiest senders, and locks,
// unlocks, resets, overrides or exempts accounts, senders and clients.
//
// It works on the shared Redis store through the ratelimit admin API, read
// from the same config file as the daemon, so it never computes a key name
// or a window itself. Every change is audit-logged in Redis with the OS
// user who made it, and takes effect on the milters' next message.
//
// The command line is built on internal/cli (cobra): one subcommand per
// file, each an options struct and a runX function. Exit codes are decided
// in commandError only (root.go) and listed in the root command's help.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/abusemilter/abusemilter/internal/cli"
)

// quietRedis drops go-redis's own log lines (pool dial retries and the
// like): abusectl reports a failure once, as one line of its own.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func main() {
	redis.SetLogger(quietRedis{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	root := newRootCommand(systemDeps(), os.Stdout, os.Stderr)
	root.SetContext(ctx)
	code := cli.Execute(root, os.Args[1:])
	stop()
	os.Exit(code)
}

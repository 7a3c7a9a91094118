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
// Exit codes (decided in exitCode only): 0 ok; 1 failure (Redis
// unreachable, wrong password, not found); 2 usage or config error.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// quietRedis drops go-redis's own log lines (pool dial retries and the
// like): abusectl reports a failure once, as one line of its own.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func main() {
	redis.SetLogger(quietRedis{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, systemDeps())
	stop()
	os.Exit(code)
}

package daemon

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/abusemilter/abusemilter/internal/metrics"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// timedLimiter is the limiter the engine calls: the store, with every
// check-and-charge call observed in abusemilter_store_call_duration_seconds.
// The daemon keeps the bare store for everything else (admin, stats,
// closing); Unwrap lets the engine reach the store's optional
// capabilities and a trial's dry run its Status (ratelimit.As).
type timedLimiter struct {
	ratelimit.Limiter
	metrics *metrics.Metrics
}

// CheckAndCharge implements ratelimit.Limiter.
func (t timedLimiter) CheckAndCharge(ctx context.Context, req ratelimit.Request) (ratelimit.Decision, error) {
	start := time.Now()
	d, err := t.Limiter.CheckAndCharge(ctx, req)
	t.metrics.StoreCall(time.Since(start), err)
	return d, err
}

// Unwrap returns the store.
func (t timedLimiter) Unwrap() ratelimit.Limiter { return t.Limiter }

// timed wraps a store for the engine. The store's optional capabilities
// (ratelimit.Recorder, ratelimit.CampaignCounter) stay reachable through
// Unwrap: the engine finds them with ratelimit.As.
func timed(l ratelimit.Limiter, m *metrics.Metrics) ratelimit.Limiter {
	return timedLimiter{Limiter: l, metrics: m}
}

// lockedEvery is how often the locked-accounts gauge is read from the store.
const lockedEvery = time.Minute

// watchLocked sets abusemilter_accounts_locked from the store at once and
// then every `every`, until ctx ends. A failed read keeps the last value
// and is logged at debug (the store's errors show in its own metrics).
func (d *Daemon) watchLocked(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		d.readLocked(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// readLocked reads the locked accounts once into the gauge.
func (d *Daemon) readLocked(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, ok, err := d.obs.lockedAccounts(rctx)
	switch {
	case !ok:
	case err != nil:
		d.log.Debug("reading the locked accounts for abusemilter_accounts_locked", zap.Error(err))
	default:
		d.metrics.AccountsLocked(n)
	}
}

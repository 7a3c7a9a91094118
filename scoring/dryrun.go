package scoring

import "github.com/abusemilter/abusemilter/ratelimit"

// DryRun returns an engine that decides as e does (same rules, settings,
// directory and mode) over a view of e's limiter that charges nothing and
// adds no strike (ratelimit.DryRun): the engine of a trial.
func (e *Engine) DryRun() *Engine {
	c := *e
	if e.limiter != nil {
		c.limiter = ratelimit.DryRun(e.limiter)
	}
	return &c
}

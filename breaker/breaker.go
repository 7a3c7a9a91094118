// Package breaker is the circuit breaker that the rate store and the clamd
// client share: after enough consecutive failures it opens, calls fail
// fast, and one probe call per probe interval goes through until one
// succeeds and closes it again.
package breaker

import (
	"sync"
	"time"
)

// Breaker is a circuit breaker. Set Failures (consecutive failures that
// open it) and Probe (how often an open breaker lets one call through)
// before use; it is safe for concurrent use.
type Breaker struct {
	Failures int
	Probe    time.Duration

	mu        sync.Mutex
	failed    int
	open      bool
	nextProbe time.Time
	probing   bool
}

// New returns a closed breaker.
func New(failures int, probe time.Duration) *Breaker {
	return &Breaker{Failures: failures, Probe: probe}
}

// Allow reports whether a call may go through now: always while closed;
// while open, one probe at a time once the probe interval has passed.
func (b *Breaker) Allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return true
	}
	if b.probing || now.Before(b.nextProbe) {
		return false
	}
	b.probing = true
	return true
}

// Done records a call's outcome; it reports whether this outcome opened
// the breaker.
func (b *Breaker) Done(now time.Time, ok bool) (opened bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	if ok {
		b.failed, b.open = 0, false
		return false
	}
	b.failed++
	if b.failed >= b.Failures {
		opened = !b.open
		b.open, b.nextProbe = true, now.Add(b.Probe)
	}
	return opened
}

// IsOpen reports whether the breaker is open.
func (b *Breaker) IsOpen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open
}

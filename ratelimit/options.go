package ratelimit

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// ErrUnavailable is wrapped by every error a store returns because it could
// not answer: the breaker is open, the deadline passed, the server is gone.
var ErrUnavailable = errors.New("rate store unavailable")

// Options tune a store beyond its Policy. The zero value is usable.
type Options struct {
	// OnEvent receives lock, unlock and usage-threshold events. It runs on
	// its own goroutine; events that find its queue full are dropped (and
	// counted in Stats), so a slow receiver never delays a decision.
	OnEvent func(Event)
	// UsageThresholds are the fractions of a limit whose crossing raises an
	// EventUsage (default 0.8; 1.0 means "now full").
	UsageThresholds []float64
	// RecentMax caps how long Recent keeps serving a refusal (default 1m).
	// Admin changes drop the refusals they affect at once (Redis: on every
	// instance, see Redis); the cap bounds what a lost change can cost.
	RecentMax time.Duration
	// RecentUnsubscribedMax (Redis only) caps how long Recent serves a
	// refusal while the subscription to admin changes is not confirmed
	// (default 5s), so that a change missed meanwhile costs little.
	RecentUnsubscribedMax time.Duration
	// BreakerFailures consecutive failures open the circuit breaker
	// (default 3); while open, calls fail at once, and one probe call is let
	// through every BreakerProbe (default 1s) until one succeeds.
	BreakerFailures int
	BreakerProbe    time.Duration
	// Monitor (monitor mode): complaints reaching a threshold report
	// "would lock" (EventWouldLock) and never lock.
	Monitor bool
	// Instance names this MTA host in the desk's records and release and
	// purge requests (default: the host name).
	Instance string
	// ClockOffset, for tests only, is added to the store's clock (the Redis
	// server clock) on every call.
	ClockOffset func() time.Duration
}

func (o Options) withDefaults() Options {
	if len(o.UsageThresholds) == 0 {
		o.UsageThresholds = []float64{0.8}
	}
	if o.RecentMax <= 0 {
		o.RecentMax = time.Minute
	}
	if o.RecentUnsubscribedMax <= 0 {
		o.RecentUnsubscribedMax = 5 * time.Second
	}
	if o.BreakerFailures <= 0 {
		o.BreakerFailures = 3
	}
	if o.BreakerProbe <= 0 {
		o.BreakerProbe = time.Second
	}
	if o.Instance == "" {
		o.Instance, _ = os.Hostname()
	}
	return o
}

func (o Options) offset() time.Duration {
	if o.ClockOffset == nil {
		return 0
	}
	return o.ClockOffset()
}

// EventKind says what happened.
type EventKind string

// The kinds of Event.
const (
	EventLock      EventKind = "lock"       // an account was locked (by strikes or an admin)
	EventWouldLock EventKind = "would_lock" // monitor mode: strikes reached the threshold
	EventUnlock    EventKind = "unlock"     // an admin unlocked an account
	EventUsage     EventKind = "usage"      // a limit's use crossed a threshold
	EventHeld      EventKind = "held"       // a message was held for the desk (Record)
	EventReleased  EventKind = "released"   // a held message was released (Outcome)
	EventPurged    EventKind = "purged"     // a held message was purged (Outcome)
	EventComplaint EventKind = "complaint"  // a complaint was recorded (Complaint)
)

// Event is a notable change of account state.
type Event struct {
	Kind      EventKind
	Subject   Subject
	Lock      *Lock     // EventLock
	Dimension Dimension // EventUsage
	Rate      Rate      // EventUsage
	Used      int64     // EventUsage
	Threshold float64   // EventUsage
	Strikes   int
	At        time.Time

	Record     *MessageRecord // EventHeld
	Outcome    *DeskOutcome   // EventReleased, EventPurged
	Complaint  *Complaint     // EventComplaint
	Complaints int            // EventComplaint: the account's count in the window
}

// Stats are a store's call counters, for metrics.
type Stats struct {
	Calls         uint64        // CheckAndCharge calls
	Errors        uint64        // calls that returned an error (fail-fast included)
	FailFast      uint64        // calls refused at once by the open breaker
	BreakerOpen   bool          // the breaker is open now
	BreakerOpens  uint64        // times the breaker opened
	LatencyTotal  time.Duration // summed latency of calls that reached the store
	LatencyMax    time.Duration
	EventsDropped uint64
}

// callStats counts calls; safe for concurrent use.
type callStats struct {
	calls, errors, failFast, opens, latency, latencyMax, dropped atomic.Uint64
}

func (c *callStats) observe(d time.Duration, err error) {
	c.calls.Add(1)
	if err != nil {
		c.errors.Add(1)
	}
	c.latency.Add(uint64(d))
	for {
		old := c.latencyMax.Load()
		if uint64(d) <= old || c.latencyMax.CompareAndSwap(old, uint64(d)) {
			return
		}
	}
}

func (c *callStats) snapshot(open bool) Stats {
	return Stats{
		Calls: c.calls.Load(), Errors: c.errors.Load(), FailFast: c.failFast.Load(),
		BreakerOpen: open, BreakerOpens: c.opens.Load(),
		LatencyTotal: time.Duration(c.latency.Load()), LatencyMax: time.Duration(c.latencyMax.Load()),
		EventsDropped: c.dropped.Load(),
	}
}

// recentCache remembers refusals until they expire or an admin change
// invalidates them.
type recentCache struct {
	mu sync.Mutex
	m  map[string]recentEntry
	// gen counts invalidations: a decision read from the store before an
	// invalidation is not cached after it (see remember).
	gen uint64
	// unconfirmedMax, when positive, caps how long an entry is served while
	// confirmed is false: the store's feed of admin changes (Redis: the
	// subscription) is down, so an invalidation may have been missed.
	unconfirmedMax time.Duration
	confirmed      bool
}

type recentEntry struct {
	d         Decision
	at, until time.Time
}

// generation returns the invalidation count, to pass to remember.
func (c *recentCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// invalidate drops what an admin change of s may have made stale: the
// account's entry, or every entry for a sender or client subject (an
// exemption of either admits any account).
func (c *recentCache) invalidate(s Subject) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if s.Kind == KindAccount {
		delete(c.m, s.Name)
		return
	}
	clear(c.m)
}

// invalidateAll drops every entry.
func (c *recentCache) invalidateAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.m)
}

// setConfirmed records whether the feed of admin changes is up. On
// confirmation every entry is dropped: it may have missed an invalidation
// while the feed was down.
func (c *recentCache) setConfirmed(up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if up {
		c.gen++
		clear(c.m)
	}
	c.confirmed = up
}

func (c *recentCache) isConfirmed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.confirmed
}

func (c *recentCache) get(account string, now time.Time) (Decision, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[account]
	if !ok {
		return Decision{}, false
	}
	stale := c.unconfirmedMax > 0 && !c.confirmed && now.Sub(e.at) >= c.unconfirmedMax
	if stale || !now.Before(e.until) {
		delete(c.m, account)
		return Decision{}, false
	}
	if e.d.RetryAfter > 0 {
		e.d.RetryAfter = e.until.Sub(now)
	}
	return e.d, true
}

// remember caches a refusal for Recent: a lock until it ends, an exceeded
// account limit until its retry time, both capped by max. Refusals by sender
// or client limits are not cached: Recent knows only the account. gen is the
// generation read before the store was asked: when an invalidation came in
// since, the decision may predate the admin change and is not cached.
func (c *recentCache) remember(account string, d Decision, now time.Time, max time.Duration, gen uint64) {
	ttl := max
	switch {
	case d.Locked:
		if d.Lock != nil && !d.Lock.Until.IsZero() && d.Lock.Until.Sub(now) < ttl {
			ttl = d.Lock.Until.Sub(now)
		}
	case d.Exceeded == AccountMessages || d.Exceeded == AccountRecipients || d.Exceeded == AccountNewRecipients:
		if d.RetryAfter < ttl {
			ttl = d.RetryAfter
		}
	default:
		return
	}
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if c.m == nil {
		c.m = make(map[string]recentEntry)
	}
	c.m[account] = recentEntry{d: d, at: now, until: now.Add(ttl)}
}

// eventQueue delivers events to a callback on one goroutine.
type eventQueue struct {
	ch    chan Event
	stats *callStats
	done  chan struct{}

	mu     sync.RWMutex
	closed bool
}

func newEventQueue(fn func(Event), stats *callStats) *eventQueue {
	if fn == nil {
		return nil
	}
	q := &eventQueue{ch: make(chan Event, 256), stats: stats, done: make(chan struct{})}
	go func() {
		defer close(q.done)
		for ev := range q.ch {
			fn(ev)
		}
	}()
	return q
}

// emit queues an event without blocking.
func (q *eventQueue) emit(ev Event) {
	if q == nil {
		return
	}
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		return
	}
	select {
	case q.ch <- ev:
	default:
		q.stats.dropped.Add(1)
	}
}

func (q *eventQueue) close() {
	if q == nil {
		return
	}
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.ch)
	}
	q.mu.Unlock()
	<-q.done
}

// usageEvents raises EventUsage for every threshold a charge crossed.
func usageEvents(q *eventQueue, thresholds []float64, subj Subject, u Usage, cost int64, at time.Time) {
	if q == nil || cost <= 0 || u.Rate.Limit <= 0 {
		return
	}
	for _, t := range thresholds {
		mark := t * float64(u.Rate.Limit)
		if float64(u.Used-cost) < mark && float64(u.Used) >= mark {
			q.emit(Event{Kind: EventUsage, Subject: subj, Dimension: u.Dimension, Rate: u.Rate, Used: u.Used, Threshold: t, At: at})
		}
	}
}

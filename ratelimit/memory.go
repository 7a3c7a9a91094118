package ratelimit

import (
	"context"
	"sync"
	"time"
)

// Memory is the embedded in-memory store for one host: the same semantics
// as the Redis store (sliding-window counters in buckets, strikes, locks,
// runtime overrides and exemptions, the admin API) kept in maps. A counter
// has a fixed size (see counter), and counters nothing is counted in any
// more are dropped once a minute, so memory follows the number of active
// subjects, not the traffic. It is safe for concurrent use.
type Memory struct {
	policy Policy
	now    func() time.Time
	opts   Options

	mu        sync.Mutex
	counters  map[counterKey]*counter
	swept     time.Time                       // last sweep of idle counters
	seen      map[string]map[string]time.Time // account -> recipient -> last sent
	strikes   map[string]map[string]time.Time // account -> Message-ID -> strike time
	locks     map[string]Lock
	overrides map[Subject]map[Dimension]Override
	exempt    map[Subject]Exemption
	audit     map[Subject][]AuditEntry

	recent recentCache
	stats  callStats
	events *eventQueue

	dk       memDesk // guarded by mu, made on first use (desk)
	hist     memHistory
	deskOnce sync.Once

	camp memCampaigns // campaign counting, locked apart (memory_campaign.go)
}

// counterKey names the counter of one window of a subject's dimension.
type counterKey struct {
	subj   Subject
	dim    Dimension
	window time.Duration
}

// sweepEvery is how often counters that count nothing any more are dropped.
const sweepEvery = time.Minute

var (
	_ Limiter = (*Memory)(nil)
	_ Admin   = (*Memory)(nil)
)

// NewMemory returns an in-memory store enforcing policy. now may be nil
// (time.Now); tests and the offline scanner pass their own clock.
func NewMemory(policy Policy, now func() time.Time) *Memory {
	return NewMemoryOptions(policy, now, Options{})
}

// NewMemoryOptions is NewMemory with options (events, Recent cap).
func NewMemoryOptions(policy Policy, now func() time.Time, opts Options) *Memory {
	if now == nil {
		now = time.Now
	}
	m := &Memory{
		policy: policy, now: now, opts: opts.withDefaults(),
		counters:  make(map[counterKey]*counter),
		seen:      make(map[string]map[string]time.Time),
		strikes:   make(map[string]map[string]time.Time),
		locks:     make(map[string]Lock),
		overrides: make(map[Subject]map[Dimension]Override),
		exempt:    make(map[Subject]Exemption),
		audit:     make(map[Subject][]AuditEntry),
	}
	m.events = newEventQueue(m.opts.OnEvent, &m.stats)
	return m
}

func (m *Memory) clock() time.Time { return m.now().Add(m.opts.offset()) }

// Stats returns the call counters (the breaker never opens).
func (m *Memory) Stats() Stats { return m.stats.snapshot(false) }

// Close implements Limiter.
func (m *Memory) Close() error {
	m.events.close()
	return nil
}

// Recent implements Limiter.
func (m *Memory) Recent(account string) (Decision, bool) {
	return m.recent.get(account, m.clock())
}

// lockOf returns an account's lock in force, dropping an expired one.
func (m *Memory) lockOf(account string, now time.Time) *Lock {
	l, ok := m.locks[account]
	if !ok {
		return nil
	}
	if !l.Until.IsZero() && !now.Before(l.Until) {
		delete(m.locks, account)
		return nil
	}
	return &l
}

// exemptionOf returns a subject's runtime exemption in force.
func (m *Memory) exemptionOf(s Subject, now time.Time) *Exemption {
	e, ok := m.exempt[s]
	if !ok {
		return nil
	}
	if !e.Until.IsZero() && !now.Before(e.Until) {
		delete(m.exempt, s)
		return nil
	}
	return &e
}

// ratesOf returns the rates in force: a runtime override, else configured.
func (m *Memory) ratesOf(s Subject, d Dimension, configured []Rate, now time.Time) ([]Rate, bool) {
	if o, ok := m.overrides[s][d]; ok {
		if o.Until.IsZero() || now.Before(o.Until) {
			return o.Rates, true
		}
		delete(m.overrides[s], d)
	}
	return configured, false
}

// count returns what a window's counter holds at nowUS.
func (m *Memory) count(k counterKey, nowUS int64) int64 {
	if c := m.counters[k]; c != nil {
		return c.count(nowUS)
	}
	return 0
}

// sweep drops the counters nothing is counted in any more, at most once
// per sweepEvery.
func (m *Memory) sweep(now time.Time) {
	if now.Sub(m.swept) < sweepEvery && !now.Before(m.swept) {
		return
	}
	m.swept = now
	nowUS := now.UnixMicro()
	for k, c := range m.counters {
		if c.idle(nowUS) {
			delete(m.counters, k)
		}
	}
	m.sweepSent(nowUS)
}

// strike adds a strike (one per Message-ID per window) and locks at the
// threshold.
func (m *Memory) strike(req Request, now time.Time) (n int, newly, would bool) {
	sp := m.policy.Strikes
	if sp.Window <= 0 {
		return 0, false, false
	}
	st := m.strikes[req.Account]
	if st == nil {
		st = make(map[string]time.Time)
		m.strikes[req.Account] = st
	}
	for id, at := range st {
		if !at.After(now.Add(-sp.Window)) {
			delete(st, id)
		}
	}
	member := req.MessageID
	if member == "" {
		member = "call:" + newCallID()
	}
	_, prev := st[member]
	if !prev {
		st[member] = now
	}
	n = len(st)
	if sp.Threshold > 0 && n >= sp.Threshold && !prev {
		if req.Monitor {
			return n, false, n == sp.Threshold // report the crossing once
		}
		l := Lock{Reason: strikeReason(n, sp.Window), By: "auto", At: now}
		if sp.LockFor > 0 {
			l.Until = now.Add(sp.LockFor)
		}
		m.locks[req.Account] = l
		return n, true, false
	}
	return n, false, false
}

func (m *Memory) strikeCount(account string, now time.Time) int {
	n := 0
	for _, at := range m.strikes[account] {
		if at.After(now.Add(-m.policy.Strikes.Window)) {
			n++
		}
	}
	return n
}

type memCheck struct {
	subj Subject
	dim  Dimension
	rate Rate
	cost int64
	used int64
}

// CheckAndCharge implements Limiter.
func (m *Memory) CheckAndCharge(_ context.Context, req Request) (Decision, error) {
	start := time.Now()
	d := m.checkAndCharge(req)
	m.stats.observe(time.Since(start), nil)
	return d, nil
}

func (m *Memory) checkAndCharge(req Request) Decision {
	subs, _, exempt := m.policy.subjects(req)
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	var d Decision
	if l := m.lockOf(req.Account, now); l != nil {
		d.Locked, d.Lock, d.Strikes = true, l, m.strikeCount(req.Account, now)
		if !l.Until.IsZero() {
			d.RetryAfter = l.Until.Sub(now)
		}
		m.recent.remember(req.Account, d, now, m.opts.RecentMax, m.recent.generation())
		return d
	}
	if req.Outcome == Strike {
		d.Strikes, d.NewlyLocked, d.WouldLock = m.strike(req, now)
		m.lockEvents(req, &d, now)
		return d
	}
	for _, s := range subs {
		if m.exemptionOf(s.subj, now) != nil {
			m.attribute(req, nil, now)
			m.countSent(subs, now.UnixMicro())
			return Decision{Allowed: true, Exempt: true}
		}
	}
	rcpts := dedupe(normalizeAll(req.Recipients))
	var checks []memCheck
	var newRcpts []string
	newWindow := time.Duration(0)
	for _, s := range subs {
		for i, dim := range s.subj.Kind.dimensions() {
			rates, _ := m.ratesOf(s.subj, dim, s.rates[i], now)
			cost := int64(1)
			switch dim {
			case AccountRecipients:
				cost = int64(len(req.Recipients))
			case AccountNewRecipients:
				for _, r := range rates {
					newWindow = max(newWindow, r.Window)
				}
				if len(rates) > 0 {
					for _, rc := range rcpts {
						if last, ok := m.seen[req.Account][rc]; !ok || !last.After(now.Add(-newWindow)) {
							newRcpts = append(newRcpts, rc)
						}
					}
				}
				cost = int64(len(newRcpts))
			}
			for _, r := range rates {
				checks = append(checks, memCheck{subj: s.subj, dim: dim, rate: r, cost: cost})
			}
		}
	}
	nowUS := now.UnixMicro()
	for i := range checks {
		c := &checks[i]
		k := counterKey{c.subj, c.dim, c.rate.Window}
		c.used = m.count(k, nowUS)
		if c.cost > 0 && c.used+c.cost > c.rate.Limit {
			var buckets []bucket
			if ctr := m.counters[k]; ctr != nil {
				buckets = ctr.buckets(nowUS)
			}
			d.Exceeded, d.Rate = c.dim, c.rate
			d.RetryAfter = retryAfter(buckets, c.used, c.cost, c.rate.Limit, nowUS, c.rate.Window)
			d.Strikes, d.NewlyLocked, d.WouldLock = m.strike(req, now)
			m.lockEvents(req, &d, now)
			m.recent.remember(req.Account, d, now, m.opts.RecentMax, m.recent.generation())
			return d
		}
	}
	// charge each window's counter once (two rates may share a window)
	m.sweep(now)
	charged := make(map[counterKey]bool, len(checks))
	for _, c := range checks {
		k := counterKey{c.subj, c.dim, c.rate.Window}
		if c.cost == 0 || charged[k] {
			continue
		}
		charged[k] = true
		ctr := m.counters[k]
		if ctr == nil {
			ctr = newCounter(k.window)
			m.counters[k] = ctr
		}
		ctr.add(nowUS, c.cost)
	}
	if newWindow > 0 {
		seen := m.seen[req.Account]
		if seen == nil {
			seen = make(map[string]time.Time)
			m.seen[req.Account] = seen
		}
		for rc, at := range seen {
			if !at.After(now.Add(-newWindow)) {
				delete(seen, rc)
			}
		}
		for _, rc := range rcpts {
			seen[rc] = now
		}
	}
	d.Allowed, d.Exempt = true, exempt
	for _, c := range checks {
		u := Usage{Dimension: c.dim, Key: c.subj.Name, Rate: c.rate, Used: c.used + c.cost}
		d.Usage = append(d.Usage, u)
		usageEvents(m.events, m.opts.UsageThresholds, c.subj, u, c.cost, now)
	}
	m.attribute(req, d.Usage, now)
	m.countSent(subs, nowUS)
	return d
}

func (m *Memory) lockEvents(req Request, d *Decision, now time.Time) {
	if d.NewlyLocked {
		l := m.locks[req.Account]
		d.Lock = &l
		m.events.emit(Event{Kind: EventLock, Subject: Account(req.Account), Lock: &l, Strikes: d.Strikes, At: now})
	}
	if d.WouldLock {
		m.events.emit(Event{Kind: EventWouldLock, Subject: Account(req.Account), Strikes: d.Strikes, At: now})
	}
}

// strikeReason is the reason of an automatic lock.
func strikeReason(n int, window time.Duration) string {
	return formatInt(int64(n)) + " strikes within " + FormatWindow(window)
}

func dedupe(xs []string) []string {
	seen := make(map[string]bool, len(xs))
	out := xs[:0:0]
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

package ratelimit

import (
	"context"
	"sync"
	"time"

	"github.com/abusemilter/abusemilter/internal/identity"
)

// Memory is the embedded in-memory store: exact sliding-log counters for one
// host. It is safe for concurrent use.
type Memory struct {
	policy Policy
	now    func() time.Time

	mu     sync.Mutex
	events map[string][]time.Time // counter key -> charge times, oldest first
	locks  map[string]*Lock
	recent map[string]Decision // account -> last refusal, until its RetryAfter
	until  map[string]time.Time
}

var _ Limiter = (*Memory)(nil)

// NewMemory returns an in-memory store enforcing policy. now may be nil
// (time.Now); tests pass their own clock.
func NewMemory(policy Policy, now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{
		policy: policy, now: now,
		events: make(map[string][]time.Time),
		locks:  make(map[string]*Lock),
		recent: make(map[string]Decision),
		until:  make(map[string]time.Time),
	}
}

type counter struct {
	dim  Dimension
	key  string
	rate Rate
	cost int64
}

// CheckAndCharge implements Limiter.
func (m *Memory) CheckAndCharge(_ context.Context, req Request) (Decision, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()

	var d Decision
	if l := m.locks[req.Account]; l != nil {
		if l.Until.IsZero() || now.Before(l.Until) {
			d.Locked, d.Lock = true, l
			m.remember(req.Account, d, now, time.Minute)
			return d, nil
		}
		delete(m.locks, req.Account)
	}
	if req.Outcome == Strike {
		return d, nil
	}
	sender := identity.NormalizeAddress(req.Sender)
	if m.policy.ExemptAccounts[req.Account] || m.policy.ExemptSenders[sender] || m.policy.ExemptClient(req.Client) {
		d.Allowed, d.Exempt = true, true
		return d, nil
	}
	var cs []counter
	add := func(dim Dimension, key string, cost int64) {
		for _, r := range m.policy.RatesFor(dim, req.Account, sender) {
			cs = append(cs, counter{dim, string(dim) + ":" + key + ":" + r.String(), r, cost})
		}
	}
	add(AccountMessages, req.Account, 1)
	if sender != "" {
		add(SenderMessages, sender, 1)
	}
	if !req.Authenticated && req.Client.IsValid() {
		add(ClientMessages, req.Client.String(), 1)
	}
	add(AccountRecipients, req.Account, int64(len(req.Recipients)))
	for _, c := range cs {
		log := prune(m.events[c.key], now.Add(-c.rate.Window))
		m.events[c.key] = log
		if int64(len(log))+c.cost > c.rate.Limit {
			d.Exceeded, d.Rate = c.dim, c.rate
			// The window frees enough room once the oldest needed event ages out.
			idx := int64(len(log)) + c.cost - c.rate.Limit - 1
			if idx >= 0 && idx < int64(len(log)) {
				d.RetryAfter = log[idx].Add(c.rate.Window).Sub(now)
			} else {
				d.RetryAfter = c.rate.Window
			}
			m.remember(req.Account, d, now, d.RetryAfter)
			return d, nil
		}
	}
	for _, c := range cs {
		for i := int64(0); i < c.cost; i++ {
			m.events[c.key] = append(m.events[c.key], now)
		}
		d.Usage = append(d.Usage, Usage{Dimension: c.dim, Rate: c.rate, Used: int64(len(m.events[c.key]))})
	}
	d.Allowed = true
	return d, nil
}

func (m *Memory) remember(account string, d Decision, now time.Time, ttl time.Duration) {
	m.recent[account] = d
	m.until[account] = now.Add(ttl)
}

// Recent implements Limiter.
func (m *Memory) Recent(account string) (Decision, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.recent[account]
	if !ok {
		return Decision{}, false
	}
	now := m.now()
	if !now.Before(m.until[account]) {
		delete(m.recent, account)
		delete(m.until, account)
		return Decision{}, false
	}
	if d.RetryAfter > 0 {
		d.RetryAfter = m.until[account].Sub(now)
	}
	return d, true
}

// Close implements Limiter.
func (m *Memory) Close() error { return nil }

// prune drops events older than cutoff from a log kept oldest first.
func prune(log []time.Time, cutoff time.Time) []time.Time {
	i := 0
	for i < len(log) && !log[i].After(cutoff) {
		i++
	}
	return log[i:]
}

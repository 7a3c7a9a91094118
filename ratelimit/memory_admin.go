package ratelimit

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
)

// auditKeep is how many audit entries a subject keeps.
const auditKeep = 100

func (m *Memory) record(s Subject, by, action, detail string, now time.Time) {
	a := append([]AuditEntry{{At: now, By: by, Action: action, Subject: s, Detail: detail}}, m.audit[s]...)
	if len(a) > auditKeep {
		a = a[:auditKeep]
	}
	m.audit[s] = a
	m.hist.log = pushCapped(m.hist.log, a[0], AuditLogKeep)
}

// configured returns the configured rates of a subject's dimension (an
// account's configured overrides included; a sender's too).
func (p *Policy) configured(s Subject, d Dimension) []Rate {
	switch s.Kind {
	case KindAccount:
		return p.RatesFor(d, s.Name, "")
	case KindSender:
		return p.RatesFor(d, "", s.Name)
	}
	return p.Limits[d]
}

// Status implements Admin.
func (m *Memory) Status(_ context.Context, s Subject) (Status, error) {
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	st := Status{Subject: s, StrikeWindow: m.policy.Strikes.Window}
	for _, d := range s.Kind.dimensions() {
		rates, over := m.ratesOf(s, d, m.policy.configured(s, d), now)
		nowUS := now.UnixMicro()
		for _, r := range rates {
			var buckets []bucket
			if c := m.counters[counterKey{s, d, r.Window}]; c != nil {
				buckets = c.buckets(nowUS)
			}
			st.Limits = append(st.Limits, limitStatus(d, r, over, buckets, nowUS))
		}
		if o, ok := m.overrides[s][d]; ok {
			st.Overrides = append(st.Overrides, o)
		}
	}
	if s.Kind == KindAccount {
		st.Strikes = m.strikeCount(s.Name, now)
		st.Lock = m.lockOf(s.Name, now)
	}
	st.Exemption = m.exemptionOf(s, now)
	st.Audit = append([]AuditEntry(nil), m.audit[s]...)
	return st, nil
}

// Top implements Admin.
func (m *Memory) Top(_ context.Context, by TopBy, window time.Duration, n int) ([]TopEntry, error) {
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []TopEntry
	switch by {
	case TopMessages, TopRecipients:
		read := map[Dimension]time.Duration{}
		for _, d := range by.dimensions() {
			if w, ok := topWindow(m.policy.keptWindows(d), window); ok {
				read[d] = w
			}
		}
		nowUS := now.UnixMicro()
		for k, c := range m.counters {
			if w, ok := read[k.dim]; !ok || w != k.window {
				continue
			}
			if n := c.countSince(nowUS, nowUS-window.Microseconds()); n > 0 {
				out = append(out, TopEntry{k.subj, n})
			}
		}
	case TopStrikes:
		for acct, st := range m.strikes {
			var c int64
			for _, at := range st {
				if at.After(now.Add(-window)) {
					c++
				}
			}
			if c > 0 {
				out = append(out, TopEntry{Account(acct), c})
			}
		}
	default:
		return nil, fmt.Errorf("top by %q: want messages, recipients or strikes", by)
	}
	return rankTop(out, n), nil
}

// rankTop sorts by count (then subject) and keeps n.
func rankTop(out []TopEntry, n int) []TopEntry {
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Subject.String() < out[j].Subject.String()
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

// Locked implements Admin.
func (m *Memory) Locked(_ context.Context) ([]LockedAccount, error) {
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []LockedAccount
	for a := range m.locks {
		if l := m.lockOf(a, now); l != nil {
			out = append(out, LockedAccount{a, *l})
		}
	}
	sortLocked(out)
	return out, nil
}

// Lock implements Admin.
func (m *Memory) Lock(_ context.Context, account, reason, by string, d time.Duration) error {
	now := m.clock()
	m.mu.Lock()
	l := Lock{Reason: reason, By: by, At: now}
	if d > 0 {
		l.Until = now.Add(d)
	}
	m.locks[account] = l
	m.record(Account(account), by, "lock", lockDetail(reason, d), now)
	m.mu.Unlock()
	m.recent.invalidate(Account(account))
	m.events.emit(Event{Kind: EventLock, Subject: Account(account), Lock: &l, At: now})
	return nil
}

func lockDetail(reason string, d time.Duration) string {
	if d > 0 {
		return fmt.Sprintf("%s (for %s)", reason, d)
	}
	return reason
}

// Unlock implements Admin. It also clears the account's strikes, so that
// the next refusal does not lock it again at once.
func (m *Memory) Unlock(_ context.Context, account, by string) error {
	now := m.clock()
	m.mu.Lock()
	delete(m.locks, account)
	delete(m.strikes, account)
	m.record(Account(account), by, "unlock", "", now)
	m.mu.Unlock()
	m.recent.invalidate(Account(account))
	m.events.emit(Event{Kind: EventUnlock, Subject: Account(account), At: now})
	return nil
}

// Reset implements Admin.
func (m *Memory) Reset(_ context.Context, s Subject, dim Dimension, by string) error {
	if dim != "" {
		if err := checkOverride(s, dim); err != nil {
			return fmt.Errorf("reset: %w", err)
		}
	}
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.counters {
		if k.subj == s && (dim == "" || dim == k.dim) {
			delete(m.counters, k)
		}
	}
	if s.Kind == KindAccount && (dim == "" || dim == AccountNewRecipients) {
		delete(m.seen, s.Name)
	}
	if s.Kind == KindAccount && dim == "" {
		delete(m.strikes, s.Name)
	}
	m.recent.invalidate(s)
	m.record(s, by, "reset", string(dim), now)
	return nil
}

// SetOverride implements Admin.
func (m *Memory) SetOverride(_ context.Context, s Subject, dim Dimension, rates []Rate, d time.Duration, by string) error {
	if err := checkOverride(s, dim); err != nil {
		return err
	}
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.recent.invalidate(s)
	if rates == nil {
		delete(m.overrides[s], dim)
		m.record(s, by, "override-remove", string(dim), now)
		return nil
	}
	o := Override{Subject: s, Dimension: dim, Rates: rates}
	if d > 0 {
		o.Until = now.Add(d)
	}
	if m.overrides[s] == nil {
		m.overrides[s] = make(map[Dimension]Override)
	}
	m.overrides[s][dim] = o
	m.record(s, by, "override", overrideDetail(dim, rates, d), now)
	return nil
}

func overrideDetail(dim Dimension, rates []Rate, d time.Duration) string {
	var parts []string
	for _, r := range rates {
		parts = append(parts, r.String())
	}
	s := string(dim) + " " + strings.Join(parts, ",")
	if d > 0 {
		s += " for " + d.String()
	}
	return s
}

// Exempt implements Admin.
func (m *Memory) Exempt(_ context.Context, s Subject, reason string, d time.Duration, by string) error {
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	e := Exemption{Subject: s, Reason: reason, By: by, At: now}
	if d > 0 {
		e.Until = now.Add(d)
	}
	m.exempt[s] = e
	m.record(s, by, "exempt", lockDetail(reason, d), now)
	m.recent.invalidate(s)
	return nil
}

// Unexempt implements Admin.
func (m *Memory) Unexempt(_ context.Context, s Subject, by string) error {
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.exempt, s)
	m.record(s, by, "unexempt", "", now)
	m.recent.invalidate(s)
	return nil
}

// Exemptions implements Admin.
func (m *Memory) Exemptions(_ context.Context) ([]Exemption, error) {
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Exemption
	for s := range m.exempt {
		if e := m.exemptionOf(s, now); e != nil {
			out = append(out, *e)
		}
	}
	sortExemptions(out)
	return out, nil
}

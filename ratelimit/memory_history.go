package ratelimit

import (
	"context"
	"slices"
)

// memHistory is the in-memory store's share of the console's history
// (history.go). Guarded by Memory.mu.
type memHistory struct {
	sent      map[string]map[int64]int64 // account -> hour index -> messages
	decisions map[string][]string        // account -> queue ids, newest first
	recent    []string                   // queue ids of every account, newest first
	log       []AuditEntry               // the audit log, newest first
}

// countSent counts an allowed message in its account's hour, as the
// script's count_sent does: the hour's first message drops the hours
// that left the history. m.mu is held.
func (m *Memory) countSent(subs []scriptSubject, nowUS int64) {
	if len(subs) == 0 || subs[0].subj.Kind != KindAccount {
		return
	}
	h := &m.hist
	if h.sent == nil {
		h.sent = make(map[string]map[int64]int64)
	}
	account := subs[0].subj.Name
	hours := h.sent[account]
	if hours == nil {
		hours = make(map[int64]int64)
		h.sent[account] = hours
	}
	cur := bucketOf(nowUS, hourUS)
	hours[cur]++
	if hours[cur] == 1 {
		for k := range hours {
			if k <= cur-HistoryHours {
				delete(hours, k)
			}
		}
	}
}

// sweepSent drops the sending history of accounts idle for longer than
// it keeps (the Redis key's TTL). m.mu is held.
func (m *Memory) sweepSent(nowUS int64) {
	cur := bucketOf(nowUS, hourUS)
	for a, hours := range m.hist.sent {
		idle := true
		for k := range hours {
			if k > cur-HistoryHours {
				idle = false
				break
			}
		}
		if idle {
			delete(m.hist.sent, a)
		}
	}
}

// indexDecision adds a decision record's queue id to the indexes of recent
// decisions. m.mu is held.
func (m *Memory) indexDecision(rec MessageRecord) {
	if rec.QueueID == "" {
		return
	}
	h := &m.hist
	if h.decisions == nil {
		h.decisions = make(map[string][]string)
	}
	h.decisions[rec.Account] = pushCapped(h.decisions[rec.Account], rec.QueueID, DecisionsPerAccount)
	h.recent = pushCapped(h.recent, rec.QueueID, DecisionsRecent)
}

// pushCapped puts v first in list and keeps at most keep entries (LPUSH
// and LTRIM).
func pushCapped[T any](list []T, v T, keep int) []T {
	list = slices.Insert(list, 0, v)
	if len(list) > keep {
		clear(list[keep:])
		list = list[:keep]
	}
	return list
}

// SentPerHour implements Admin.
func (m *Memory) SentPerHour(_ context.Context, account string, hours int) ([]HourCount, error) {
	if err := checkHours(account, hours); err != nil {
		return nil, err
	}
	nowUS := m.clock().UnixMicro()
	m.mu.Lock()
	defer m.mu.Unlock()
	return hourSeries(m.hist.sent[account], nowUS, hours), nil
}

// Decisions implements Admin.
func (m *Memory) Decisions(_ context.Context, account string, limit int) ([]MessageRecord, error) {
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	ids, keep := m.hist.recent, DecisionsRecent
	if account != "" {
		ids, keep = m.hist.decisions[account], DecisionsPerAccount
	}
	if limit <= 0 || limit > keep {
		limit = keep
	}
	var recs []MessageRecord
	for _, id := range dedupe(ids) {
		if rec, ok := m.getRecord("q:"+id, now); ok {
			recs = append(recs, rec)
		}
	}
	return newestDecisions(recs, account, limit), nil
}

// AuditLog implements Admin.
func (m *Memory) AuditLog(_ context.Context, q AuditQuery) ([]AuditEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	skipped := 0
	out, _ := q.page(nil, &skipped, m.hist.log)
	return out, nil
}

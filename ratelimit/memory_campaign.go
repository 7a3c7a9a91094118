package ratelimit

import (
	"context"
	"sync"
	"time"
)

// memCampaignMax caps the fingerprints the in-memory store keeps: past it
// (after a sweep) a new fingerprint is counted for its message alone and
// not kept.
const memCampaignMax = 200_000

// memCampaigns is the in-memory store's campaign counting, with a lock of
// its own (it is called beside CheckAndCharge, in parallel).
type memCampaigns struct {
	mu     sync.Mutex
	sets   map[string]*memFingerprint
	swept  time.Time
	maxLen int // memCampaignMax; tests lower it
}

// memFingerprint is the accounts that sent one fingerprint, with the time
// each last did.
type memFingerprint struct {
	window time.Duration
	last   time.Time // the newest time of all
	accts  map[string]time.Time
}

// ObserveCampaign implements CampaignCounter with the semantics of the
// Redis store: each fingerprint remembers at most CampaignMaxAccounts
// accounts, those that left the window are dropped, and fingerprints
// nobody sent within their window are swept once a minute.
func (m *Memory) ObserveCampaign(_ context.Context, account string, fps []Fingerprint) ([]int, error) {
	if len(fps) == 0 {
		return nil, nil
	}
	now := m.clock()
	c := &m.camp
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sets == nil {
		c.sets = make(map[string]*memFingerprint)
		c.maxLen = memCampaignMax
	}
	c.sweep(now)
	counts := make([]int, len(fps))
	for i, fp := range fps {
		set := c.sets[fp.Key]
		if set == nil {
			if len(c.sets) >= c.maxLen {
				counts[i] = 1
				continue
			}
			set = &memFingerprint{accts: make(map[string]time.Time, 1)}
			c.sets[fp.Key] = set
		}
		set.window, set.last = fp.Window, now
		set.accts[account] = now
		from := now.Add(-fp.Window)
		for a, at := range set.accts {
			if !at.After(from) {
				delete(set.accts, a)
			}
		}
		for len(set.accts) > CampaignMaxAccounts {
			delete(set.accts, oldestAccount(set.accts))
		}
		counts[i] = len(set.accts)
	}
	return counts, nil
}

// oldestAccount returns the account with the oldest time.
func oldestAccount(accts map[string]time.Time) string {
	var name string
	var at time.Time
	for a, t := range accts {
		if name == "" || t.Before(at) || t.Equal(at) && a < name {
			name, at = a, t
		}
	}
	return name
}

// sweep drops the fingerprints nobody sent within their window, at most
// once per sweepEvery (once a second while the map is full).
func (c *memCampaigns) sweep(now time.Time) {
	every := sweepEvery
	if len(c.sets) >= c.maxLen {
		every = time.Second
	}
	if now.Sub(c.swept) < every && !now.Before(c.swept) {
		return
	}
	c.swept = now
	for k, set := range c.sets {
		if !set.last.After(now.Add(-set.window)) {
			delete(c.sets, k)
		}
	}
}

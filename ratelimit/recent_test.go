package ratelimit

import (
	"testing"
	"time"
)

// TestRecentWhileUnsubscribed: while the feed of admin changes is down, a
// refusal is served for at most unconfirmedMax; on confirmation every
// entry goes.
func TestRecentWhileUnsubscribed(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
	locked := Decision{Locked: true, Lock: &Lock{Reason: "test", By: "ops", At: t0}}
	c := &recentCache{unconfirmedMax: 5 * time.Second}
	c.setConfirmed(true)
	c.remember("a", locked, t0, time.Minute, c.generation())
	if _, ok := c.get("a", t0.Add(30*time.Second)); !ok {
		t.Fatalf("a confirmed entry is not served within RecentMax")
	}
	c.setConfirmed(false)
	if _, ok := c.get("a", t0.Add(6*time.Second)); ok {
		t.Fatalf("an entry older than the cap is served once unconfirmed")
	}
	c.remember("b", locked, t0, time.Minute, c.generation())
	if _, ok := c.get("b", t0.Add(4*time.Second)); !ok {
		t.Fatalf("an unconfirmed entry younger than the cap is not served")
	}
	if _, ok := c.get("b", t0.Add(5*time.Second)); ok {
		t.Fatalf("an unconfirmed entry is served past the cap")
	}
	c.remember("c", locked, t0, time.Minute, c.generation())
	c.setConfirmed(true)
	if _, ok := c.get("c", t0); ok {
		t.Fatalf("an entry from before the confirmation survived it")
	}
}

// TestRecentInvalidation: invalidate drops one account or, for other
// subjects, everything; a decision read before an invalidation is not
// cached after it.
func TestRecentInvalidation(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
	over := Decision{Exceeded: AccountMessages, RetryAfter: time.Minute}
	c := &recentCache{}
	for _, a := range []string{"a", "b"} {
		c.remember(a, over, t0, time.Hour, c.generation())
	}
	c.invalidate(Account("a"))
	if _, ok := c.get("a", t0); ok {
		t.Fatalf("a survived its invalidation")
	}
	if _, ok := c.get("b", t0); !ok {
		t.Fatalf("b went with a's invalidation")
	}
	c.invalidate(Sender("x@example.com"))
	if _, ok := c.get("b", t0); ok {
		t.Fatalf("b survived a sender invalidation")
	}
	gen := c.generation()
	c.invalidate(Account("d"))
	c.remember("d", over, t0, time.Hour, gen)
	if _, ok := c.get("d", t0); ok {
		t.Fatalf("a refusal read before its invalidation was cached")
	}
}

func TestParseAnnounced(t *testing.T) {
	for _, s := range []Subject{Account("alice"), Account("a:b"), Sender("x@example.com"), {KindClient, "192.0.2.1"}} {
		if got, ok := parseAnnounced(s.String()); !ok || got != s {
			t.Errorf("parseAnnounced(%q) = %v %v", s.String(), got, ok)
		}
	}
	for _, bad := range []string{"", "alice", "acct:", "user:alice"} {
		if got, ok := parseAnnounced(bad); ok {
			t.Errorf("parseAnnounced(%q) = %v, want not ok", bad, got)
		}
	}
}

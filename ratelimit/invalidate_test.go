package ratelimit_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// invalidationWait bounds the wait for an admin change to reach another
// instance: it travels by PUBLISH and is applied on that instance's own
// goroutine, so it is asynchronous (without it, the refusal would stay
// cached for RecentMax, a minute).
const invalidationWait = 10 * time.Second

// twoMilters returns two Redis stores on one server and one key prefix, as
// two milters of a provider, both subscribed to admin changes.
func twoMilters(t *testing.T, srv *redistest.Server, p ratelimit.Policy) (a, b *ratelimit.Redis) {
	t.Helper()
	ro := ratelimit.RedisOptions{URL: "redis://" + srv.Addr(), KeyPrefix: "inv:"}
	return subscribed(t, newRedis(t, ro, p, ratelimit.Options{})), subscribed(t, newRedis(t, ro, p, ratelimit.Options{}))
}

// refuse sends one message of account through s and checks that it was
// refused and that s caches the refusal.
func refuse(t *testing.T, s *ratelimit.Redis, account string) ratelimit.Decision {
	t.Helper()
	d, err := s.CheckAndCharge(context.Background(), msg(account, ""))
	if err != nil || d.Allowed {
		t.Fatalf("message of %s: %+v %v, want refused", account, d, err)
	}
	if _, ok := s.Recent(account); !ok {
		t.Fatalf("the refusal of %s is not cached", account)
	}
	return d
}

// admit sends one message of account through s and checks that it was
// admitted.
func admit(t *testing.T, s ratelimit.Limiter, account string) {
	t.Helper()
	if d, err := s.CheckAndCharge(context.Background(), msg(account, "")); err != nil || !d.Allowed {
		t.Fatalf("message of %s: %+v %v, want admitted", account, d, err)
	}
}

// waitForgotten waits until s no longer serves a cached refusal of account.
func waitForgotten(t *testing.T, s *ratelimit.Redis, account, after string) {
	t.Helper()
	redistest.WaitFor(t, invalidationWait, "the cached refusal of "+account+" to go after "+after, func() bool {
		_, ok := s.Recent(account)
		return !ok
	})
}

// lockedUntilUnlocked locks account through admin, has milter refuse it
// and cache the refusal, unlocks it through admin and waits until milter
// drops the refusal and admits the account's next message.
func lockedUntilUnlocked(t *testing.T, milter, admin *ratelimit.Redis, account string) {
	t.Helper()
	ctx := context.Background()
	if err := admin.Lock(ctx, account, "test", "ops", 0); err != nil {
		t.Fatal(err)
	}
	// The lock's own announcement may reach milter while its first refused
	// call is in flight; that refusal is then not cached (a refusal read
	// before a change that came in meanwhile never is), so wait until one
	// is.
	redistest.WaitFor(t, invalidationWait, "milter to cache the lock of "+account, func() bool {
		d, err := milter.CheckAndCharge(ctx, msg(account, ""))
		if err != nil || !d.Locked {
			t.Fatalf("%s: %+v %v, want locked", account, d, err)
		}
		_, ok := milter.Recent(account)
		return ok
	})
	if err := admin.Unlock(ctx, account, "ops"); err != nil {
		t.Fatal(err)
	}
	waitForgotten(t, milter, account, "an unlock")
	admit(t, milter, account)
}

// invalidationPolicy: two messages an hour, no automatic locks.
func invalidationPolicy() ratelimit.Policy {
	return ratelimit.Policy{Limits: ratelimit.Limits{ratelimit.AccountMessages: {rate(2, time.Hour)}}}
}

// overLimit uses up account's two messages through s and has the third
// refused (and cached).
func overLimit(t *testing.T, s *ratelimit.Redis, account string) {
	t.Helper()
	admit(t, s, account)
	admit(t, s, account)
	if d := refuse(t, s, account); d.Exceeded != ratelimit.AccountMessages {
		t.Fatalf("third message of %s: %+v, want over %s", account, d, ratelimit.AccountMessages)
	}
}

// TestRedisAdminChangesReachOtherInstances: milter A refuses and caches;
// an admin change made through B drops A's cached refusal, and only the
// one it concerns.
func TestRedisAdminChangesReachOtherInstances(t *testing.T) {
	srv := redistest.Start(t)
	a, b := twoMilters(t, srv, invalidationPolicy())
	ctx := context.Background()

	// A bystander whose refusal must survive changes to other accounts.
	overLimit(t, a, "bystander")

	lockedUntilUnlocked(t, a, b, "alice")

	overLimit(t, a, "bob")
	if err := b.Reset(ctx, ratelimit.Account("bob"), "", "ops"); err != nil {
		t.Fatal(err)
	}
	waitForgotten(t, a, "bob", "a reset")
	admit(t, a, "bob")

	overLimit(t, a, "carol")
	if err := b.SetOverride(ctx, ratelimit.Account("carol"), ratelimit.AccountMessages, []ratelimit.Rate{rate(5, time.Hour)}, 0, "ops"); err != nil {
		t.Fatal(err)
	}
	waitForgotten(t, a, "carol", "an override")
	admit(t, a, "carol")

	overLimit(t, a, "dave")
	if err := b.Exempt(ctx, ratelimit.Account("dave"), "newsletter", time.Hour, "ops"); err != nil {
		t.Fatal(err)
	}
	waitForgotten(t, a, "dave", "an exemption")
	if d, err := a.CheckAndCharge(ctx, msg("dave", "")); err != nil || !d.Allowed || !d.Exempt {
		t.Fatalf("dave after the exemption: %+v %v", d, err)
	}

	// Every change above named another account: the bystander's refusal
	// is still served, without asking Redis.
	if d, ok := a.Recent("bystander"); !ok || d.Exceeded != ratelimit.AccountMessages {
		t.Fatalf("the bystander's refusal went too: %+v %v", d, ok)
	}
	// An exemption of a sender may admit any account: it drops them all.
	if err := b.Exempt(ctx, ratelimit.Sender("list@example.com"), "list", time.Hour, "ops"); err != nil {
		t.Fatal(err)
	}
	waitForgotten(t, a, "bystander", "a sender exemption")
}

// TestRedisInvalidationAfterRestart: the subscription notices that Redis
// went away, comes back by itself when it returns, drops what it cached
// before (a change may have been missed meanwhile) and carries changes
// again.
func TestRedisInvalidationAfterRestart(t *testing.T) {
	srv := redistest.Start(t)
	a, b := twoMilters(t, srv, invalidationPolicy())
	ctx := context.Background()

	overLimit(t, a, "erin")
	srv.Kill()
	redistest.WaitFor(t, invalidationWait, "A to notice that Redis is gone", func() bool { return !a.Subscribed() })
	srv.Restart()
	redistest.WaitFor(t, invalidationWait, "both subscriptions to come back", func() bool { return a.Subscribed() && b.Subscribed() })
	if d, ok := a.Recent("erin"); ok {
		t.Fatalf("a refusal cached before the restart is still served after it: %+v", d)
	}

	// The connections of the per-message pool died with the server: wait
	// until both instances get answers again.
	for _, s := range []*ratelimit.Redis{a, b} {
		redistest.WaitFor(t, invalidationWait, "the store to answer again", func() bool {
			_, err := s.CheckAndCharge(ctx, msg("probe", ""))
			return err == nil
		})
	}
	lockedUntilUnlocked(t, a, b, "frank")
}

// TestMemoryAdminChangesDropRecent: the in-memory store's admin API drops
// the cached refusal at once (no waiting: it is one process).
func TestMemoryAdminChangesDropRecent(t *testing.T) {
	ctx := context.Background()
	changes := []struct {
		name   string
		locked bool // refused by a lock, not by the limit
		change func(m *ratelimit.Memory, account string) error
	}{
		{"unlock", true, func(m *ratelimit.Memory, a string) error { return m.Unlock(ctx, a, "ops") }},
		{"reset", false, func(m *ratelimit.Memory, a string) error { return m.Reset(ctx, ratelimit.Account(a), "", "ops") }},
		{"override", false, func(m *ratelimit.Memory, a string) error {
			return m.SetOverride(ctx, ratelimit.Account(a), ratelimit.AccountMessages, []ratelimit.Rate{rate(5, time.Hour)}, 0, "ops")
		}},
		{"exempt", false, func(m *ratelimit.Memory, a string) error {
			return m.Exempt(ctx, ratelimit.Account(a), "newsletter", 0, "ops")
		}},
		{"exempt sender", false, func(m *ratelimit.Memory, a string) error {
			return m.Exempt(ctx, ratelimit.Sender("list@example.com"), "list", 0, "ops")
		}},
	}
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			m := ratelimit.NewMemoryOptions(invalidationPolicy(), nil, ratelimit.Options{})
			t.Cleanup(func() { m.Close() })
			if c.locked {
				if err := m.Lock(ctx, "alice", "test", "ops", 0); err != nil {
					t.Fatal(err)
				}
			} else {
				admit(t, m, "alice")
				admit(t, m, "alice")
			}
			if d, _ := m.CheckAndCharge(ctx, msg("alice", "")); d.Allowed {
				t.Fatalf("message admitted before the change")
			}
			if _, ok := m.Recent("alice"); !ok {
				t.Fatalf("the refusal is not cached")
			}
			if err := c.change(m, "alice"); err != nil {
				t.Fatal(err)
			}
			if d, ok := m.Recent("alice"); ok {
				t.Fatalf("Recent still refuses after %s: %+v", c.name, d)
			}
			if d, err := m.CheckAndCharge(ctx, msg("alice", "list@example.com")); err != nil || !d.Allowed {
				t.Fatalf("message after %s: %+v %v, want admitted", c.name, d, err)
			}
		})
	}
}

// TestRedisAdminChangeNotPublished: a Redis ACL user without the channel
// can save a change but not publish it; the admin gets an error that says
// the change was saved, and the milter never confirms its subscription (so
// Recent keeps to its short bound).
func TestRedisAdminChangeNotPublished(t *testing.T) {
	srv := redistest.Start(t, "--user", "limited", "on", ">pw", "~noch:*", "+@all")
	ro := ratelimit.RedisOptions{URL: "redis://limited@" + srv.Addr(), Password: "pw", KeyPrefix: "noch:"}
	s := newRedis(t, ro, invalidationPolicy(), ratelimit.Options{})
	ctx := context.Background()
	err := s.Lock(ctx, "gina", "test", "ops", 0)
	if err == nil || !strings.Contains(err.Error(), `lock account "gina": saved, but telling the milters failed`) {
		t.Fatalf("lock without the channel: %v, want an error saying it was saved", err)
	}
	if d, err := s.CheckAndCharge(ctx, msg("gina", "")); err != nil || !d.Locked {
		t.Fatalf("gina after the lock: %+v %v, want locked", d, err)
	}
	if s.Subscribed() {
		t.Fatalf("subscribed to a channel the user may not read")
	}
}

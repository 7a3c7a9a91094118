package ratelimit_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/ratelimit"
)

// events collects delivered events.
type events chan ratelimit.Event

func (e events) next(t *testing.T, kind ratelimit.EventKind) ratelimit.Event {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-e:
			if ev.Kind == kind {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event within 5s", kind)
		}
	}
}

func TestStrikesAndLocks(t *testing.T) {
	ctx := context.Background()
	for _, sm := range bothStores(t) {
		t.Run(sm.name, func(t *testing.T) {
			p := ratelimit.Policy{
				Limits:  ratelimit.Limits{ratelimit.AccountMessages: {rate(1, time.Minute)}},
				Strikes: ratelimit.StrikePolicy{Threshold: 3, Window: time.Hour, LockFor: 2 * time.Hour},
			}
			ev := make(events, 100)
			s := sm.make(t, p, ratelimit.Options{OnEvent: func(e ratelimit.Event) { ev <- e }})
			strike := func(acct, id string, monitor bool) ratelimit.Decision {
				t.Helper()
				req := msg(acct, "")
				req.Outcome, req.MessageID, req.Monitor = ratelimit.Strike, id, monitor
				d, err := s.CheckAndCharge(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				if d.Allowed {
					t.Fatalf("a strike was allowed: %+v", d)
				}
				return d
			}
			// A retried message strikes once.
			if d := strike("a", "<m1@x>", false); d.Strikes != 1 {
				t.Fatalf("strikes %d, want 1", d.Strikes)
			}
			if d := strike("a", "<m1@x>", false); d.Strikes != 1 || d.NewlyLocked {
				t.Fatalf("retry of one message: %+v, want 1 strike", d)
			}
			// A rate-limit refusal strikes too.
			if d, _ := s.CheckAndCharge(ctx, msg("a", "")); !d.Allowed {
				t.Fatalf("first message refused: %+v", d)
			}
			if d, _ := s.CheckAndCharge(ctx, msg("a", "")); d.Exceeded != ratelimit.AccountMessages || d.Strikes != 2 {
				t.Fatalf("second message: %+v, want refused with 2 strikes", d)
			}
			d := strike("a", "<m3@x>", false)
			if !d.NewlyLocked || d.Strikes != 3 {
				t.Fatalf("third strike: %+v, want newly locked", d)
			}
			if e := ev.next(t, ratelimit.EventLock); e.Subject != ratelimit.Account("a") || e.Lock == nil || e.Lock.By != "auto" || e.Lock.Reason != "3 strikes within 1h" {
				t.Fatalf("lock event %+v", e)
			}
			d, err := s.CheckAndCharge(ctx, msg("a", ""))
			if err != nil || !d.Locked || d.Lock == nil || d.Lock.By != "auto" || d.Lock.Reason != "3 strikes within 1h" || d.Allowed {
				t.Fatalf("message of a locked account: %+v %v", d, err)
			}
			if d.RetryAfter < time.Hour || d.RetryAfter > 2*time.Hour {
				t.Fatalf("locked retry after %s, want up to 2h", d.RetryAfter)
			}
			if r, ok := s.Recent("a"); !ok || !r.Locked {
				t.Fatalf("Recent after a lock: %+v %v", r, ok)
			}
			locked, err := s.Locked(ctx)
			if err != nil || len(locked) != 1 || locked[0].Account != "a" {
				t.Fatalf("Locked() = %+v %v", locked, err)
			}
			if err := s.Unlock(ctx, "a", "alice-admin"); err != nil {
				t.Fatal(err)
			}
			ev.next(t, ratelimit.EventUnlock)
			if _, ok := s.Recent("a"); ok {
				t.Fatalf("Recent still refuses after an unlock")
			}
			if locked, _ := s.Locked(ctx); len(locked) != 0 {
				t.Fatalf("Locked() after unlock = %+v", locked)
			}
			st, err := s.Status(ctx, ratelimit.Account("a"))
			if err != nil || st.Lock != nil || st.Strikes != 0 || len(st.Audit) == 0 || st.Audit[0].By != "alice-admin" || st.Audit[0].Action != "unlock" {
				t.Fatalf("status after unlock: %+v %v", st, err)
			}

			// Monitor mode reports "would lock" and never locks.
			for i, id := range []string{"<1@x>", "<2@x>", "<3@x>", "<4@x>"} {
				d := strike("m", id, true)
				if d.NewlyLocked || d.Locked {
					t.Fatalf("monitor strike %d locked: %+v", i, d)
				}
				if (i == 2) != d.WouldLock {
					t.Fatalf("monitor strike %d: would lock %v", i, d.WouldLock)
				}
			}
			ev.next(t, ratelimit.EventWouldLock)
			if d, _ := s.CheckAndCharge(ctx, msg("m", "")); !d.Allowed {
				t.Fatalf("monitor-mode account refused: %+v", d)
			}

			// An admin lock with a reason, seen by the next message.
			if err := s.Lock(ctx, "b", "phished password", "bob-admin", 0); err != nil {
				t.Fatal(err)
			}
			d, _ = s.CheckAndCharge(ctx, msg("b", ""))
			if !d.Locked || d.Lock.Reason != "phished password" || d.Lock.By != "bob-admin" || !d.Lock.Until.IsZero() {
				t.Fatalf("admin lock: %+v", d.Lock)
			}
		})
	}
}

func TestAdminAPI(t *testing.T) {
	ctx := context.Background()
	for _, sm := range bothStores(t) {
		t.Run(sm.name, func(t *testing.T) {
			p := ratelimit.Policy{Limits: ratelimit.Limits{
				ratelimit.AccountMessages: {rate(2, time.Minute), rate(10, time.Hour)},
				ratelimit.SenderMessages:  {rate(5, time.Minute)},
			}}
			var clk testClock
			s := sm.make(t, p, ratelimit.Options{ClockOffset: clk.offset})
			charge := func(acct, sender string, want bool) {
				t.Helper()
				d, err := s.CheckAndCharge(ctx, msg(acct, sender))
				if err != nil || d.Allowed != want {
					t.Fatalf("%s/%s: allowed %v (%+v, %v), want %v", acct, sender, d.Allowed, d, err, want)
				}
			}
			charge("a", "x@a.example", true)
			clk.advance(10 * time.Second)
			charge("a", "x@a.example", true)
			charge("a", "x@a.example", false)
			charge("b", "y@b.example", true)

			st, err := s.Status(ctx, ratelimit.Account("a"))
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Limits) != 2 || st.Limits[0].Used != 2 || st.Limits[0].Remaining != 0 || st.Limits[1].Used != 2 || st.Limits[1].Remaining != 8 {
				t.Fatalf("status limits %+v", st.Limits)
			}
			if f := st.Limits[0].FreesIn; f < 49*time.Second || f > 51*time.Second {
				t.Fatalf("frees in %s, want about 50s", f)
			}
			ss, err := s.Status(ctx, ratelimit.Sender("X+1@A.example"))
			if err != nil || len(ss.Limits) != 1 || ss.Limits[0].Used != 2 {
				t.Fatalf("sender status %+v %v", ss, err)
			}

			top, err := s.Top(ctx, ratelimit.TopMessages, time.Hour, 2)
			if err != nil || len(top) != 2 || top[0].Count != 2 || top[1].Count != 2 {
				t.Fatalf("top = %+v %v", top, err)
			}
			for _, e := range top {
				if e.Subject != ratelimit.Account("a") && e.Subject != ratelimit.Sender("x@a.example") {
					t.Fatalf("top has %v", e.Subject)
				}
			}

			// Override: more room for a, for a while.
			if err := s.SetOverride(ctx, ratelimit.Account("a"), ratelimit.AccountMessages, []ratelimit.Rate{rate(3, time.Minute)}, 30*time.Minute, "ops"); err != nil {
				t.Fatal(err)
			}
			charge("a", "x@a.example", true)
			charge("a", "x@a.example", false)
			st, _ = s.Status(ctx, ratelimit.Account("a"))
			if len(st.Overrides) != 1 || !st.Limits[0].Override || st.Limits[0].Rate != rate(3, time.Minute) {
				t.Fatalf("status with override: %+v", st)
			}
			clk.advance(31 * time.Minute)
			charge("a", "x@a.example", true) // back to 2/1m and 10/1h: the old ones aged out of the minute
			if err := s.SetOverride(ctx, ratelimit.Sender("x@a.example"), ratelimit.AccountMessages, []ratelimit.Rate{rate(1, time.Minute)}, 0, "ops"); err == nil {
				t.Fatalf("an account limit overridden for a sender")
			}

			// Exemption: a sender beyond every limit.
			if err := s.Exempt(ctx, ratelimit.Sender("news@b.example"), "newsletter", 0, "ops"); err != nil {
				t.Fatal(err)
			}
			for range 4 {
				d, err := s.CheckAndCharge(ctx, msg("b", "News+x@b.example"))
				if err != nil || !d.Allowed || !d.Exempt {
					t.Fatalf("exempt sender: %+v %v", d, err)
				}
			}
			ex, err := s.Exemptions(ctx)
			if err != nil || len(ex) != 1 || ex[0].Subject != ratelimit.Sender("news@b.example") || ex[0].Reason != "newsletter" || ex[0].By != "ops" {
				t.Fatalf("exemptions %+v %v", ex, err)
			}
			if err := s.Unexempt(ctx, ratelimit.Sender("news@b.example"), "ops"); err != nil {
				t.Fatal(err)
			}
			charge("b", "news@b.example", true)
			charge("b", "news@b.example", true)
			charge("b", "news@b.example", false)
			if ex, _ := s.Exemptions(ctx); len(ex) != 0 {
				t.Fatalf("exemptions after removal %+v", ex)
			}

			// Reset one limit, then everything.
			if err := s.Reset(ctx, ratelimit.Account("b"), ratelimit.AccountMessages, "ops"); err != nil {
				t.Fatal(err)
			}
			charge("b", "z@b.example", true)
			st, _ = s.Status(ctx, ratelimit.Account("b"))
			if st.Limits[0].Used != 1 {
				t.Fatalf("used after reset %d, want 1", st.Limits[0].Used)
			}
			var actions []string
			for _, a := range st.Audit {
				actions = append(actions, a.By+":"+a.Action)
			}
			if strings.Join(actions, " ") != "ops:reset" {
				t.Fatalf("audit of b: %v", actions)
			}
			if err := s.Reset(ctx, ratelimit.Account("b"), "bogus", "ops"); err == nil {
				t.Fatalf("reset of an unknown limit succeeded")
			}
		})
	}
}

func TestParseSubject(t *testing.T) {
	for in, want := range map[string]ratelimit.Subject{
		"alice":              ratelimit.Account("alice"),
		"acct:bob@x.example": ratelimit.Account("bob@x.example"),
		// Either IDNA spelling, any case, a trailing dot: one subject.
		"acct:MJL@hé.mox.example.":          ratelimit.Account("mjl@xn--h-bga.mox.example"),
		"acct:mjl@xn--h-bga.mox.example":    ratelimit.Account("mjl@xn--h-bga.mox.example"),
		"mjl+x@HÉ.mox.example":              ratelimit.Sender("mjl@xn--h-bga.mox.example"),
		"sender:mjl@xn--h-bga.mox.example.": ratelimit.Subject{Kind: ratelimit.KindSender, Name: "mjl@xn--h-bga.mox.example"},
		"Bob+1@X.example":                   ratelimit.Sender("bob@x.example"),
		"192.0.2.1":                         ratelimit.Client(clientIP.Prev().Prev().Prev().Prev().Prev().Prev()),
		"client:2001:db8::1":                {Kind: ratelimit.KindClient, Name: "2001:db8::1"},
	} {
		got, err := ratelimit.ParseSubject(in)
		if err != nil || got != want {
			t.Errorf("ParseSubject(%q) = %v %v, want %v", in, got, err, want)
		}
	}
	if _, err := ratelimit.ParseSubject("client:nope"); err == nil {
		t.Errorf("client:nope parsed")
	}
}

func TestUsageEventsAndRecent(t *testing.T) {
	ctx := context.Background()
	for _, sm := range bothStores(t) {
		t.Run(sm.name, func(t *testing.T) {
			ev := make(events, 100)
			p := ratelimit.Policy{Limits: ratelimit.Limits{ratelimit.AccountMessages: {rate(5, time.Minute)}}}
			s := sm.make(t, p, ratelimit.Options{OnEvent: func(e ratelimit.Event) { ev <- e }, UsageThresholds: []float64{0.8, 1}})
			for i := range 5 {
				if d, err := s.CheckAndCharge(ctx, msg("a", "")); err != nil || !d.Allowed {
					t.Fatalf("message %d: %+v %v", i, d, err)
				}
				if _, ok := s.Recent("a"); ok {
					t.Fatalf("Recent refuses an account below its limit")
				}
			}
			if e := ev.next(t, ratelimit.EventUsage); e.Threshold != 0.8 || e.Used != 4 || e.Dimension != ratelimit.AccountMessages {
				t.Fatalf("first usage event %+v", e)
			}
			if e := ev.next(t, ratelimit.EventUsage); e.Threshold != 1 || e.Used != 5 {
				t.Fatalf("second usage event %+v", e)
			}
			d, err := s.CheckAndCharge(ctx, msg("a", ""))
			if err != nil || d.Allowed {
				t.Fatalf("6th message: %+v %v", d, err)
			}
			r, ok := s.Recent("a")
			if !ok || r.Exceeded != ratelimit.AccountMessages || r.RetryAfter <= 0 || r.RetryAfter > time.Minute {
				t.Fatalf("Recent after a refusal: %+v %v", r, ok)
			}
			if _, ok := s.Recent("b"); ok {
				t.Fatalf("Recent refuses another account")
			}
			if s.Stats().Calls != 6 {
				t.Fatalf("stats %+v, want 6 calls", s.Stats())
			}
		})
	}
}

package ratelimit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// startOfHour moves clk to one minute past the next clock hour, so that a
// test has the hour's other 59 minutes before the hour changes.
func startOfHour(clk *testClock) {
	now := time.Now().Add(clk.offset())
	clk.advance(now.Truncate(time.Hour).Add(time.Hour + time.Minute).Sub(now))
}

// TestSentPerHour: every message allowed counts in its hour of the store's
// clock (exempt ones too); a message refused by any limit (on Cluster, by
// the sender's slot after the account's call counted it: the follow-up
// takes it back), locked or struck does not; the hours asked are bounded.
func TestSentPerHour(t *testing.T) {
	for _, mk := range deskStores(t) {
		t.Run(mk.name, func(t *testing.T) {
			ctx := context.Background()
			var clk testClock
			startOfHour(&clk)
			pol := ratelimit.Policy{Limits: ratelimit.Limits{
				ratelimit.AccountMessages: {rate(100, time.Hour)},
				ratelimit.SenderMessages:  {rate(3, 10*time.Minute)},
			}}
			s := mk.make(t, pol, ratelimit.Options{ClockOffset: clk.offset})
			send := func(n int, want bool) {
				t.Helper()
				for range n {
					d, err := s.CheckAndCharge(ctx, msg("alice", "alice@example.com"))
					if err != nil || d.Allowed != want {
						t.Fatalf("CheckAndCharge: %+v, %v; want allowed %v", d, err, want)
					}
				}
			}
			last := func(hours int) []ratelimit.HourCount {
				t.Helper()
				h, err := s.SentPerHour(ctx, "alice", hours)
				if err != nil || len(h) != hours {
					t.Fatalf("SentPerHour(alice, %d) = %v, %v", hours, h, err)
				}
				return h
			}
			send(3, true)
			clk.advance(time.Hour + time.Minute)
			send(3, true)
			send(1, false) // the sender's limit
			// (on Cluster the account's count is taken back in the background,
			// its counter and its history in one call)
			redistest.WaitFor(t, 10*time.Second, "the refused message's charge taken back", func() bool {
				st, err := s.Status(ctx, ratelimit.Account("alice"))
				return err == nil && len(st.Limits) == 1 && st.Limits[0].Used == 3
			})
			h := last(24)
			if h[23].Sent != 3 || h[22].Sent != 3 || h[21].Sent != 0 {
				t.Fatalf("last hours %v, want 3 and 3 (the refused message not counted)", h[21:])
			}
			if want := time.Now().Add(clk.offset()).Truncate(time.Hour); !h[23].Start.Equal(want) || !h[22].Start.Equal(want.Add(-time.Hour)) {
				t.Errorf("hour starts %v, %v; want %v and the hour before", h[22].Start, h[23].Start, want)
			}
			if err := s.Exempt(ctx, ratelimit.Sender("alice@example.com"), "test", 0, "op"); err != nil {
				t.Fatal(err)
			}
			send(1, true) // exempt: sent, not charged
			if err := s.Lock(ctx, "alice", "test", "op", 0); err != nil {
				t.Fatal(err)
			}
			send(1, false) // locked
			if h := last(1); h[0].Sent != 4 {
				t.Errorf("this hour %v, want 4: the exempt message counted, the locked one not", h)
			}
			clk.advance(47 * time.Hour)
			h = last(ratelimit.HistoryHours)
			if h[0].Sent != 4 || h[len(h)-1].Sent != 0 {
				t.Errorf("47 hours on: oldest hour %v, now %v; want 4 and 0", h[0], h[len(h)-1])
			}
			for _, n := range []int{0, ratelimit.HistoryHours + 1} {
				if _, err := s.SentPerHour(ctx, "alice", n); err == nil {
					t.Errorf("SentPerHour(alice, %d): no error", n)
				}
			}
		})
	}
}

// TestDecisionsIndex: the decision records of an account's held, deferred
// and rejected messages are listed newest first with their rule, clause
// and reply, the account's list holds its newest 50, the list of every
// account every account's, and limit cuts them.
func TestDecisionsIndex(t *testing.T) {
	for _, mk := range deskStores(t) {
		t.Run(mk.name, func(t *testing.T) {
			ctx := context.Background()
			s := mk.make(t, ratelimit.Policy{}, ratelimit.Options{Instance: "mx1"}).(deskStore)
			record := func(rec ratelimit.MessageRecord) {
				t.Helper()
				if err := s.RecordDecision(ctx, rec); err != nil {
					t.Fatal(err)
				}
			}
			record(ratelimit.MessageRecord{QueueID: "A1", Account: "alice", Action: "hold", Rule: "BULK_SPAM", Held: true})
			record(ratelimit.MessageRecord{QueueID: "B1", Account: "bob", Action: "reject", Rule: "PHISH_URL"})
			record(ratelimit.MessageRecord{QueueID: "A2", MessageID: "<a2@example.com>", Account: "alice", Action: "defer",
				Rule: "RATE_ACCOUNT", Clause: "rate", Reply: "4.7.1 <script>too many</script>"})
			got, err := s.Decisions(ctx, "alice", 0)
			if err != nil || len(got) != 2 {
				t.Fatalf("Decisions(alice) = %+v, %v; want 2", got, err)
			}
			if g := got[0]; g.QueueID != "A2" || g.Action != "defer" || g.Rule != "RATE_ACCOUNT" || g.Clause != "rate" ||
				g.Reply != "4.7.1 <script>too many</script>" || g.MessageID != "a2@example.com" || g.At.IsZero() {
				t.Errorf("newest record %+v", g)
			}
			if got[1].QueueID != "A1" || !got[1].Held {
				t.Errorf("older record %+v, want the held A1", got[1])
			}
			all, err := s.Decisions(ctx, "", 0)
			if err != nil || len(all) != 3 {
				t.Errorf("Decisions of every account: %d, %v; want 3", len(all), err)
			}
			for i := range ratelimit.DecisionsPerAccount + 5 {
				record(ratelimit.MessageRecord{QueueID: fmt.Sprintf("C%03d", i), Account: "carol", Action: "reject", Rule: "R"})
			}
			got, err = s.Decisions(ctx, "carol", 0)
			if err != nil || len(got) != ratelimit.DecisionsPerAccount {
				t.Fatalf("Decisions(carol) = %d, %v; want the newest %d", len(got), err, ratelimit.DecisionsPerAccount)
			}
			if want := fmt.Sprintf("C%03d", ratelimit.DecisionsPerAccount+4); got[0].QueueID != want || got[len(got)-1].QueueID != "C005" {
				t.Errorf("carol's list runs %s .. %s, want %s .. C005", got[0].QueueID, got[len(got)-1].QueueID, want)
			}
			if got, _ := s.Decisions(ctx, "carol", 5); len(got) != 5 {
				t.Errorf("limit 5: %d records", len(got))
			}
			if got, _ := s.Decisions(ctx, "nobody", 0); len(got) != 0 {
				t.Errorf("an account without decisions: %+v", got)
			}
		})
	}
}

// TestAuditLog: every admin change of every subject is in the audit log,
// newest first, filtered by actor and subject and paged; a complaint's
// entry (written by its script, on Cluster in another slot) too.
func TestAuditLog(t *testing.T) {
	for _, mk := range deskStores(t) {
		t.Run(mk.name, func(t *testing.T) {
			ctx := context.Background()
			s := mk.make(t, ratelimit.Policy{}, ratelimit.Options{})
			sender := ratelimit.Sender("x@example.com")
			steps := []func() error{
				func() error { return s.Lock(ctx, "alice", "spam run", "op1", 0) },
				func() error { return s.Unlock(ctx, "alice", "op2") },
				func() error { return s.Exempt(ctx, sender, "newsletter", time.Hour, "op1") },
				func() error {
					return s.SetOverride(ctx, ratelimit.Account("bob"), ratelimit.AccountMessages, []ratelimit.Rate{rate(5, time.Hour)}, 0, "op1")
				},
				func() error {
					_, err := s.AddComplaint(ctx, ratelimit.Complaint{ID: "c1", Account: "bob", Type: "abuse"}, "pipe")
					return err
				},
			}
			for i, f := range steps {
				if err := f(); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			log, err := s.AuditLog(ctx, ratelimit.AuditQuery{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range log {
				got = append(got, e.By+" "+e.Action+" "+e.Subject.String())
			}
			want := []string{"pipe complaint acct:bob", "op1 override acct:bob", "op1 exempt sender:x@example.com", "op2 unlock acct:alice", "op1 lock acct:alice"}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("audit log\n%q\nwant\n%q", got, want)
			}
			if log[4].Detail == "" || log[4].At.IsZero() {
				t.Errorf("the lock's entry %+v: want its detail and time", log[4])
			}
			page, _ := s.AuditLog(ctx, ratelimit.AuditQuery{Actor: "op1", Offset: 1, Limit: 1})
			if len(page) != 1 || page[0].Action != "exempt" {
				t.Errorf("op1's second entry: %+v, want the exemption", page)
			}
			mine, _ := s.AuditLog(ctx, ratelimit.AuditQuery{Subject: ratelimit.Account("alice")})
			if len(mine) != 2 || mine[0].Action != "unlock" {
				t.Errorf("alice's entries: %+v", mine)
			}
			if none, _ := s.AuditLog(ctx, ratelimit.AuditQuery{Actor: "op1", Offset: 3}); len(none) != 0 {
				t.Errorf("past the end: %+v", none)
			}
		})
	}
}

// TestSentHistoryBounded: an account that sends every hour for 60 hours
// keeps at most HistoryHours hours of history (the Redis hash's fields,
// the memory store's map), the hash's TTL outlives the newest hour by at
// most 49 hours, and every hour kept reads back.
func TestSentHistoryBounded(t *testing.T) {
	pol := ratelimit.Policy{Limits: ratelimit.Limits{ratelimit.AccountMessages: {rate(100, time.Hour)}}}
	srv := redistest.Start(t)
	var clk testClock
	startOfHour(&clk)
	r := newRedis(t, ratelimit.RedisOptions{URL: "redis://" + srv.Addr(), KeyPrefix: "hist:"}, pol, ratelimit.Options{ClockOffset: clk.offset})
	m := ratelimit.NewMemoryOptions(pol, nil, ratelimit.Options{ClockOffset: clk.offset})
	t.Cleanup(func() { m.Close() })
	ctx := context.Background()
	for h := range 60 {
		for _, s := range []ratelimit.Limiter{r, m} {
			if d, err := s.CheckAndCharge(ctx, msg("alice", "alice@example.com")); err != nil || !d.Allowed {
				t.Fatalf("hour %d: %+v, %v", h, d, err)
			}
		}
		clk.advance(time.Hour)
	}
	clk.advance(-time.Hour) // back in the last hour sent in
	key := "hist:{acct:alice}:sent"
	if n, err := r.Client().HLen(ctx, key).Result(); err != nil || n != ratelimit.HistoryHours {
		t.Errorf("HLEN %s = %d, %v; want %d", key, n, err, ratelimit.HistoryHours)
	}
	if ttl, err := r.Client().PTTL(ctx, key).Result(); err != nil || ttl <= 0 || ttl > 49*time.Hour {
		t.Errorf("PTTL %s = %s, %v; want at most 49h", key, ttl, err)
	}
	if n := ratelimit.SentHoursKept(m, "alice"); n != ratelimit.HistoryHours {
		t.Errorf("the memory store keeps %d hours, want %d", n, ratelimit.HistoryHours)
	}
	for name, s := range map[string]store{"redis": r, "memory": m} {
		h, err := s.SentPerHour(ctx, "alice", ratelimit.HistoryHours)
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range h {
			if c.Sent != 1 {
				t.Errorf("%s: hour %d of %d (%s) sent %d, want 1", name, i, len(h), c.Start, c.Sent)
			}
		}
	}
}

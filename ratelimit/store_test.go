package ratelimit_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// store is what the table tests drive: both stores implement it.
type store interface {
	ratelimit.Limiter
	ratelimit.Admin
	Stats() ratelimit.Stats
}

// testClock shifts a store's clock: the in-memory clock and the Redis
// server clock alike (through Options.ClockOffset).
type testClock struct{ off atomic.Int64 }

func (c *testClock) advance(d time.Duration) { c.off.Add(int64(d)) }
func (c *testClock) offset() time.Duration   { return time.Duration(c.off.Load()) }

type storeMaker struct {
	name string
	make func(t *testing.T, p ratelimit.Policy, o ratelimit.Options) store
}

var prefixSeq atomic.Int64

// bothStores returns makers for the in-memory store and for a Redis store
// on one redis-server started for the test (each store its own prefix).
func bothStores(parent *testing.T) []storeMaker {
	var srv *redistest.Server
	return []storeMaker{
		{"memory", func(t *testing.T, p ratelimit.Policy, o ratelimit.Options) store {
			m := ratelimit.NewMemoryOptions(p, nil, o)
			t.Cleanup(func() { m.Close() })
			return m
		}},
		{"redis", func(t *testing.T, p ratelimit.Policy, o ratelimit.Options) store {
			if srv == nil {
				srv = redistest.Start(parent)
			}
			return subscribed(t, newRedis(t, ratelimit.RedisOptions{URL: "redis://" + srv.Addr()}, p, o))
		}},
	}
}

func newRedis(t testing.TB, ro ratelimit.RedisOptions, p ratelimit.Policy, o ratelimit.Options) *ratelimit.Redis {
	t.Helper()
	if ro.KeyPrefix == "" {
		ro.KeyPrefix = fmt.Sprintf("t%d:", prefixSeq.Add(1))
	}
	if ro.Timeout == 0 {
		ro.Timeout = 5 * time.Second // generous: the 2-core test machine is shared
	}
	r, err := ratelimit.NewRedis(ro, p, o)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// subscribed waits until r's subscription to admin changes is confirmed:
// refusals cached before are dropped then, which would race with a test
// that looks at Recent.
func subscribed(t testing.TB, r *ratelimit.Redis) *ratelimit.Redis {
	t.Helper()
	redistest.WaitFor(t, 10*time.Second, "the subscription to admin changes", r.Subscribed)
	return r
}

func rate(limit int64, w time.Duration) ratelimit.Rate {
	return ratelimit.Rate{Limit: limit, Window: w}
}

var clientIP = netip.MustParseAddr("192.0.2.7")

func msg(account, sender string, rcpts ...string) ratelimit.Request {
	if len(rcpts) == 0 {
		rcpts = []string{"someone@example.net"}
	}
	return ratelimit.Request{Account: account, Sender: sender, Recipients: rcpts, Authenticated: true, Client: clientIP}
}

type step struct {
	advance  time.Duration
	req      ratelimit.Request
	allowed  bool
	exceeded ratelimit.Dimension
	retry    time.Duration // checked within 300ms when set
}

func TestLimitSemantics(t *testing.T) {
	unauth := msg("client:192.0.2.7", "")
	unauth.Authenticated = false
	cases := []struct {
		name   string
		limits ratelimit.Limits
		policy func(*ratelimit.Policy)
		steps  []step
	}{
		{
			// A fixed 10s window [0,10) [10,20) admits 2 at 9s and 2 more at
			// 11s: four within two seconds. Any window of 10s holds at most 2.
			name:   "no double burst at a window edge",
			limits: ratelimit.Limits{ratelimit.AccountMessages: {rate(2, 10*time.Second)}},
			steps: []step{
				{advance: 9 * time.Second, req: msg("a", "a@x.example"), allowed: true},
				{req: msg("a", "a@x.example"), allowed: true},
				{advance: 2 * time.Second, req: msg("a", "a@x.example"), exceeded: ratelimit.AccountMessages, retry: 8 * time.Second},
				{advance: 8*time.Second + 500*time.Millisecond, req: msg("a", "a@x.example"), allowed: true},
				{req: msg("a", "a@x.example"), allowed: true},
				{req: msg("a", "a@x.example"), exceeded: ratelimit.AccountMessages},
			},
		},
		{
			name:   "every window applies",
			limits: ratelimit.Limits{ratelimit.AccountMessages: {rate(2, 10*time.Second), rate(3, time.Minute)}},
			steps: []step{
				{req: msg("a", ""), allowed: true},
				{req: msg("a", ""), allowed: true},
				{advance: 11 * time.Second, req: msg("a", ""), allowed: true},
				{req: msg("a", ""), exceeded: ratelimit.AccountMessages},
				{advance: 11 * time.Second, req: msg("a", ""), exceeded: ratelimit.AccountMessages},
				{advance: 40 * time.Second, req: msg("a", ""), allowed: true},
			},
		},
		{
			name:   "recipients cost one each and a refusal charges nothing",
			limits: ratelimit.Limits{ratelimit.AccountRecipients: {rate(5, time.Minute)}},
			steps: []step{
				{req: msg("a", "", "1@r.example", "2@r.example", "3@r.example"), allowed: true},
				{req: msg("a", "", "4@r.example", "5@r.example", "6@r.example"), exceeded: ratelimit.AccountRecipients},
				{req: msg("a", "", "4@r.example", "5@r.example"), allowed: true},
				{req: msg("a", "", "6@r.example"), exceeded: ratelimit.AccountRecipients},
			},
		},
		{
			name: "a refusal by one limit charges no other",
			limits: ratelimit.Limits{
				ratelimit.AccountMessages: {rate(3, time.Minute)},
				ratelimit.SenderMessages:  {rate(1, time.Minute)},
			},
			steps: []step{
				{req: msg("a", "s1@x.example"), allowed: true},
				{req: msg("a", "s1@x.example"), exceeded: ratelimit.SenderMessages},
				{req: msg("a", "s2@x.example"), allowed: true},
				{req: msg("a", "s3@x.example"), allowed: true},
				{req: msg("a", "s4@x.example"), exceeded: ratelimit.AccountMessages},
			},
		},
		{
			name:   "sender addresses are normalised",
			limits: ratelimit.Limits{ratelimit.SenderMessages: {rate(1, time.Minute)}},
			steps: []step{
				{req: msg("a", "Bob+news@Example.COM"), allowed: true},
				{req: msg("b", "bob@example.com"), exceeded: ratelimit.SenderMessages},
			},
		},
		{
			name:   "client limits count unauthenticated clients only",
			limits: ratelimit.Limits{ratelimit.ClientMessages: {rate(1, time.Minute)}},
			steps: []step{
				{req: unauth, allowed: true},
				{req: unauth, exceeded: ratelimit.ClientMessages},
				{req: msg("a", ""), allowed: true},
			},
		},
		{
			name:   "new recipients count once per window",
			limits: ratelimit.Limits{ratelimit.AccountNewRecipients: {rate(3, 24*time.Hour)}},
			steps: []step{
				{req: msg("a", "", "A@r.example", "b@r.example"), allowed: true},
				{req: msg("a", "", "a+tag@r.example", "b@r.example", "c@r.example"), allowed: true},
				{req: msg("a", "", "a@r.example", "d@r.example"), exceeded: ratelimit.AccountNewRecipients},
				{req: msg("a", "", "a@r.example", "b@r.example", "c@r.example", "c@r.example"), allowed: true},
				{advance: 25 * time.Hour, req: msg("a", "", "d@r.example", "e@r.example", "f@r.example"), allowed: true},
			},
		},
		{
			name:   "configured exemptions and overrides",
			limits: ratelimit.Limits{ratelimit.AccountMessages: {rate(1, time.Minute)}, ratelimit.SenderMessages: {rate(1, time.Minute)}},
			policy: func(p *ratelimit.Policy) {
				p.ExemptSenders = map[string]bool{"bulk@x.example": true}
				p.AccountOverrides = map[string]ratelimit.Limits{"big": {ratelimit.AccountMessages: {rate(2, time.Minute)}}}
			},
			steps: []step{
				{req: msg("a", "bulk@x.example"), allowed: true},
				{req: msg("a", "BULK+1@x.example"), allowed: true},
				{req: msg("big", "b1@x.example"), allowed: true},
				{req: msg("big", "b2@x.example"), allowed: true},
				{req: msg("big", "b3@x.example"), exceeded: ratelimit.AccountMessages},
			},
		},
	}
	many := make([]string, 1500)
	for i := range many {
		many[i] = fmt.Sprintf("r%d@big.example", i)
	}
	cases = append(cases, struct {
		name   string
		limits ratelimit.Limits
		policy func(*ratelimit.Policy)
		steps  []step
	}{
		name: "a message with many recipients",
		limits: ratelimit.Limits{
			ratelimit.AccountRecipients:    {rate(3000, time.Hour)},
			ratelimit.AccountNewRecipients: {rate(2000, 24*time.Hour)},
		},
		steps: []step{
			{req: msg("a", "", many...), allowed: true},
			{req: msg("a", "", many...), allowed: true}, // nobody new: 3000 recipients, 1500 new
			{req: msg("a", "", "x@big.example"), exceeded: ratelimit.AccountRecipients},
		},
	})
	for _, sm := range bothStores(t) {
		for _, tc := range cases {
			t.Run(sm.name+"/"+tc.name, func(t *testing.T) {
				p := ratelimit.Policy{Limits: tc.limits}
				if tc.policy != nil {
					tc.policy(&p)
				}
				var clk testClock
				s := sm.make(t, p, ratelimit.Options{ClockOffset: clk.offset})
				for i, st := range tc.steps {
					clk.advance(st.advance)
					d, err := s.CheckAndCharge(context.Background(), st.req)
					if err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
					if d.Allowed != st.allowed || d.Exceeded != st.exceeded {
						t.Fatalf("step %d: allowed %v exceeded %q, want %v %q (decision %+v)", i, d.Allowed, d.Exceeded, st.allowed, st.exceeded, d)
					}
					if st.retry > 0 && (d.RetryAfter < st.retry-300*time.Millisecond || d.RetryAfter > st.retry+300*time.Millisecond) {
						t.Fatalf("step %d: retry after %s, want about %s", i, d.RetryAfter, st.retry)
					}
				}
			})
		}
	}
}

func BenchmarkMemoryCheckAndCharge(b *testing.B) {
	p := ratelimit.Policy{Limits: ratelimit.Limits{
		ratelimit.AccountMessages:   {rate(1<<40, time.Hour), rate(1<<40, time.Minute)},
		ratelimit.AccountRecipients: {rate(1<<40, time.Hour)},
		ratelimit.SenderMessages:    {rate(1<<40, time.Hour)},
	}}
	m := ratelimit.NewMemory(p, nil)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		req := msg(fmt.Sprintf("acct%d", i%1000), "s@x.example", "r1@r.example", "r2@r.example")
		if _, err := m.CheckAndCharge(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

package ratelimit_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// counterHash is a counter as stored: its bucket fields, n and lo.
type counterHash struct {
	buckets map[int64]int64
	n, lo   int64
	hasLo   bool
}

// readCounter reads a counter hash through the store's own client (any
// topology) and checks that every field is what the layout says.
func readCounter(t *testing.T, r *ratelimit.Redis, key string) counterHash {
	t.Helper()
	h, err := r.Client().HGetAll(context.Background(), key).Result()
	if err != nil {
		t.Fatalf("HGETALL %s: %v", key, err)
	}
	c := counterHash{buckets: map[int64]int64{}}
	for f, v := range h {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("%s: field %s = %q is not an integer", key, f, v)
		}
		switch f {
		case "n":
			c.n = n
		case "lo":
			c.lo, c.hasLo = n, true
		default:
			i, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				t.Fatalf("%s: field %q is neither a bucket, n nor lo", key, f)
			}
			c.buckets[i] = n
		}
	}
	return c
}

func (c counterHash) sum() int64 {
	var s int64
	for _, n := range c.buckets {
		s += n
	}
	return s
}

// TestRedisCounterBounded charges one account for about fifteen minutes of
// server time (moved by ClockOffset) in steps of 0.1-1s with a jump now
// and then (20s: a short window's counter is idle for more than 64 buckets,
// a longer one's is not; 3m: every counter is), and checks after every
// message that each counter holds at most BucketsPerWindow+2 buckets, none
// empty, that n is their sum and the count the store reported, that lo is
// at most the oldest, and that the count lies between what an exact log
// would count over W and over W plus a bucket.
func TestRedisCounterBounded(t *testing.T) {
	srv := redistest.Start(t)
	p := ratelimit.Policy{Limits: ratelimit.Limits{
		ratelimit.AccountMessages:   {rate(1<<40, time.Minute), rate(1<<40, 10*time.Second)},
		ratelimit.AccountRecipients: {rate(1<<40, time.Minute)},
	}}
	var clk testClock
	r := newRedis(t, ratelimit.RedisOptions{URL: "redis://" + srv.Addr(), KeyPrefix: "bounded:"}, p, ratelimit.Options{ClockOffset: clk.offset})
	ctx := context.Background()
	type charge struct {
		at   time.Duration // clock offset when charged
		rcpt int64
	}
	var charges []charge
	counters := []struct {
		key    string
		dim    ratelimit.Dimension
		window time.Duration
	}{
		{"bounded:{acct:a}:msgs:1m", ratelimit.AccountMessages, time.Minute},
		{"bounded:{acct:a}:msgs:10s", ratelimit.AccountMessages, 10 * time.Second},
		{"bounded:{acct:a}:rcpts:1m", ratelimit.AccountRecipients, time.Minute},
	}
	most := map[string]int{}
	start := time.Now()
	for i := range 600 {
		switch {
		case i%200 == 149:
			clk.advance(20 * time.Second)
		case i%200 == 199:
			clk.advance(3 * time.Minute)
		default:
			clk.advance(100*time.Millisecond + time.Duration(i*7919%23)*40*time.Millisecond)
		}
		rcpts := make([]string, 1+i%3)
		for j := range rcpts {
			rcpts[j] = fmt.Sprintf("r%d@x.example", j)
		}
		d, err := r.CheckAndCharge(ctx, msg("a", "", rcpts...))
		if err != nil || !d.Allowed {
			t.Fatalf("message %d: %+v %v", i, d, err)
		}
		now := clk.offset()
		charges = append(charges, charge{now, int64(len(rcpts))})
		drift := time.Since(start) // real time that passed: every charge is at least this much older than its offset says
		for _, c := range counters {
			h := readCounter(t, r, c.key)
			if len(h.buckets) > ratelimit.BucketsPerWindow+2 {
				t.Fatalf("message %d: %s holds %d buckets", i, c.key, len(h.buckets))
			}
			most[c.key] = max(most[c.key], len(h.buckets))
			if h.n != h.sum() || !h.hasLo {
				t.Fatalf("message %d: %s has n=%d (lo set: %v), its buckets add up to %d", i, c.key, h.n, h.hasLo, h.sum())
			}
			for b, n := range h.buckets {
				if n <= 0 || b < h.lo {
					t.Fatalf("message %d: %s bucket %d holds %d (lo %d)", i, c.key, b, n, h.lo)
				}
			}
			var used int64 = -1
			for _, u := range d.Usage {
				if u.Dimension == c.dim && u.Rate.Window == c.window {
					used = u.Used
				}
			}
			if used != h.n {
				t.Fatalf("message %d: %s reported used %d, stores n=%d", i, c.key, used, h.n)
			}
			var atLeast, atMost int64
			bucket := c.window / ratelimit.BucketsPerWindow
			for _, ch := range charges {
				cost := int64(1)
				if c.dim == ratelimit.AccountRecipients {
					cost = ch.rcpt
				}
				if now-ch.at < c.window-drift {
					atLeast += cost
				}
				if now-ch.at <= c.window+bucket {
					atMost += cost
				}
			}
			if h.n < atLeast || h.n > atMost {
				t.Fatalf("message %d: %s counts %d, an exact log counts between %d and %d", i, c.key, h.n, atLeast, atMost)
			}
		}
	}
	// The traffic filled the counters up to their bound, so the bound was
	// tested: 60 or 61 buckets of the minute counter are live at times.
	t.Logf("most buckets held: %v", most)
	for _, c := range counters[:1] {
		if most[c.key] < ratelimit.BucketsPerWindow-5 {
			t.Errorf("%s held at most %d buckets: the test did not fill it", c.key, most[c.key])
		}
	}
}

// TestRedisOverrideWindows sets a runtime override whose windows the
// configuration lacks: the script writes their counters under the names
// FormatWindow gives (it formats a stored override's windows itself), so
// Status, which names them in Go, finds what was charged.
func TestRedisOverrideWindows(t *testing.T) {
	srv := redistest.Start(t)
	p := ratelimit.Policy{Limits: ratelimit.Limits{ratelimit.AccountMessages: {rate(100, time.Hour)}, ratelimit.AccountRecipients: {rate(100, time.Hour)}}}
	r := newRedis(t, ratelimit.RedisOptions{URL: "redis://" + srv.Addr(), KeyPrefix: "ow:"}, p, ratelimit.Options{})
	ctx := context.Background()
	rates := []ratelimit.Rate{rate(2, 90*time.Second), rate(5, 10*time.Minute), rate(7, 36*time.Hour)}
	if err := r.SetOverride(ctx, ratelimit.Account("a"), ratelimit.AccountMessages, rates, 0, "ops"); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if d, err := r.CheckAndCharge(ctx, msg("a", "")); err != nil || !d.Allowed {
			t.Fatalf("message %d: %+v %v", i, d, err)
		}
	}
	d, err := r.CheckAndCharge(ctx, msg("a", ""))
	if err != nil || d.Allowed || d.Exceeded != ratelimit.AccountMessages || d.Rate != rate(2, 90*time.Second) {
		t.Fatalf("third message: %+v %v, want refused by 2/90s", d, err)
	}
	if d.RetryAfter <= 80*time.Second || d.RetryAfter > 90*time.Second+90*time.Second/ratelimit.BucketsPerWindow {
		t.Fatalf("retry after %s, want about 90s", d.RetryAfter)
	}
	for _, k := range []string{"ow:{acct:a}:msgs:90s", "ow:{acct:a}:msgs:10m", "ow:{acct:a}:msgs:36h"} {
		if h := readCounter(t, r, k); h.n != 2 {
			t.Errorf("%s: n=%d, want 2", k, h.n)
		}
	}
	if h := readCounter(t, r, "ow:{acct:a}:msgs:1h"); h.n != 0 {
		t.Errorf("the configured 1h counter was charged under an override: n=%d", h.n)
	}
	st, err := r.Status(ctx, ratelimit.Account("a"))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Limits) != len(rates)+1 {
		t.Fatalf("status limits %+v", st.Limits)
	}
	for i, l := range st.Limits[:len(rates)] {
		if l.Rate != rates[i] || l.Used != 2 || !l.Override {
			t.Errorf("status limit %d: %+v, want 2 used of %s", i, l, rates[i])
		}
	}
	// Reset clears the counters of every window, also of an override no
	// longer in force, and only of the dimension asked.
	if err := r.SetOverride(ctx, ratelimit.Account("a"), ratelimit.AccountMessages, nil, 0, "ops"); err != nil {
		t.Fatal(err)
	}
	if err := r.Reset(ctx, ratelimit.Account("a"), ratelimit.AccountMessages, "ops"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ow:{acct:a}:msgs:90s", "ow:{acct:a}:msgs:10m", "ow:{acct:a}:msgs:36h"} {
		if n, err := r.Client().Exists(ctx, k).Result(); err != nil || n != 0 {
			t.Errorf("%s after a reset: exists %d %v", k, n, err)
		}
	}
	if h := readCounter(t, r, "ow:{acct:a}:rcpts:1h"); h.n != 2 {
		t.Errorf("a reset of messages took recipients: %+v", h)
	}
}

// TestRedisClusterRefund has a message refused by its sender's limit,
// which lives on another master than the account: the account's slot
// charged it, and the follow-up takes the charge back, leaving each of the
// account's counters as it was before the message (two rates of one window
// share a counter, charged and refunded once).
func TestRedisClusterRefund(t *testing.T) {
	addrs := redistest.Addrs(redistest.StartCluster(t, 3))
	p := ratelimit.Policy{Limits: ratelimit.Limits{
		ratelimit.AccountMessages:      {rate(10, time.Hour), rate(20, time.Hour), rate(10, time.Minute)},
		ratelimit.AccountRecipients:    {rate(100, time.Hour)},
		ratelimit.AccountNewRecipients: {rate(100, time.Hour)},
		ratelimit.SenderMessages:       {rate(1, time.Hour)},
	}}
	r := newRedis(t, ratelimit.RedisOptions{Addrs: addrs, Cluster: true, KeyPrefix: "rf:"}, p, ratelimit.Options{})
	if got, other := r.Client().ClusterKeySlot(context.Background(), "rf:{acct:bob}").Val(), r.Client().ClusterKeySlot(context.Background(), "rf:{sender:s@x.example}").Val(); got == other {
		t.Fatalf("account and sender share slot %d: the test needs two", got)
	}
	ctx := context.Background()
	keys := []string{"rf:{acct:bob}:msgs:1h", "rf:{acct:bob}:msgs:1m", "rf:{acct:bob}:rcpts:1h", "rf:{acct:bob}:newrcpts:1h"}
	if d, err := r.CheckAndCharge(ctx, msg("bob", "s@x.example", "r1@x.example", "r2@x.example")); err != nil || !d.Allowed {
		t.Fatalf("first message: %+v %v", d, err)
	}
	before := map[string]counterHash{}
	for _, k := range keys {
		before[k] = readCounter(t, r, k)
	}
	if before[keys[0]].n != 1 || before[keys[2]].n != 2 || before[keys[3]].n != 2 {
		t.Fatalf("after one message of two recipients: %v", before)
	}
	// Three recipients, one of them new: every account counter is charged
	// in the account's slot, the sender's refuses.
	d, err := r.CheckAndCharge(ctx, msg("bob", "s@x.example", "r1@x.example", "r2@x.example", "r3@x.example"))
	if err != nil || d.Allowed || d.Exceeded != ratelimit.SenderMessages {
		t.Fatalf("second message: %+v %v, want refused by the sender limit", d, err)
	}
	same := func(k string) bool {
		a, b := before[k], readCounter(t, r, k)
		if a.n != b.n || len(a.buckets) != len(b.buckets) {
			return false
		}
		for i, n := range a.buckets {
			if b.buckets[i] != n {
				return false
			}
		}
		return true
	}
	redistest.WaitFor(t, 5*time.Second, "the refund of the refused message", func() bool {
		for _, k := range keys {
			if !same(k) {
				return false
			}
		}
		return true
	})
	st, err := r.Status(ctx, ratelimit.Account("bob"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range st.Limits {
		if want := map[ratelimit.Dimension]int64{ratelimit.AccountMessages: 1, ratelimit.AccountRecipients: 2, ratelimit.AccountNewRecipients: 2}[l.Dimension]; l.Used != want {
			t.Errorf("status after the refund: %s %s used %d, want %d", l.Dimension, l.Rate, l.Used, want)
		}
	}
	// A reset finds the account's counters on its own master.
	if err := r.Reset(ctx, ratelimit.Account("bob"), "", "ops"); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if h := readCounter(t, r, k); len(h.buckets) != 0 || h.hasLo {
			t.Errorf("%s after a reset: %+v", k, h)
		}
	}
	if h := readCounter(t, r, "rf:{sender:s@x.example}:msgs:1h"); h.n != 1 {
		t.Errorf("the account's reset touched its sender: %+v", h)
	}
}

// TestRedisTopWindows ranks by windows the configuration has and has not:
// Top reads the counter of the shortest configured window at least as long
// as asked (else the longest) and sums its buckets within the window asked,
// on the client and on the server alike. A dimension with no limit
// configured ranks nobody.
func TestRedisTopWindows(t *testing.T) {
	srv := redistest.Start(t)
	p := ratelimit.Policy{Limits: ratelimit.Limits{
		ratelimit.AccountMessages: {rate(100, 10*time.Minute), rate(100, 24*time.Hour)},
		ratelimit.SenderMessages:  {rate(100, time.Hour)},
	}}
	var clk testClock
	r := newRedis(t, ratelimit.RedisOptions{URL: "redis://" + srv.Addr(), KeyPrefix: "tw:"}, p, ratelimit.Options{ClockOffset: clk.offset})
	ctx := context.Background()
	send := func(acct string, n int) {
		t.Helper()
		for i := range n {
			if d, err := r.CheckAndCharge(ctx, msg(acct, "")); err != nil || !d.Allowed {
				t.Fatalf("message %d of %s: %+v %v", i, acct, d, err)
			}
		}
	}
	send("early", 3) // two hours before the ranking
	clk.advance(time.Hour)
	if d, err := r.CheckAndCharge(ctx, msg("sender", "s@x.example")); err != nil || !d.Allowed {
		t.Fatalf("sender's message: %+v %v", d, err)
	}
	clk.advance(40 * time.Minute)
	send("mid", 2) // twenty minutes before
	clk.advance(20 * time.Minute)
	send("late", 1)
	for _, c := range []struct {
		by     ratelimit.TopBy
		window time.Duration
		want   map[string]int64
	}{
		// the 10m counter, buckets of 10s: only late's message
		{ratelimit.TopMessages, 5 * time.Minute, map[string]int64{"acct:late": 1}},
		{ratelimit.TopMessages, 10 * time.Minute, map[string]int64{"acct:late": 1}},
		// the 24h counter (buckets of 24 minutes) for accounts; for senders
		// the 1h one, the longest they have: its bucket of the sender's
		// message, just over an hour ago, is still stored (nothing charged
		// the counter since) and lies within the 3h asked
		{ratelimit.TopMessages, 30 * time.Minute, map[string]int64{"acct:late": 1, "acct:mid": 2}},
		{ratelimit.TopMessages, 3 * time.Hour, map[string]int64{"acct:late": 1, "acct:mid": 2, "acct:early": 3, "sender:s@x.example": 1, "acct:sender": 1}},
		{ratelimit.TopRecipients, 3 * time.Hour, map[string]int64{}},
	} {
		for name, top := range map[string]func(context.Context, ratelimit.TopBy, time.Duration, int) ([]ratelimit.TopEntry, error){"Top": r.Top, "TopOnServer": r.TopOnServer} {
			got, err := top(ctx, c.by, c.window, 0)
			if err != nil {
				t.Fatalf("%s by %s in %s: %v", name, c.by, c.window, err)
			}
			m := map[string]int64{}
			for _, e := range got {
				m[e.Subject.String()] = e.Count
			}
			if fmt.Sprint(m) != fmt.Sprint(c.want) {
				t.Errorf("%s by %s in %s = %v, want %v", name, c.by, c.window, m, c.want)
			}
		}
	}
}

// TestRedisRetryAfterWalksBuckets refuses charges that fit once one, two or
// none of the oldest buckets have left the window: the retry time is when
// the last of those leaves (each within a bucket, a second for 1m, of the
// time its charges were made plus the window).
func TestRedisRetryAfterWalksBuckets(t *testing.T) {
	srv := redistest.Start(t)
	p := ratelimit.Policy{Limits: ratelimit.Limits{ratelimit.AccountRecipients: {rate(5, time.Minute)}}}
	var clk testClock
	r := newRedis(t, ratelimit.RedisOptions{URL: "redis://" + srv.Addr(), KeyPrefix: "ra:"}, p, ratelimit.Options{ClockOffset: clk.offset})
	ctx := context.Background()
	rcpts := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("r%d@x.example", i)
		}
		return out
	}
	for i, n := range []int{2, 2} { // 2 at 0s, 2 at 10s
		if i > 0 {
			clk.advance(10 * time.Second)
		}
		if d, err := r.CheckAndCharge(ctx, msg("a", "", rcpts(n)...)); err != nil || !d.Allowed {
			t.Fatalf("charge %d: %+v %v", i, d, err)
		}
	}
	clk.advance(20 * time.Second) // now 30s: 4 of 5 used
	h := readCounter(t, r, "ra:{acct:a}:rcpts:1m")
	var idx []int64
	for i := range h.buckets {
		idx = append(idx, i)
	}
	if len(idx) != 2 {
		t.Fatalf("two charges 10s apart in buckets of 1s: %+v", h)
	}
	apart := time.Duration(max(idx[0], idx[1])-min(idx[0], idx[1])) * time.Second
	var retries []time.Duration
	for _, c := range []struct {
		cost int
		want time.Duration // when the charges it waits for leave, from now
	}{
		{3, 30 * time.Second}, // fits once the 0s bucket leaves
		{4, 40 * time.Second}, // once the 10s one leaves too
		{6, time.Minute},      // never: more than the limit
	} {
		d, err := r.CheckAndCharge(ctx, msg("a", "", rcpts(c.cost)...))
		if err != nil || d.Allowed || d.Exceeded != ratelimit.AccountRecipients {
			t.Fatalf("cost %d: %+v %v, want refused", c.cost, d, err)
		}
		// the bucket of a charge ends within a second after it; real time
		// passing makes the retry shorter
		if d.RetryAfter < c.want-time.Second || d.RetryAfter > c.want+time.Second {
			t.Errorf("cost %d: retry after %s, want %s to a second more", c.cost, d.RetryAfter, c.want)
		}
		retries = append(retries, d.RetryAfter)
	}
	// The two buckets leave as far apart as they are (the calls themselves
	// take a few milliseconds).
	if diff := retries[1] - retries[0]; diff > apart || diff < apart-200*time.Millisecond {
		t.Errorf("retries %v are %s apart, their buckets %s", retries, diff, apart)
	}
}

// TestRedisCounterClockSetBack charges, sets the server clock back half a
// minute and charges again, into a bucket older than the counter's oldest:
// once both have left the window, neither is counted any more.
func TestRedisCounterClockSetBack(t *testing.T) {
	srv := redistest.Start(t)
	p := ratelimit.Policy{Limits: ratelimit.Limits{ratelimit.AccountMessages: {rate(100, time.Minute)}}}
	var clk testClock
	r := newRedis(t, ratelimit.RedisOptions{URL: "redis://" + srv.Addr(), KeyPrefix: "back:"}, p, ratelimit.Options{ClockOffset: clk.offset})
	ctx := context.Background()
	for i, step := range []time.Duration{0, -30 * time.Second, 100 * time.Second} {
		clk.advance(step)
		d, err := r.CheckAndCharge(ctx, msg("a", ""))
		if err != nil || !d.Allowed || len(d.Usage) != 1 {
			t.Fatalf("message %d: %+v %v", i, d, err)
		}
		if want := []int64{1, 2, 1}[i]; d.Usage[0].Used != want {
			t.Fatalf("message %d: used %d, want %d", i, d.Usage[0].Used, want)
		}
	}
	if h := readCounter(t, r, "back:{acct:a}:msgs:1m"); len(h.buckets) != 1 || h.n != 1 {
		t.Fatalf("counter after both charges left the window: %+v", h)
	}
}

package ratelimit

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

func TestBucketArithmetic(t *testing.T) {
	if w := bucketWidth(time.Hour); w != 60_000_000 {
		t.Errorf("bucket width of 1h = %d µs, want 60,000,000", w)
	}
	if w := bucketWidth(time.Second); w != 16_667 {
		t.Errorf("bucket width of 1s = %d µs, want 16,667 (rounded up)", w)
	}
	for _, tc := range []struct{ t, w, want int64 }{
		{0, 10, 0}, {9, 10, 0}, {10, 10, 1}, {-1, 10, -1}, {-10, 10, -1}, {-11, 10, -2},
	} {
		if got := bucketOf(tc.t, tc.w); got != tc.want {
			t.Errorf("bucketOf(%d, %d) = %d, want %d", tc.t, tc.w, got, tc.want)
		}
	}
	// A window overlaps at most BucketsPerWindow+1 buckets, for any window.
	for _, w := range []time.Duration{time.Second, 7 * time.Second, 90 * time.Second, time.Hour, 24 * time.Hour} {
		for _, now := range []int64{1_795_766_406_332_490, 1_000_000_000_000_000, 59_999_999} {
			if n := bucketOf(now, bucketWidth(w)) - firstBucket(now, w) + 1; n > BucketsPerWindow+1 || n < BucketsPerWindow {
				t.Errorf("window %s at %d overlaps %d buckets, want %d or %d", w, now, n, BucketsPerWindow, BucketsPerWindow+1)
			}
		}
	}
}

func TestRetryAfter(t *testing.T) {
	const w = 60 * time.Second // buckets of 1 s
	now := int64(1000 * time.Second / time.Microsecond)
	first := firstBucket(now, w) // 940
	buckets := []bucket{{first + 5, 2}, {first, 1}, {first + 30, 3}}
	cases := []struct {
		name              string
		used, cost, limit int64
		want              time.Duration
	}{
		// freeing the oldest bucket (1) is enough: it leaves at (940+1)s + 60s
		{"oldest bucket frees enough", 6, 1, 6, time.Second},
		// two more are needed: the bucket of 2 must leave too
		{"two buckets", 6, 3, 6, 6 * time.Second},
		{"all buckets", 6, 6, 6, 31 * time.Second},
		{"cost above the limit never fits", 6, 7, 6, w},
		{"nothing counted", 0, 1, 0, w},
	}
	for _, tc := range cases {
		if got := retryAfter(append([]bucket(nil), buckets...), tc.used, tc.cost, tc.limit, now, w); got != tc.want {
			t.Errorf("%s: retry after %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestCountersNeverExceedAndBarelyUnderAdmit drives the in-memory store with
// random arrivals on a clock of its own and checks both sides of the
// bucketed window against the exact times: no window of length W ever holds
// more than N admitted messages, and a message is refused only when the
// span W plus one bucket before it already holds N.
func TestCountersNeverExceedAndBarelyUnderAdmit(t *testing.T) {
	const limit = 5
	windows := []time.Duration{10 * time.Second, 90 * time.Second}
	for _, w := range windows {
		clock := time.Unix(1_795_000_000, 0)
		m := NewMemory(Policy{Limits: Limits{AccountMessages: {{Limit: limit, Window: w}}}}, func() time.Time { return clock })
		rng := rand.New(rand.NewPCG(1, uint64(w)))
		var admitted []time.Time
		inSpan := func(from, to time.Time) int { // admitted in (from, to]
			n := 0
			for _, a := range admitted {
				if a.After(from) && !a.After(to) {
					n++
				}
			}
			return n
		}
		refused := 0
		for range 5000 {
			clock = clock.Add(time.Duration(rng.Int64N(int64(w / 8))))
			d, err := m.CheckAndCharge(context.Background(), Request{Account: "a", Recipients: []string{"r@x.example"}})
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed {
				admitted = append(admitted, clock)
				if n := inSpan(clock.Add(-w), clock); n > limit {
					t.Fatalf("window %s: %d admitted in (%s, %s], limit %d", w, n, clock.Add(-w), clock, limit)
				}
				continue
			}
			refused++
			slack := time.Duration(bucketWidth(w)) * time.Microsecond
			if n := inSpan(clock.Add(-w-slack), clock); n < limit {
				t.Fatalf("window %s: refused at %s with only %d admitted within W+B before", w, clock, n)
			}
			if d.RetryAfter <= 0 || d.RetryAfter > w+slack {
				t.Fatalf("window %s: retry after %s, want within (0, W+B]", w, d.RetryAfter)
			}
		}
		if refused == 0 || len(admitted) == 0 {
			t.Fatalf("window %s: %d admitted, %d refused: the load does not reach the limit", w, len(admitted), refused)
		}
	}
}

// TestRetryAfterIsWhenItFits checks the retry time the store answers: at
// that time the message is admitted, one bucket earlier it is not.
func TestRetryAfterIsWhenItFits(t *testing.T) {
	const w = time.Minute
	clock := time.Unix(1_795_000_000, 123_000_000)
	m := NewMemory(Policy{Limits: Limits{AccountMessages: {{Limit: 3, Window: w}}}}, func() time.Time { return clock })
	ask := func() Decision {
		d, err := m.CheckAndCharge(context.Background(), Request{Account: "a", Recipients: []string{"r@x.example"}})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for _, step := range []time.Duration{0, 7 * time.Second, 20 * time.Second} {
		clock = clock.Add(step)
		if d := ask(); !d.Allowed {
			t.Fatalf("message %s later refused: %+v", step, d)
		}
	}
	clock = clock.Add(10 * time.Second)
	d := ask()
	if d.Allowed || d.Exceeded != AccountMessages {
		t.Fatalf("fourth message within the window: %+v, want refused", d)
	}
	retry := d.RetryAfter
	clock = clock.Add(retry - time.Millisecond)
	if d := ask(); d.Allowed {
		t.Fatalf("admitted %s before the retry time", time.Millisecond)
	}
	clock = clock.Add(time.Millisecond)
	if d := ask(); !d.Allowed {
		t.Fatalf("refused at the retry time: %+v", d)
	}
}

// TestIdleCountersAreDropped: memory follows the subjects that are active,
// not every subject ever seen.
func TestIdleCountersAreDropped(t *testing.T) {
	clock := time.Unix(1_795_000_000, 0)
	m := NewMemory(Policy{Limits: Limits{
		AccountMessages:   {{Limit: 100, Window: time.Minute}, {Limit: 1000, Window: time.Hour}},
		AccountRecipients: {{Limit: 100, Window: time.Minute}},
	}}, func() time.Time { return clock })
	charge := func(acct string) {
		if d, err := m.CheckAndCharge(context.Background(), Request{Account: acct, Recipients: []string{"r@x.example"}}); err != nil || !d.Allowed {
			t.Fatalf("charge %s: %+v %v", acct, d, err)
		}
	}
	for i := range 50 {
		charge("old" + formatInt(int64(i)))
	}
	if n := len(m.counters); n != 150 {
		t.Fatalf("%d counters after 50 accounts with 3 windows, want 150", n)
	}
	// Past the minute windows (and their last bucket) but within the hour.
	clock = clock.Add(2 * time.Minute)
	charge("new")
	if n := len(m.counters); n != 50+3 {
		t.Fatalf("%d counters after the minute windows went idle, want 53 (50 hour windows, 3 of the new account)", n)
	}
	clock = clock.Add(2 * time.Hour)
	charge("new")
	if n := len(m.counters); n != 3 {
		t.Fatalf("%d counters after every old window went idle, want 3", n)
	}
}

// TestTopReadsTheKeptWindow: Top over a window shorter than the kept one
// counts only the buckets within it.
func TestTopReadsTheKeptWindow(t *testing.T) {
	clock := time.Unix(1_795_000_000, 0)
	m := NewMemory(Policy{Limits: Limits{AccountMessages: {{Limit: 100, Window: time.Hour}}}}, func() time.Time { return clock })
	for _, step := range []struct {
		acct    string
		advance time.Duration
	}{{"a", 0}, {"a", 0}, {"a", 0}, {"b", 20 * time.Minute}, {"b", 0}} {
		clock = clock.Add(step.advance)
		if _, err := m.CheckAndCharge(context.Background(), Request{Account: step.acct, Recipients: []string{"r@x.example"}}); err != nil {
			t.Fatal(err)
		}
	}
	top, err := m.Top(context.Background(), TopMessages, time.Hour, 10)
	if err != nil || len(top) != 2 || top[0] != (TopEntry{Account("a"), 3}) || top[1] != (TopEntry{Account("b"), 2}) {
		t.Fatalf("top over 1h = %v, %v; want a 3, b 2", top, err)
	}
	top, err = m.Top(context.Background(), TopMessages, 10*time.Minute, 10)
	if err != nil || len(top) != 1 || top[0] != (TopEntry{Account("b"), 2}) {
		t.Fatalf("top over 10m = %v, %v; want only b 2", top, err)
	}
}

package ratelimit

import (
	"sort"
	"time"
)

// Counters are sliding-window counters kept in buckets, the same in both
// stores:
//
//   - A rate N/W has its own counter per subject and dimension, split into
//     buckets of width B = W/BucketsPerWindow (rounded up to a microsecond);
//     bucket i holds what was charged in [i*B, (i+1)*B) on the store's clock
//     (microseconds since the Unix epoch).
//   - At time now the counter counts every bucket that overlaps the window
//     (now-W, now]: the buckets from bucketOf(now-W) to bucketOf(now). The
//     oldest one may lie partly before the window and is counted whole, so
//     the count is never lower than the exact count of the window.
//   - A message is admitted when, for every window, count + cost <= N. So no
//     window of length W ever holds more than N: the guarantee of an exact
//     sliding log, with no double burst at window edges. What is given up is
//     a little slack the other way: a charge is remembered for at least W and
//     at most W + B (for 200/1h: between 60 and 61 minutes).
//   - The state of a counter is bounded (BucketsPerWindow+1 buckets) whatever
//     the traffic: memory does not grow with the messages in the window.
//
// Retry times follow: a refused message fits once enough of the oldest
// buckets have left the window; bucket i leaves it at (i+1)*B + W.

// BucketsPerWindow is the number of buckets a window's counter is split into.
const BucketsPerWindow = 60

// bucketWidth returns the bucket width of a window, in microseconds.
func bucketWidth(window time.Duration) int64 {
	us := window.Microseconds()
	return max(1, (us+BucketsPerWindow-1)/BucketsPerWindow)
}

// bucketOf returns the index of the bucket holding time tUS (microseconds)
// for buckets of width w.
func bucketOf(tUS, w int64) int64 {
	if tUS < 0 {
		return -((-tUS + w - 1) / w)
	}
	return tUS / w
}

// firstBucket returns the oldest bucket counted at nowUS for window.
func firstBucket(nowUS int64, window time.Duration) int64 {
	return bucketOf(nowUS-window.Microseconds(), bucketWidth(window))
}

// bucketLeaves returns when (microseconds) bucket i stops being counted in
// window.
func bucketLeaves(i int64, window time.Duration) int64 {
	return (i+1)*bucketWidth(window) + window.Microseconds()
}

// bucket is one bucket of a counter: its index and what it holds.
type bucket struct {
	Index int64
	Count int64
}

// retryAfter says how long until a charge of cost fits under limit, given the
// live buckets of a window (any order) and the count they add up to: the time
// until enough of the oldest buckets have left the window. A cost above the
// limit never fits: the answer is then the window itself, as it is when
// nothing is counted.
func retryAfter(buckets []bucket, used, cost, limit, nowUS int64, window time.Duration) time.Duration {
	if cost > limit || used == 0 {
		return window
	}
	sort.Slice(buckets, func(i, j int) bool { return buckets[i].Index < buckets[j].Index })
	left := used
	for _, b := range buckets {
		left -= b.Count
		if left+cost <= limit {
			return time.Duration(bucketLeaves(b.Index, window)-nowUS) * time.Microsecond
		}
	}
	return window
}

// keptWindows returns the windows a counter is kept for in dimension d:
// every window of the configured limits and configured overrides, shortest
// first.
func (p *Policy) keptWindows(d Dimension) []time.Duration {
	seen := map[time.Duration]bool{}
	add := func(rates []Rate) {
		for _, r := range rates {
			seen[r.Window] = true
		}
	}
	add(p.Limits[d])
	for _, o := range p.AccountOverrides {
		add(o[d])
	}
	for _, o := range p.SenderOverrides {
		add(o[d])
	}
	out := make([]time.Duration, 0, len(seen))
	for w := range seen {
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// topWindow picks the kept counter Top reads for a requested window: the
// shortest kept window at least as long (its buckets newer than now-want are
// summed), else the longest kept one. ok is false when none is kept.
func topWindow(kept []time.Duration, want time.Duration) (time.Duration, bool) {
	if len(kept) == 0 {
		return 0, false
	}
	for _, w := range kept {
		if w >= want {
			return w, true
		}
	}
	return kept[len(kept)-1], true
}

// limitStatus describes one window of a subject from its live buckets.
func limitStatus(d Dimension, r Rate, override bool, buckets []bucket, nowUS int64) LimitStatus {
	ls := LimitStatus{Dimension: d, Rate: r, Override: override}
	oldest := int64(-1)
	for _, b := range buckets {
		if b.Count <= 0 {
			continue
		}
		ls.Used += b.Count
		if oldest < 0 || b.Index < oldest {
			oldest = b.Index
		}
	}
	ls.Remaining = max(0, r.Limit-ls.Used)
	if oldest >= 0 {
		ls.FreesIn = time.Duration(bucketLeaves(oldest, r.Window)-nowUS) * time.Microsecond
	}
	return ls
}

// dimensions returns the dimensions a ranking by messages or recipients
// reads.
func (by TopBy) dimensions() []Dimension {
	switch by {
	case TopMessages:
		return []Dimension{AccountMessages, SenderMessages, ClientMessages}
	case TopRecipients:
		return []Dimension{AccountRecipients}
	}
	return nil
}

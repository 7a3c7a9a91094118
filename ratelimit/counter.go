package ratelimit

import "time"

// ringSize is the number of buckets a counter of the in-memory store keeps:
// every bucket a window overlaps (BucketsPerWindow+1) and one to spare.
const ringSize = BucketsPerWindow + 2

// counter is the in-memory sliding-window counter of one window (see
// window.go): a fixed ring of buckets, so its size never depends on the
// traffic it counts.
type counter struct {
	window time.Duration
	width  int64 // bucket width, µs
	head   int64 // index of the newest bucket written
	counts [ringSize]int64
}

func newCounter(window time.Duration) *counter {
	return &counter{window: window, width: bucketWidth(window)}
}

func slotOf(i int64) int {
	return int(((i % ringSize) + ringSize) % ringSize)
}

// live returns the range of bucket indexes counted at nowUS that the ring
// still holds.
func (c *counter) live(nowUS int64) (from, to int64) {
	from = max(firstBucket(nowUS, c.window), c.head-ringSize+1)
	return from, c.head
}

// count returns what the window holds at nowUS.
func (c *counter) count(nowUS int64) int64 {
	var n int64
	from, to := c.live(nowUS)
	for i := from; i <= to; i++ {
		n += c.counts[slotOf(i)]
	}
	return n
}

// countSince returns what the buckets from bucketOf(sinceUS) on hold: the
// count over a shorter window than the counter's own (Top).
func (c *counter) countSince(nowUS, sinceUS int64) int64 {
	var n int64
	from, to := c.live(nowUS)
	from = max(from, bucketOf(sinceUS, c.width))
	for i := from; i <= to; i++ {
		n += c.counts[slotOf(i)]
	}
	return n
}

// buckets returns the non-empty buckets the window holds at nowUS, oldest
// first.
func (c *counter) buckets(nowUS int64) []bucket {
	var out []bucket
	from, to := c.live(nowUS)
	for i := from; i <= to; i++ {
		if n := c.counts[slotOf(i)]; n > 0 {
			out = append(out, bucket{Index: i, Count: n})
		}
	}
	return out
}

// add charges cost at nowUS. A clock that stepped back charges the newest
// bucket, so nothing is forgotten early.
func (c *counter) add(nowUS, cost int64) {
	cur := bucketOf(nowUS, c.width)
	switch {
	case cur-c.head >= ringSize:
		c.counts = [ringSize]int64{}
		c.head = cur
	case cur > c.head:
		for i := c.head + 1; i <= cur; i++ {
			c.counts[slotOf(i)] = 0
		}
		c.head = cur
	}
	c.counts[slotOf(c.head)] += cost
}

// idle reports whether nothing the counter holds is counted any more.
func (c *counter) idle(nowUS int64) bool {
	return bucketLeaves(c.head, c.window) <= nowUS
}

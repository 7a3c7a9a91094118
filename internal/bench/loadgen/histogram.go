package loadgen

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram records durations with a relative error below 1% (a log-linear
// layout like HdrHistogram's: 128 linear sub-buckets per power of two) in a
// fixed 59 KiB, safe for concurrent use without locks. The maximum is exact.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	total  atomic.Uint64
	sum    atomic.Uint64
	max    atomic.Uint64
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits // sub-buckets per power of two
	histLinear  = 2 * histSub      // values below this are exact
	histBuckets = histLinear + (64-histSubBits-1)*histSub
)

func histIndex(v uint64) int {
	if v < histLinear {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1
	return histLinear + (shift-1)*histSub + int(v>>shift) - histSub
}

// histBounds returns the smallest value of bucket i and the bucket's width.
func histBounds(i int) (low, width uint64) {
	if i < histLinear {
		return uint64(i), 1
	}
	shift := (i-histLinear)/histSub + 1
	sub := uint64((i-histLinear)%histSub + histSub)
	return sub << shift, 1 << shift
}

// Record adds one duration; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[histIndex(v)].Add(1)
	h.total.Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total.Load() }

// Max returns the largest recorded value.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Mean returns the arithmetic mean, zero when empty.
func (h *Histogram) Mean() time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / n)
}

// Quantile returns the value below or at which a share q (0..1) of the
// recorded values lie, to within the bucket precision; never more than Max.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			low, width := histBounds(i)
			return time.Duration(min(low+(width-1)/2, h.max.Load()))
		}
	}
	return h.Max()
}

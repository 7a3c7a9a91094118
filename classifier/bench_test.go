package classifier

import (
	"slices"
	"testing"
	"time"
)

// BenchmarkSpamProbabilityCorpus measures SpamProbability on the held-out
// half of the real-mail corpus, one message per iteration (round robin),
// with a model trained on the other half (skipped without
// $ABUSEMILTER_CORPUS).
func BenchmarkSpamProbabilityCorpus(b *testing.B) {
	m, test := trainOnHalf(b, loadCorpus(b))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		m.SpamProbability(test[i%len(test)].msg)
	}
}

// BenchmarkSpamProbabilitySpread times SpamProbability on every held-out
// corpus message (the fastest of 20 runs each, which leaves out the
// machine's other work) and reports the median, the 99th percentile and
// the slowest message in µs; the classifier reads at most the first 24 KiB
// of a body, which bounds the slowest.
func BenchmarkSpamProbabilitySpread(b *testing.B) {
	m, test := trainOnHalf(b, loadCorpus(b))
	const runs = 20
	var times []float64
	for b.Loop() {
		times = times[:0]
		for _, cm := range test {
			best := time.Hour
			for range runs {
				start := time.Now()
				m.SpamProbability(cm.msg)
				best = min(best, time.Since(start))
			}
			times = append(times, float64(best.Nanoseconds())/1e3)
		}
	}
	slices.Sort(times)
	b.ReportMetric(times[len(times)/2], "p50-µs")
	b.ReportMetric(times[len(times)*99/100], "p99-µs")
	b.ReportMetric(times[len(times)-1], "max-µs")
}

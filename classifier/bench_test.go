package classifier

import "testing"

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

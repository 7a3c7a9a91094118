package scoring_test

import (
	"context"
	"testing"

	"github.com/abusemilter/abusemilter/ratelimit"
	"github.com/abusemilter/abusemilter/scoring"
)

// corpusHam is the corpus's ham (skipped without $ABUSEMILTER_CORPUS).
func corpusHam(b *testing.B) []corpusMessage {
	var ham []corpusMessage
	for _, cm := range loadCorpus(b) {
		if cm.class == "ham" {
			ham = append(ham, cm)
		}
	}
	return ham
}

// BenchmarkCampaignFingerprints measures the fingerprints alone (body
// bands, link domains and URLs) per ham message of the corpus.
func BenchmarkCampaignFingerprints(b *testing.B) {
	ham := corpusHam(b)
	var bands, links int
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		fp := scoring.MessageFingerprints(ham[i%len(ham)].msg)
		bands += len(fp.Bands)
		links += len(fp.Domains) + len(fp.URLs)
	}
	b.ReportMetric(float64(bands+links)/float64(b.N), "fingerprints/op")
}

// BenchmarkEngineCampaigns measures CheckMessage per ham message of the
// corpus over the in-memory store, with campaigns off and on: the
// difference is the fingerprints plus the in-memory count (the Redis
// call's cost is BenchmarkRedisObserveCampaign in ratelimit).
func BenchmarkEngineCampaigns(b *testing.B) {
	ham := corpusHam(b)
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			lim := ratelimit.NewMemory(ratelimit.Policy{}, nil)
			e := scoring.NewEngine(nil, lim, scoring.Options{Campaigns: scoring.CampaignOptions{Enabled: on}})
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				cm := &ham[i%len(ham)]
				e.CheckMessage(ctx, cm.env, cm.msg, scoring.Identity{Account: cm.acct})
			}
		})
	}
}

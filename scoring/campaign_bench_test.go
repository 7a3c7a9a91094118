package scoring_test

import (
	"context"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
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
// corpus, one at a time, with campaigns off and on, over the in-memory
// store (the difference is the fingerprints plus the in-memory count) and
// over a real redis-server (the campaign call runs while the rules do, so
// the difference is what it adds to a message's latency; its server cost
// is BenchmarkRedisObserveCampaign in ratelimit).
func BenchmarkEngineCampaigns(b *testing.B) {
	ham := corpusHam(b)
	parent := b
	var srv *redistest.Server
	for _, store := range []string{"memory", "redis"} {
		for _, on := range []bool{false, true} {
			name := store + "/off"
			if on {
				name = store + "/on"
			}
			b.Run(name, func(b *testing.B) {
				var lim ratelimit.Limiter = ratelimit.NewMemory(ratelimit.Policy{}, nil)
				if store == "redis" {
					if srv == nil {
						srv = redistest.Start(parent) // for every sub-benchmark

					}
					r, err := ratelimit.NewRedis(ratelimit.RedisOptions{URL: "redis://" + srv.Addr(), KeyPrefix: name + ":", Timeout: 5 * time.Second}, ratelimit.Policy{}, ratelimit.Options{})
					if err != nil {
						b.Fatal(err)
					}
					lim = r
				}
				b.Cleanup(func() { lim.Close() })
				e := scoring.NewEngine(nil, lim, scoring.Options{Campaigns: scoring.CampaignOptions{Enabled: on}})
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					cm := &ham[i%len(ham)]
					if v := e.CheckMessage(ctx, cm.env, cm.msg, scoring.Identity{Account: cm.acct}); v.LimiterError != "" || v.CampaignError != "" {
						b.Fatalf("store errors: %q %q", v.LimiterError, v.CampaignError)
					}
				}
			})
		}
	}
}

package ratelimit_test

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// TestTopOnServerAgreesWithTop charges real traffic through the store, on
// a single node and on a three-master Cluster, and checks that the ranking
// made on the server is the one Top makes on the client, for every -n
// (ties at the cut included).
func TestTopOnServerAgreesWithTop(t *testing.T) {
	single := redistest.Start(t)
	cluster := redistest.StartCluster(t, 3)
	addrs := redistest.Addrs(cluster)
	p := ratelimit.Policy{Limits: ratelimit.Limits{
		ratelimit.AccountMessages:   {{Limit: 1000, Window: time.Hour}},
		ratelimit.AccountRecipients: {{Limit: 10000, Window: time.Hour}},
		ratelimit.SenderMessages:    {{Limit: 1000, Window: time.Hour}},
		ratelimit.ClientMessages:    {{Limit: 1000, Window: time.Hour}},
	}, Strikes: ratelimit.StrikePolicy{Threshold: 100, Window: time.Hour}}
	for name, ro := range map[string]ratelimit.RedisOptions{
		"single":  {URL: "redis://" + single.Addr(), KeyPrefix: "tos:", Timeout: 5 * time.Second},
		"cluster": {Addrs: addrs, Cluster: true, KeyPrefix: "tos:", Timeout: 5 * time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			r, err := ratelimit.NewRedis(ro, p, ratelimit.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			ctx := context.Background()
			for i := range 300 {
				req := ratelimit.Request{
					Account:       fmt.Sprintf("a%02d", i%37),
					Sender:        fmt.Sprintf("s%d@example.com", i%23),
					Client:        netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 11)}),
					Authenticated: i%3 != 0,
					Recipients:    make([]string, 1+i%4),
					MessageID:     fmt.Sprintf("<%d@x>", i),
				}
				for j := range req.Recipients {
					req.Recipients[j] = fmt.Sprintf("r%d@dest.example", j)
				}
				if i%5 == 0 {
					req.Outcome = ratelimit.Strike
				}
				if _, err := r.CheckAndCharge(ctx, req); err != nil {
					t.Fatal(err)
				}
			}
			for _, by := range []ratelimit.TopBy{ratelimit.TopMessages, ratelimit.TopRecipients, ratelimit.TopStrikes} {
				for _, n := range []int{0, 1, 5, 20} {
					// the hour the counters keep, a shorter and a longer window
					for _, w := range []time.Duration{time.Hour, 10 * time.Minute, 24 * time.Hour} {
						want, err := r.Top(ctx, by, w, n)
						if err != nil {
							t.Fatal(err)
						}
						got, err := r.TopOnServer(ctx, by, w, n)
						if err != nil {
							t.Fatal(err)
						}
						if len(want) == 0 || !reflect.DeepEqual(got, want) {
							t.Fatalf("by %s in %s -n %d:\n got  %v\n want %v", by, w, n, got, want)
						}
					}
				}
			}
			if _, err := r.TopOnServer(ctx, "bytes", time.Hour, 5); err == nil {
				t.Error("TopOnServer by bytes: no error")
			}
		})
	}
}

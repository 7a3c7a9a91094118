package ratelimit_test

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// campaignStore is a campaign counter with the clock it runs on.
type campaignStore struct {
	ratelimit.CampaignCounter
	clock *testClock
}

type campaignMaker struct {
	name string
	make func(t *testing.T) campaignStore
}

// campaignStores returns makers for the in-memory store, a Redis store on
// one redis-server and a Redis store on a three-master Cluster.
func campaignStores(parent *testing.T) []campaignMaker {
	var single *redistest.Server
	var cluster []string
	redisMaker := func(ro func() ratelimit.RedisOptions) func(t *testing.T) campaignStore {
		return func(t *testing.T) campaignStore {
			clk := &testClock{}
			return campaignStore{newRedis(t, ro(), ratelimit.Policy{}, ratelimit.Options{ClockOffset: clk.offset}), clk}
		}
	}
	return []campaignMaker{
		{"memory", func(t *testing.T) campaignStore {
			clk := &testClock{}
			m := ratelimit.NewMemoryOptions(ratelimit.Policy{}, nil, ratelimit.Options{ClockOffset: clk.offset})
			t.Cleanup(func() { m.Close() })
			return campaignStore{m, clk}
		}},
		{"redis", redisMaker(func() ratelimit.RedisOptions {
			if single == nil {
				single = redistest.Start(parent)
			}
			return ratelimit.RedisOptions{URL: "redis://" + single.Addr()}
		})},
		{"cluster", redisMaker(func() ratelimit.RedisOptions {
			if cluster == nil {
				cluster = redistest.Addrs(redistest.StartCluster(parent, 3))
			}
			return ratelimit.RedisOptions{Addrs: cluster, Cluster: true, KeyPrefix: fmt.Sprintf("c%d:", prefixSeq.Add(1))}
		})},
	}
}

// observe is one ObserveCampaign call and the counts it must return.
type observe struct {
	advance time.Duration
	account string
	fps     []ratelimit.Fingerprint
	want    []int
}

func fp(key string, w time.Duration) ratelimit.Fingerprint {
	return ratelimit.Fingerprint{Key: key, Window: w}
}

// TestCampaignCounterContract runs the same sequences against every store:
// distinct accounts per fingerprint, each fingerprint on its own window.
func TestCampaignCounterContract(t *testing.T) {
	body, dom := fp("body:00000000000000aa", time.Hour), fp("dom:evil.example", 10*time.Minute)
	cases := []struct {
		name  string
		steps []observe
	}{
		{
			name: "distinct accounts, each counted once",
			steps: []observe{
				{account: "a", fps: []ratelimit.Fingerprint{body}, want: []int{1}},
				{account: "a", fps: []ratelimit.Fingerprint{body}, want: []int{1}},
				{account: "b", fps: []ratelimit.Fingerprint{body}, want: []int{2}},
				{account: "c", fps: []ratelimit.Fingerprint{body, dom}, want: []int{3, 1}},
				{account: "a", fps: []ratelimit.Fingerprint{dom, body}, want: []int{2, 3}},
			},
		},
		{
			name: "fingerprints are counted apart",
			steps: []observe{
				{account: "a", fps: []ratelimit.Fingerprint{fp("body:01", time.Hour)}, want: []int{1}},
				{account: "b", fps: []ratelimit.Fingerprint{fp("body:02", time.Hour)}, want: []int{1}},
				{account: "c", fps: []ratelimit.Fingerprint{fp("body:01", time.Hour), fp("body:02", time.Hour), fp("body:03", time.Hour)}, want: []int{2, 2, 1}},
			},
		},
		{
			name: "each fingerprint forgets accounts past its own window",
			steps: []observe{
				{account: "a", fps: []ratelimit.Fingerprint{body, dom}, want: []int{1, 1}},
				{advance: 5 * time.Minute, account: "b", fps: []ratelimit.Fingerprint{body, dom}, want: []int{2, 2}},
				// a's dom entry is 11 minutes old: out of its 10m window.
				{advance: 6 * time.Minute, account: "c", fps: []ratelimit.Fingerprint{body, dom}, want: []int{3, 2}},
				// Sending again renews an account's time.
				{advance: 50 * time.Minute, account: "a", fps: []ratelimit.Fingerprint{body}, want: []int{3}},
				// b (at 5m) and c (at 11m) are an hour old at 71m.
				{advance: 10 * time.Minute, account: "d", fps: []ratelimit.Fingerprint{body}, want: []int{2}},
				{advance: 61 * time.Minute, account: "e", fps: []ratelimit.Fingerprint{body, dom}, want: []int{1, 1}},
			},
		},
	}
	for _, mk := range campaignStores(t) {
		t.Run(mk.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					s := mk.make(t)
					for i, st := range tc.steps {
						s.clock.advance(st.advance)
						got, err := s.ObserveCampaign(context.Background(), st.account, st.fps)
						if err != nil {
							t.Fatalf("step %d: %v", i, err)
						}
						if !reflect.DeepEqual(got, st.want) {
							t.Fatalf("step %d (%s): counts %v, want %v", i, st.account, got, st.want)
						}
					}
				})
			}
			t.Run("capped", func(t *testing.T) {
				s := mk.make(t)
				f := []ratelimit.Fingerprint{fp("dom:popular.example", time.Hour)}
				var got []int
				for i := range ratelimit.CampaignMaxAccounts + 5 {
					var err error
					if got, err = s.ObserveCampaign(context.Background(), fmt.Sprintf("acct%d", i), f); err != nil {
						t.Fatal(err)
					}
				}
				if got[0] != ratelimit.CampaignMaxAccounts {
					t.Fatalf("count after %d accounts: %d, want the cap %d", ratelimit.CampaignMaxAccounts+5, got[0], ratelimit.CampaignMaxAccounts)
				}
			})
		})
	}
}

// TestCampaignRedisKeys checks the Redis layout: one expiring sorted set
// per fingerprint, named PREFIX{fp:KEY}, one round trip per call, and on a
// single node one script call.
func TestCampaignRedisKeys(t *testing.T) {
	srv := redistest.Start(t)
	r := newRedis(t, ratelimit.RedisOptions{URL: "redis://" + srv.Addr(), KeyPrefix: "camp:"}, ratelimit.Policy{}, ratelimit.Options{})
	before := commandCalls(t, srv, "evalsha") + commandCalls(t, srv, "eval")
	fps := []ratelimit.Fingerprint{fp("body:00000000000000aa", time.Hour), fp("dom:evil.example", 10*time.Minute), fp("url:0123456789abcdef", 10*time.Minute)}
	if _, err := r.ObserveCampaign(context.Background(), "alice", fps); err != nil {
		t.Fatal(err)
	}
	if calls := commandCalls(t, srv, "evalsha") + commandCalls(t, srv, "eval") - before; calls > 2 { // EVALSHA, EVAL once when NOSCRIPT
		t.Fatalf("%d script calls for one message", calls)
	}
	for _, f := range fps {
		key := "camp:{fp:" + f.Key + "}"
		typ, err := srv.Do("TYPE", key)
		if err != nil || typ != "zset" {
			t.Fatalf("TYPE %s = %q, %v; want zset", key, typ, err)
		}
		ttl, err := srv.Do("PTTL", key)
		if err != nil {
			t.Fatal(err)
		}
		var ms int64
		fmt.Sscan(ttl, &ms)
		if max := (f.Window + time.Second).Milliseconds(); ms <= 0 || ms > max {
			t.Fatalf("PTTL %s = %d ms, want (0, %d]", key, ms, max)
		}
		if members, _ := srv.Do("ZRANGE", key, "0", "-1"); members != "alice" {
			t.Fatalf("ZRANGE %s = %q, want alice", key, members)
		}
	}
}

// TestCampaignClusterSpreads checks that fingerprint keys spread over the
// masters of a Cluster, one call working on every slot at once.
func TestCampaignClusterSpreads(t *testing.T) {
	nodes := redistest.StartCluster(t, 3)
	r := newRedis(t, ratelimit.RedisOptions{Addrs: redistest.Addrs(nodes), Cluster: true, KeyPrefix: "spread:"}, ratelimit.Policy{}, ratelimit.Options{})
	var fps []ratelimit.Fingerprint
	for i := range 12 {
		fps = append(fps, fp(fmt.Sprintf("body:%016x", i*7919), time.Hour))
	}
	for _, acct := range []string{"a", "b"} {
		got, err := r.ObserveCampaign(context.Background(), acct, fps)
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range got {
			if want := map[string]int{"a": 1, "b": 2}[acct]; n != want {
				t.Fatalf("%s: fingerprint %d count %d, want %d", acct, i, n, want)
			}
		}
	}
	holding := 0
	for _, n := range nodes {
		keys, err := n.Do("KEYS", "spread:{fp:*")
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(keys) != "" {
			holding++
		}
	}
	if holding < 2 {
		t.Fatalf("12 fingerprints on %d of 3 masters, want them spread", holding)
	}
}

// typicalFingerprints are a message's fingerprints as scoring sends them
// for a typical newsletter: six body bands, two link domains, three URLs.
func typicalFingerprints(i int) []ratelimit.Fingerprint {
	var fps []ratelimit.Fingerprint
	for b := range 6 {
		fps = append(fps, fp(fmt.Sprintf("body:%016x", (i%500)*6+b), time.Hour))
	}
	fps = append(fps, fp(fmt.Sprintf("dom:shop%d.example", i%200), time.Hour), fp("dom:cdn.example", time.Hour))
	for u := range 3 {
		fps = append(fps, fp(fmt.Sprintf("url:%016x", (i%300)*3+u), time.Hour))
	}
	return fps
}

// BenchmarkRedisObserveCampaign measures the campaign call per message
// (typicalFingerprints, 1000 accounts) on one redis-server and on a
// three-master Cluster, with many sessions at once; it reports the
// memory per fingerprint key (MEMORY USAGE, single node).
func BenchmarkRedisObserveCampaign(b *testing.B) {
	for _, topo := range []string{"single", "cluster"} {
		b.Run(topo, func(b *testing.B) {
			ro := ratelimit.RedisOptions{KeyPrefix: "am:"}
			var srv *redistest.Server
			if topo == "single" {
				srv = redistest.Start(b)
				ro.URL = "redis://" + srv.Addr()
			} else {
				ro.Addrs, ro.Cluster = redistest.Addrs(redistest.StartCluster(b, 3)), true
			}
			r := newRedis(b, ro, ratelimit.Policy{}, ratelimit.Options{})
			var n atomic.Int64
			cpu0, ds0 := 0.0, 0.0
			if srv != nil {
				cpu0, ds0 = redisCPU(b, srv), redisDataset(b, srv)
			}
			b.SetParallelism(8)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(n.Add(1))
					if _, err := r.ObserveCampaign(context.Background(), "acct"+strconv.Itoa(i%1000), typicalFingerprints(i)); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.StopTimer()
			if srv != nil {
				b.ReportMetric((redisCPU(b, srv)-cpu0)*1e6/float64(b.N), "redis-cpu-us/op")
				keys, err := srv.Do("DBSIZE")
				if err != nil {
					b.Fatal(err)
				}
				nkeys, _ := strconv.ParseFloat(strings.TrimSpace(keys), 64)
				b.ReportMetric((redisDataset(b, srv)-ds0)/nkeys, "dataset-B/key")
				// A body band shared by every account that sent the same
				// body: memory per key, by its number of accounts.
				for _, accts := range []int{1, 10, ratelimit.CampaignMaxAccounts} {
					key := fmt.Sprintf("bytes:%d", accts)
					for a := range accts {
						if _, err := r.ObserveCampaign(context.Background(), fmt.Sprintf("customer-account-%04d", a), []ratelimit.Fingerprint{fp("body:"+key, time.Hour)}); err != nil {
							b.Fatal(err)
						}
					}
					v, err := srv.Do("MEMORY", "USAGE", "am:{fp:body:"+key+"}")
					if err != nil {
						b.Fatal(err)
					}
					var bytes float64
					fmt.Sscan(v, &bytes)
					b.ReportMetric(bytes, fmt.Sprintf("B/key@%daccts", accts))
				}
			}
		})
	}
}

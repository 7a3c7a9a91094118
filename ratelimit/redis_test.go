package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// hammer sends n messages of one account through the limiters from 64
// goroutines and returns how many were admitted.
func hammer(t *testing.T, lims []ratelimit.Limiter, n int, req func(i int) ratelimit.Request) int64 {
	t.Helper()
	var admitted, next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lim := lims[g%len(lims)]
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				d, err := lim.CheckAndCharge(context.Background(), req(int(i)))
				if err != nil {
					errs <- err
					return
				}
				if d.Allowed {
					admitted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("check: %v", err)
	}
	return admitted.Load()
}

func exactPolicy() ratelimit.Policy {
	return ratelimit.Policy{Limits: ratelimit.Limits{ratelimit.AccountMessages: {rate(100, time.Hour)}}}
}

func TestRedisExactness(t *testing.T) {
	srv := redistest.Start(t)
	ro := ratelimit.RedisOptions{URL: "redis://" + srv.Addr(), KeyPrefix: "exact:"}
	a, b := newRedis(t, ro, exactPolicy(), ratelimit.Options{}), newRedis(t, ro, exactPolicy(), ratelimit.Options{})
	got := hammer(t, []ratelimit.Limiter{a, b}, 1000, func(i int) ratelimit.Request {
		return msg("alice@example.com", fmt.Sprintf("s%d@example.com", i%7))
	})
	if got != 100 {
		t.Fatalf("admitted %d of 1000 at a limit of 100", got)
	}
}

func TestRedisCluster(t *testing.T) {
	addrs := redistest.Addrs(redistest.StartCluster(t, 3))
	ro := ratelimit.RedisOptions{Addrs: addrs, Cluster: true, KeyPrefix: "cl:"}
	p := exactPolicy()
	p.Limits[ratelimit.SenderMessages] = []ratelimit.Rate{rate(1000, time.Hour)}
	p.Limits[ratelimit.ClientMessages] = []ratelimit.Rate{rate(1000, time.Hour)}
	a, b := newRedis(t, ro, p, ratelimit.Options{}), newRedis(t, ro, p, ratelimit.Options{})
	// Senders and the client hash to other slots than the account: every
	// message touches several masters, in one pipeline.
	got := hammer(t, []ratelimit.Limiter{a, b}, 1000, func(i int) ratelimit.Request {
		r := msg("alice@example.com", fmt.Sprintf("s%d@example.com", i%7))
		r.Authenticated = i%2 == 0
		return r
	})
	if got != 100 {
		t.Fatalf("admitted %d of 1000 at a limit of 100 on a cluster", got)
	}
	ctx := context.Background()

	// The rule for a refusal in one slot: the charges other slots made for
	// the message are taken back, so only admitted messages stay counted.
	p2 := ratelimit.Policy{Limits: ratelimit.Limits{
		ratelimit.AccountMessages: {rate(10, time.Hour)},
		ratelimit.SenderMessages:  {rate(3, time.Hour)},
	}}
	c := newRedis(t, ro, p2, ratelimit.Options{})
	for i := range 6 {
		d, err := c.CheckAndCharge(ctx, msg("bob", "one@x.example"))
		if err != nil {
			t.Fatal(err)
		}
		if want := i < 3; d.Allowed != want {
			t.Fatalf("message %d: allowed %v, want %v", i, d.Allowed, want)
		}
	}
	redistest.WaitFor(t, 5*time.Second, "refunds of the refused messages", func() bool {
		st, err := c.Status(ctx, ratelimit.Account("bob"))
		return err == nil && st.Limits[0].Used == 3 && st.Strikes == 0
	})
	top, err := c.Top(ctx, ratelimit.TopMessages, time.Hour, 100)
	if err != nil {
		t.Fatal(err)
	}
	found := map[ratelimit.Subject]int64{}
	for _, e := range top {
		found[e.Subject] = e.Count
	}
	if found[ratelimit.Account("alice@example.com")] != 100 || found[ratelimit.Account("bob")] != 3 || found[ratelimit.Sender("one@x.example")] != 3 {
		t.Fatalf("top over every master: %v", found)
	}
	if err := c.Lock(ctx, "carol", "test", "ops", 0); err != nil {
		t.Fatal(err)
	}
	if l, err := c.Locked(ctx); err != nil || len(l) != 1 || l[0].Account != "carol" {
		t.Fatalf("locked on a cluster: %+v %v", l, err)
	}
	// Admin changes reach every instance's Recent cache on a cluster too
	// (PUBLISH goes to every node, whichever one the subscription is on).
	lockedUntilUnlocked(t, subscribed(t, a), subscribed(t, b), "dora")
}

func TestRedisSentinelFailover(t *testing.T) {
	sn := redistest.StartSentinel(t)
	ro := ratelimit.RedisOptions{Addrs: []string{sn.Sentinel.Addr()}, MasterName: sn.MasterName, KeyPrefix: "sn:", Timeout: time.Second}
	p := ratelimit.Policy{Limits: ratelimit.Limits{ratelimit.AccountMessages: {rate(8, time.Hour)}}}
	r := newRedis(t, ro, p, ratelimit.Options{BreakerProbe: 50 * time.Millisecond})
	ctx := context.Background()
	for i := range 3 {
		if d, err := r.CheckAndCharge(ctx, msg("a", "")); err != nil || !d.Allowed {
			t.Fatalf("message %d before failover: %+v %v", i, d, err)
		}
	}
	redistest.WaitFor(t, 10*time.Second, "replica to catch up", func() bool {
		out, err := sn.Replica.Do("HGET", "sn:{acct:a}:msgs:1h", "n")
		return err == nil && out == "3"
	})
	// The sentinel accepts a failover once it has a healthy view of the
	// replica (NOGOODSLAVE until then).
	redistest.WaitFor(t, 30*time.Second, "SENTINEL FAILOVER to be accepted", func() bool {
		_, err := sn.Sentinel.Do("SENTINEL", "FAILOVER", sn.MasterName)
		return err == nil
	})
	redistest.WaitFor(t, 30*time.Second, "the replica to become master and the master a replica", func() bool {
		return sn.Replica.Info("replication", "role") == "master" && sn.Master.Info("replication", "role") == "slave"
	})
	// Counting goes on on the new master: 5 more fit, the 9th is refused.
	admitted := 0
	redistest.WaitFor(t, 30*time.Second, "counting after the failover", func() bool {
		d, err := r.CheckAndCharge(ctx, msg("a", ""))
		if err == nil && d.Allowed {
			admitted++
		}
		return admitted == 5
	})
	d, err := r.CheckAndCharge(ctx, msg("a", ""))
	if err != nil || d.Allowed || d.Exceeded != ratelimit.AccountMessages {
		t.Fatalf("9th message after failover: %+v %v", d, err)
	}
	if out, _ := sn.Replica.Do("HGET", "sn:{acct:a}:msgs:1h", "n"); out != "8" {
		t.Fatalf("new master counts %s, want 8", out)
	}
}

func TestRedisTLS(t *testing.T) {
	srv, tlsCfg := redistest.StartTLS(t)
	ro := ratelimit.RedisOptions{URL: "rediss://" + srv.Addr(), TLS: tlsCfg}
	r := newRedis(t, ro, ratelimit.Policy{Limits: ratelimit.Limits{ratelimit.AccountMessages: {rate(1, time.Hour)}}}, ratelimit.Options{})
	ctx := context.Background()
	if d, err := r.CheckAndCharge(ctx, msg("a", "")); err != nil || !d.Allowed {
		t.Fatalf("over TLS: %+v %v", d, err)
	}
	if d, err := r.CheckAndCharge(ctx, msg("a", "")); err != nil || d.Allowed {
		t.Fatalf("second over TLS: %+v %v", d, err)
	}
	// A client that does not trust the certificate gets an error, not a
	// plain-text fallback.
	bad := newRedis(t, ratelimit.RedisOptions{URL: "rediss://" + srv.Addr()}, ratelimit.Policy{}, ratelimit.Options{})
	if _, err := bad.CheckAndCharge(ctx, msg("a", "")); err == nil {
		t.Fatalf("an untrusted certificate was accepted")
	}
}

func TestRedisPasswordNeverShown(t *testing.T) {
	const secret = "s3cret-Passw0rd"
	srv := redistest.Start(t, "--requirepass", "right-one")
	r := newRedis(t, ratelimit.RedisOptions{URL: "redis://" + srv.Addr(), Password: secret}, exactPolicy(), ratelimit.Options{})
	_, err := r.CheckAndCharge(context.Background(), msg("a", ""))
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("wrong password: error %v", err)
	}
	if _, err := ratelimit.NewRedis(ratelimit.RedisOptions{URL: "redis://:" + secret + "@127.0.0.1:1"}, exactPolicy(), ratelimit.Options{}); err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("password in url: error %v", err)
	}
	good := newRedis(t, ratelimit.RedisOptions{URL: "redis://" + srv.Addr(), Password: "right-one"}, exactPolicy(), ratelimit.Options{})
	if d, err := good.CheckAndCharge(context.Background(), msg("a", "")); err != nil || !d.Allowed {
		t.Fatalf("right password: %+v %v", d, err)
	}
}

func TestRedisFaults(t *testing.T) {
	srv := redistest.Start(t)
	p := ratelimit.Policy{Limits: ratelimit.Limits{ratelimit.AccountMessages: {rate(2, time.Hour)}}}
	// Recent keeps serving the refusal while Redis is down for as long as
	// RecentUnsubscribedMax says: an hour here, to see that it needs no I/O.
	r := subscribed(t, newRedis(t, ratelimit.RedisOptions{URL: "redis://" + srv.Addr(), Timeout: 200 * time.Millisecond}, p,
		ratelimit.Options{BreakerFailures: 3, BreakerProbe: 50 * time.Millisecond, RecentUnsubscribedMax: time.Hour}))
	ctx := context.Background()
	if d, err := r.CheckAndCharge(ctx, msg("a", "")); err != nil || !d.Allowed {
		t.Fatalf("before the fault: %+v %v", d, err)
	}
	if d, _ := r.CheckAndCharge(ctx, msg("c", "")); !d.Allowed {
		t.Fatalf("c refused")
	}
	if d, _ := r.CheckAndCharge(ctx, msg("c", "")); !d.Allowed {
		t.Fatalf("c refused")
	}
	if d, _ := r.CheckAndCharge(ctx, msg("c", "")); d.Allowed {
		t.Fatalf("c admitted past its limit")
	}
	// Kill the server while 8 sessions keep sending: every call, in flight
	// or new, ends within a bound and reports ErrUnavailable.
	var sent atomic.Int64
	killed := make(chan struct{})
	var wg sync.WaitGroup
	failures := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			after := 0
			for after < 5 {
				start := time.Now()
				_, err := r.CheckAndCharge(ctx, msg(fmt.Sprintf("s%d", g), ""))
				el := time.Since(start)
				sent.Add(1)
				select {
				case <-killed:
					after++
					if err == nil || !errors.Is(err, ratelimit.ErrUnavailable) {
						// A call that was answered before the kill may still succeed.
						if after > 1 {
							failures <- fmt.Errorf("call after the kill: %v", err)
							return
						}
					}
				default:
				}
				if el > time.Second {
					failures <- fmt.Errorf("a call took %s", el)
					return
				}
			}
		}()
	}
	redistest.WaitFor(t, 10*time.Second, "traffic before the kill", func() bool { return sent.Load() >= 40 })
	srv.Kill()
	close(killed)
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Fatal(err)
	}
	// Early refusal needs no I/O: it works with the server gone.
	if d, ok := r.Recent("c"); !ok || d.Exceeded != ratelimit.AccountMessages {
		t.Fatalf("Recent with redis down: %+v %v", d, ok)
	}
	st := r.Stats()
	if !st.BreakerOpen || st.BreakerOpens == 0 || st.FailFast == 0 || st.Errors < 30 {
		t.Fatalf("stats after the fault: %+v", st)
	}
	// Restarted empty on the same port: limits apply again, nothing rebuilt.
	srv.Restart()
	redistest.WaitFor(t, 10*time.Second, "recovery", func() bool {
		_, err := r.CheckAndCharge(ctx, msg("b", ""))
		return err == nil
	})
	if r.Stats().BreakerOpen {
		t.Fatalf("breaker still open after recovery")
	}
	for i, want := range []bool{true, true, false} {
		d, err := r.CheckAndCharge(ctx, msg("a", ""))
		if err != nil || d.Allowed != want || d.Locked {
			t.Fatalf("message %d after restart: %+v %v, want allowed %v", i, d, err, want)
		}
	}
}

// commandCalls reads the call count of a command from INFO commandstats.
func commandCalls(t *testing.T, srv *redistest.Server, cmd string) int {
	v := srv.Info("commandstats", "cmdstat_"+cmd)
	if v == "" {
		return 0
	}
	calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
	n, err := strconv.Atoi(calls)
	if err != nil {
		t.Fatalf("commandstats %q: %v", v, err)
	}
	return n
}

func TestRedisOneRoundTripPerMessage(t *testing.T) {
	srv := redistest.Start(t)
	p := ratelimit.Policy{Limits: ratelimit.Limits{
		ratelimit.AccountMessages:      {rate(500, time.Hour), rate(50, time.Minute)},
		ratelimit.AccountRecipients:    {rate(2000, time.Hour)},
		ratelimit.AccountNewRecipients: {rate(300, 24*time.Hour)},
		ratelimit.SenderMessages:       {rate(400, time.Hour)},
		ratelimit.ClientMessages:       {rate(400, time.Hour)},
	}}
	// Subscribed to admin changes, as a milter is: that connection is apart
	// from the per-message path.
	r := subscribed(t, newRedis(t, ratelimit.RedisOptions{URL: "redis://" + srv.Addr()}, p, ratelimit.Options{}))
	before := map[string]int{}
	for _, c := range []string{"evalsha", "eval", "publish"} {
		before[c] = commandCalls(t, srv, c)
	}
	for i := range 1000 {
		req := msg(fmt.Sprintf("acct%d", i%10), fmt.Sprintf("s%d@x.example", i%13), "a@r.example", fmt.Sprintf("r%d@r.example", i))
		req.Authenticated = i%3 != 0
		if _, err := r.CheckAndCharge(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	evalsha := commandCalls(t, srv, "evalsha") - before["evalsha"]
	eval := commandCalls(t, srv, "eval") - before["eval"]
	if evalsha+eval > 1000+1 || eval > 1 {
		t.Fatalf("1000 messages made %d EVALSHA and %d EVAL calls", evalsha, eval)
	}
	if n := commandCalls(t, srv, "publish") - before["publish"]; n != 0 {
		t.Fatalf("1000 messages made %d PUBLISH calls, want none", n)
	}
	// An admin change is published once.
	if err := r.Unlock(context.Background(), "acct1", "ops"); err != nil {
		t.Fatal(err)
	}
	if n := commandCalls(t, srv, "publish") - before["publish"]; n != 1 {
		t.Fatalf("an unlock made %d PUBLISH calls, want 1", n)
	}
}

func TestRedisKeysHaveTTL(t *testing.T) {
	srv := redistest.Start(t)
	p := ratelimit.Policy{
		Limits: ratelimit.Limits{
			ratelimit.AccountMessages: {rate(1, time.Hour)}, ratelimit.AccountNewRecipients: {rate(10, 24*time.Hour)},
			ratelimit.SenderMessages: {rate(10, time.Hour)},
		},
		Strikes: ratelimit.StrikePolicy{Threshold: 2, Window: time.Hour},
	}
	r := newRedis(t, ratelimit.RedisOptions{URL: "redis://" + srv.Addr(), KeyPrefix: "ttl:"}, p, ratelimit.Options{})
	ctx := context.Background()
	for range 3 {
		_, _ = r.CheckAndCharge(ctx, msg("alice@example.com", "a@x.example"))
	}
	_ = r.Exempt(ctx, ratelimit.Sender("z@x.example"), "t", 0, "ops")
	_ = r.SetOverride(ctx, ratelimit.Account("b"), ratelimit.AccountMessages, []ratelimit.Rate{rate(5, time.Hour)}, 0, "ops")
	keys, err := srv.Do("KEYS", "*") // a test server of its own: KEYS is fine here
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ttl:{acct:alice@example.com}:msgs:1h", "ttl:{acct:alice@example.com}:newrcpts:24h", "ttl:{acct:alice@example.com}:lock",
		"ttl:{acct:alice@example.com}:strikes", "ttl:{acct:alice@example.com}:seen", "ttl:{sender:a@x.example}:msgs:1h",
		"ttl:{sender:z@x.example}:exempt", "ttl:{acct:b}:override"}
	for _, w := range want {
		if !strings.Contains(keys, w) {
			t.Errorf("key %s missing; keys:\n%s", w, keys)
		}
	}
	// Times are whole microseconds, written out in full (no 1.7e+15).
	at, err := srv.Do("HGET", "ttl:{acct:alice@example.com}:lock", "at")
	if _, perr := strconv.ParseInt(at, 10, 64); err != nil || perr != nil {
		t.Errorf("lock time %q (%v, %v)", at, err, perr)
	}
	if l, err := r.Locked(ctx); err != nil || len(l) != 1 || l[0].Lock.By != "auto" || time.Since(l[0].Lock.At) > time.Minute {
		t.Errorf("Locked() after an automatic lock: %+v %v", l, err)
	}
	for _, k := range strings.Split(keys, "\n") {
		if ttl, err := srv.Do("PTTL", k); err != nil || ttl == "-1" {
			t.Errorf("key %s has no TTL (%s %v)", k, ttl, err)
		}
	}
	// A counter lives as long as its last bucket is counted: the window, a
	// bucket (a minute for 1h, 24 minutes for 24h) and a second.
	for k, w := range map[string]time.Duration{"ttl:{acct:alice@example.com}:msgs:1h": time.Hour, "ttl:{acct:alice@example.com}:newrcpts:24h": 24 * time.Hour} {
		ttl, err := srv.Do("PTTL", k)
		ms, perr := strconv.ParseInt(ttl, 10, 64)
		most := (w + w/ratelimit.BucketsPerWindow + time.Second).Milliseconds()
		if err != nil || perr != nil || ms > most || ms < most-time.Minute.Milliseconds() {
			t.Errorf("key %s: TTL %s ms (%v %v), want up to %d ms", k, ttl, err, perr, most)
		}
	}
}

func BenchmarkRedisCheckAndCharge(b *testing.B) {
	if _, err := os.Stat("/usr/bin/redis-server"); err != nil {
		b.Skip("no redis-server")
	}
	srv := redistest.Start(b)
	p := ratelimit.Policy{Limits: ratelimit.Limits{
		ratelimit.AccountMessages:   {rate(1<<40, time.Hour), rate(1<<40, time.Minute)},
		ratelimit.AccountRecipients: {rate(1<<40, time.Hour)},
		ratelimit.SenderMessages:    {rate(1<<40, time.Hour)},
	}}
	r, err := ratelimit.NewRedis(ratelimit.RedisOptions{URL: "redis://" + srv.Addr()}, p, ratelimit.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	var n atomic.Int64
	b.SetParallelism(8) // 8 goroutines per CPU: many milter sessions at once
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			req := msg("acct"+strconv.Itoa(int(i%1000)), "s@x.example", "r1@r.example", "r2@r.example")
			if _, err := r.CheckAndCharge(context.Background(), req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

package ratelimit_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/redistest"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// BenchmarkRedisCheckAndChargeScriptCost measures what the check-and-charge
// script costs inside redis-server, by its own accounting (INFO
// commandstats, usec_per_call of EVALSHA), with every dimension limited as
// a provider configures it: account messages (two windows), recipients and
// new recipients, sender messages. Its wall time (usec_per_call) grows when
// the server is descheduled on a busy machine; redis-cpu-us/op, the server's
// CPU time (INFO cpu) per message, network included, does not. Each account already has a few hundred
// charges in its windows, as a busy account does.
func BenchmarkRedisCheckAndChargeScriptCost(b *testing.B) {
	if _, err := os.Stat("/usr/bin/redis-server"); err != nil {
		b.Skip("no redis-server")
	}
	srv := redistest.Start(b)
	p := ratelimit.Policy{Limits: ratelimit.Limits{
		ratelimit.AccountMessages:      {rate(1<<40, time.Hour), rate(1<<40, time.Minute)},
		ratelimit.AccountRecipients:    {rate(1<<40, time.Hour)},
		ratelimit.AccountNewRecipients: {rate(1<<40, time.Hour)},
		ratelimit.SenderMessages:       {rate(1<<40, time.Hour)},
	}}
	r, err := ratelimit.NewRedis(ratelimit.RedisOptions{URL: "redis://" + srv.Addr()}, p, ratelimit.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	const accounts = 50
	req := func(i int) ratelimit.Request {
		a := "acct" + strconv.Itoa(i%accounts)
		return msg(a, a+"@x.example", "r"+strconv.Itoa(i%97)+"@r.example", "r"+strconv.Itoa(i%89)+"@r.example")
	}
	for i := range accounts * 200 {
		if _, err := r.CheckAndCharge(ctx, req(i)); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := srv.Do("CONFIG", "RESETSTAT"); err != nil {
		b.Fatal(err)
	}
	cpu0 := redisCPU(b, srv)
	b.ResetTimer()
	for i := range b.N {
		if _, err := r.CheckAndCharge(ctx, req(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric((redisCPU(b, srv)-cpu0)*1e6/float64(b.N), "redis-cpu-us/op")
	stat := srv.Info("commandstats", "cmdstat_evalsha")
	for _, kv := range strings.Split(stat, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == "usec_per_call" {
			us, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("usec_per_call %q: %v", v, err)
			}
			b.ReportMetric(us, "evalsha-us/call")
			return
		}
	}
	b.Fatalf("no usec_per_call in cmdstat_evalsha %q", stat)
}

// redisCPU returns the server's CPU time so far, user and system, in seconds.
func redisCPU(b *testing.B, srv *redistest.Server) float64 {
	b.Helper()
	var sum float64
	for _, f := range []string{"used_cpu_user", "used_cpu_sys"} {
		v, err := strconv.ParseFloat(srv.Info("cpu", f), 64)
		if err != nil {
			b.Fatalf("INFO cpu %s: %v", f, err)
		}
		sum += v
	}
	return sum
}

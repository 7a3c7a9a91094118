package ratelimit_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// BenchmarkRedisCheckAndChargeScriptCost measures what the check-and-charge
// script costs inside redis-server, by its own accounting (INFO
// commandstats, usec_per_call of EVALSHA), with every dimension limited as
// a provider configures it: account messages (two windows), recipients and
// new recipients, sender messages. Its wall time (usec_per_call) grows when
// the server is descheduled on a busy machine; redis-cpu-us/op, the server's
// CPU time (INFO cpu) per message, network included, does not. Each account already has a few hundred
// charges in its windows, as a busy account does. redis-bytes/account is
// the memory its keys hold at the end (INFO memory used_memory_dataset):
// with sliding-window counters it does not grow with the messages sent.
func BenchmarkRedisCheckAndChargeScriptCost(b *testing.B) {
	scriptCost(b, 0)
}

// BenchmarkRedisCheckAndChargeScriptCostMovingClock is the same traffic with
// the server clock moved on 20ms per message (ClockOffset): each of the 50
// accounts is charged once per second of server time, so its minute
// counter (buckets of a second) is full and drops its oldest bucket at every
// charge, and its hour counters drop one a minute: the steady state of busy
// accounts, pruning included.
func BenchmarkRedisCheckAndChargeScriptCostMovingClock(b *testing.B) {
	scriptCost(b, 20*time.Millisecond)
}

func scriptCost(b *testing.B, step time.Duration) {
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
	var clk testClock
	mem0 := redisDataset(b, srv)
	r, err := ratelimit.NewRedis(ratelimit.RedisOptions{URL: "redis://" + srv.Addr()}, p, ratelimit.Options{ClockOffset: clk.offset})
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
		clk.advance(step)
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
		clk.advance(step)
		if _, err := r.CheckAndCharge(ctx, req(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric((redisCPU(b, srv)-cpu0)*1e6/float64(b.N), "redis-cpu-us/op")
	b.ReportMetric((redisDataset(b, srv)-mem0)/accounts, "redis-bytes/account")
	b.ReportMetric(float64(scriptCommands(b, srv))/float64(b.N), "redis-cmds/op")
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

// scriptCommands returns how many commands scripts ran since the last
// CONFIG RESETSTAT: INFO commandstats counts the commands a script runs
// under their own names, so every command but the script calls themselves
// and the benchmark's own INFO and CONFIG is one run inside a script.
func scriptCommands(b *testing.B, srv *redistest.Server) int64 {
	b.Helper()
	out, err := srv.Do("INFO", "commandstats")
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for _, l := range strings.Split(out, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(l), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		switch strings.TrimPrefix(name, "cmdstat_") {
		case "evalsha", "eval", "info", "config|resetstat", "config", "hello", "ping", "client|setinfo", "subscribe", "script|load":
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		c, err := strconv.ParseInt(calls, 10, 64)
		if err != nil {
			b.Fatalf("commandstats line %q: %v", l, err)
		}
		if os.Getenv("SCRIPT_COST_VERBOSE") != "" {
			b.Logf("%s", l)
		}
		n += c
	}
	return n
}

// redisDataset returns the server's memory held by keys and values (INFO
// memory used_memory_dataset), in bytes.
func redisDataset(b *testing.B, srv *redistest.Server) float64 {
	b.Helper()
	v, err := strconv.ParseFloat(srv.Info("memory", "used_memory_dataset"), 64)
	if err != nil {
		b.Fatalf("INFO memory used_memory_dataset: %v", err)
	}
	return v
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

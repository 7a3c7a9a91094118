package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/bench/loadgen"
	"github.com/abusemilter/abusemilter/internal/bench/perftest"
	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
)

var soak = flag.Duration("perf.soak", 60*time.Second,
	"length of TestDaemonMemorySteady's load; the long form: go test ./cmd/abusemilter -run TestDaemonMemorySteady -timeout 15m -args -perf.soak=10m")

var soakRedis = flag.Bool("perf.redis", false,
	"run TestDaemonMemorySteady with the Redis store (a redis-server of its own) instead of the embedded one")

// TestDaemonMemorySteady runs the daemon binary (every rule, embedded rate
// store, 10,000 accounts owning 20,000 domains) under a constant load of
// generated mail for -perf.soak (60 s by default) and checks that it does
// not grow: resident memory at the end is no more than 5% (plus 2 MiB) above
// what it was after the first quarter of the run (at most the first
// minute) — the slack is the Go heap's own swing between collections (20
// MiB of garbage comes and goes at this load), not room for state that
// grows: the exact logs the rate stores kept before their counters were
// bucketed grew 22% in 10 minutes and fail this — and once the load stops its milter sessions
// end and its open files (with the embedded store) and goroutines (when it
// serves metrics) come back to what they were before it started.
func TestDaemonMemorySteady(t *testing.T) {
	if testing.Short() {
		t.Skip("a 60 s load run; skipped with -short")
	}
	dir := t.TempDir()
	port, metricsPort := redistest.FreePort(t), redistest.FreePort(t)
	cfgOpts := perftest.ConfigOptions{
		Customers:     10000,
		Listen:        fmt.Sprintf("inet:127.0.0.1:%d", port),
		MetricsListen: fmt.Sprintf("127.0.0.1:%d", metricsPort),
	}
	if *soakRedis {
		redistest.Binary(t, "redis-server")
		cfgOpts.RedisURL = "redis://" + redistest.Start(t).Addr()
	}
	cfgData, err := perftest.Config(cfgOpts)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "perf.yaml")
	if err := os.WriteFile(cfgPath, cfgData, 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "daemon.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(binary(t), "--config", cfgPath)
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	waitForLine(t, logPath, "abusemilter ready", exited)
	pid := cmd.Process.Pid
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	ctx := context.Background()
	baseFiles, err := perftest.OpenFiles(pid)
	if err != nil {
		t.Fatal(err)
	}
	// Goroutines come from the daemon's metrics endpoint.
	goroutines := func() (float64, error) { return perftest.Gauge(ctx, metricsURL, "go_goroutines") }
	baseline, err := goroutines()
	for deadline := time.Now().Add(3 * time.Second); err != nil && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		baseline, err = goroutines()
	}
	if err != nil {
		t.Fatalf("reading go_goroutines from the daemon's metrics endpoint: %v", err)
	}

	pool, err := loadgen.Generate(loadgen.GenerateOptions{Count: 1000, Accounts: 30000, ForgedShare: 0.05, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		rep *loadgen.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := loadgen.Run(ctx, loadgen.Options{
			Target:      loadgen.Target{Network: "tcp", Address: fmt.Sprintf("127.0.0.1:%d", port)},
			Source:      pool,
			Concurrency: 8,
			Rate:        100,
			Duration:    *soak,
		})
		done <- result{rep, err}
	}()
	early := min(*soak/4, time.Minute)
	var first perftest.Memory
	select {
	case <-time.After(early):
		if first, err = perftest.ReadMemory(pid); err != nil {
			t.Fatal(err)
		}
		// The session count below must see the load's connections at all.
		if during, err := perftest.Sessions(pid, port); err != nil || during == 0 {
			t.Errorf("milter sessions under load: %d, %v; want some", during, err)
		}
	case r := <-done:
		t.Fatalf("load ended before the first sample: %v %+v", r.err, r.rep)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	last, err := perftest.ReadMemory(pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d messages in %.0f s (%.0f/s), %d failed; RSS after %v %.1f MiB, at the end %.1f MiB, peak %.1f MiB",
		r.rep.Messages, r.rep.ElapsedSeconds, r.rep.Rate, r.rep.Failed, early,
		mib(first.RSS), mib(last.RSS), mib(last.Peak))
	if r.rep.Failed > 0 || r.rep.Messages == 0 {
		t.Errorf("%d of %d messages failed: %v", r.rep.Failed, r.rep.Messages+r.rep.Failed, r.rep.Errors)
	}
	if limit := first.RSS + first.RSS/20 + 2<<20; last.RSS > limit {
		t.Errorf("RSS grew from %.1f MiB to %.1f MiB under constant load (limit %.1f MiB)", mib(first.RSS), mib(last.RSS), mib(limit))
	}
	var sessions int
	redistest.WaitFor(t, 10*time.Second, "milter sessions to end", func() bool {
		sessions, err = perftest.Sessions(pid, port)
		return err == nil && sessions == 0
	})
	if !*soakRedis { // with Redis, the client's pool keeps connections open
		var files int
		redistest.WaitFor(t, 10*time.Second, "open files back to the baseline", func() bool {
			files, err = perftest.OpenFiles(pid)
			return err == nil && files <= baseFiles
		})
		t.Logf("open files: %d before the load, %d after", baseFiles, files)
	}
	var now float64
	redistest.WaitFor(t, 10*time.Second, "goroutines back to the baseline", func() bool {
		now, err = goroutines()
		return err == nil && now <= baseline
	})
	t.Logf("goroutines: %v before the load, %v after", baseline, now)
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// waitForLine waits until the log file has a line containing s, failing if
// the process exits first.
func waitForLine(t *testing.T, path, s string, exited <-chan error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			data, _ := os.ReadFile(path)
			t.Fatalf("daemon exited (%v) before %q; log:\n%s", err, s, data)
		default:
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.Contains(sc.Text(), s) {
				f.Close()
				return
			}
		}
		f.Close()
		time.Sleep(50 * time.Millisecond)
	}
	data, _ := os.ReadFile(path)
	t.Fatalf("no %q in the daemon log after 30 s; log:\n%s", s, data)
}

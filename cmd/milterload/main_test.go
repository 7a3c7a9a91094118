package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/bench/loadgen"
)

func TestRunNoOpAndTargetPrintsBothAndTheRatio(t *testing.T) {
	srv, err := loadgen.StartNoOp("unix")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--noop", "--target", srv.Target.String(),
		"--count", "60", "--concurrency", "4", "--pool", "20", "--json"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	var s loadgen.Summary
	if err := json.Unmarshal(stdout.Bytes(), &s); err != nil {
		t.Fatalf("JSON output does not parse: %v\n%s", err, stdout.String())
	}
	if len(s.Runs) != 2 || s.Runs[0].Label != "no-op" || s.Runs[1].Target != srv.Target.String() {
		t.Fatalf("runs %+v", s.Runs)
	}
	for _, r := range s.Runs {
		if r.Messages != 60 || r.Verdicts["accept"] != 60 {
			t.Errorf("run %s: %d messages, verdicts %v; want 60 accepted", r.Target, r.Messages, r.Verdicts)
		}
	}
	if s.RatioToNoOp <= 0 {
		t.Errorf("ratio %v", s.RatioToNoOp)
	}
}

func TestRunTextReport(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--noop", "--count", "20", "--concurrency", "2", "--pool", "5"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	for _, want := range []string{"no-op inet:127.0.0.1:", "20 messages", "p99 ms", "message", "accept"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, stdout.String())
		}
	}
}

func TestRunExitCodes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	cases := []struct {
		args []string
		want int
		says string
	}{
		{[]string{"--target", "inet:" + closed, "--count", "3", "--concurrency", "1", "--pool", "3"}, exitFailed, "open: connection refused"},
		{[]string{}, exitUsage, "nothing to measure"},
		{[]string{"--target", "smtp:x"}, exitUsage, `unknown kind "smtp"`},
		{[]string{"--noop", "--forged", "3"}, exitUsage, "forged share 3"},
		{[]string{"--noop", "--corpus", t.TempDir()}, exitUsage, "no .eml files"},
		{[]string{"--noop", "extra"}, exitUsage, `unexpected argument "extra"`},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), c.args, &stdout, &stderr)
		if code != c.want || !strings.Contains(stdout.String()+stderr.String(), c.says) {
			t.Errorf("%q: exit %d, want %d mentioning %q\nstdout: %s\nstderr: %s", c.args, code, c.want, c.says, stdout.String(), stderr.String())
		}
	}
}

func TestServeNoOpServesUntilCancelled(t *testing.T) {
	sock := t.TempDir() + "/noop.sock"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() { done <- run(ctx, []string{"--serve-noop", "unix:" + sock}, io.Discard, &stderr) }()
	var stdout bytes.Buffer
	var code int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
	}
	code = run(context.Background(), []string{"--target", "unix:" + sock, "--count", "30", "--concurrency", "3", "--pool", "5", "--json"}, &stdout, io.Discard)
	if code != exitOK {
		t.Errorf("load against --serve-noop: exit %d\n%s", code, stdout.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("--serve-noop exit %d after cancel; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("--serve-noop did not stop when cancelled")
	}
}

func TestWriteConfig(t *testing.T) {
	path := t.TempDir() + "/perf.yaml"
	code := run(context.Background(), []string{"--write-config", path, "--target", "inet:127.0.0.1:7357", "--accounts", "30"}, io.Discard, io.Discard)
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "customer10:") || strings.Contains(string(data), "customer11:") {
		t.Errorf("want customers 1 to 10 for 30 accounts:\n%s", data)
	}
	if code := run(context.Background(), []string{"--write-config", path, "--target", "inet:127.0.0.1:7357", "--accounts", "31"}, io.Discard, io.Discard); code != exitUsage {
		t.Errorf("--accounts 31: exit %d, want %d", code, exitUsage)
	}
}

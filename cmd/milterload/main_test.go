package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/bench/loadgen"
	"github.com/abusemilter/abusemilter/internal/cli"
)

// run runs milterload with args as main does, with ctx for the signals.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetContext(ctx)
	return cli.Execute(root, args)
}

func TestRunNoOpAndTargetPrintsBothAndTheRatio(t *testing.T) {
	srv, err := loadgen.StartNoOp("unix")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--noop", "--target", srv.Target.String(),
		"--count", "60", "--concurrency", "4", "--pool", "20", "--json"}, &stdout, &stderr)
	if code != cli.ExitOK {
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
	if code != cli.ExitOK {
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
		{[]string{"--target", "inet:" + closed, "--count", "3", "--concurrency", "1", "--pool", "3"}, cli.ExitFailed, "open: connection refused"},
		{[]string{}, cli.ExitUsage, "nothing to measure"},
		{[]string{"--target", "smtp:x"}, cli.ExitUsage, `unknown kind "smtp"`},
		{[]string{"--noop", "--forged", "3"}, cli.ExitUsage, "forged share 3"},
		{[]string{"--noop", "--corpus", t.TempDir()}, cli.ExitUsage, "no .eml files"},
		{[]string{"--noop", "extra"}, cli.ExitUsage, `unexpected argument "extra"`},
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
	if code != cli.ExitOK {
		t.Errorf("load against --serve-noop: exit %d\n%s", code, stdout.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != cli.ExitOK {
			t.Errorf("--serve-noop exit %d after cancel; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("--serve-noop did not stop when cancelled")
	}
}

func TestWriteConfig(t *testing.T) {
	path := t.TempDir() + "/perf.yaml"
	code := run(context.Background(), []string{"--write-config", path, "--target", "inet:127.0.0.1:7357", "--accounts", "30"}, io.Discard, io.Discard)
	if code != cli.ExitOK {
		t.Fatalf("exit %d", code)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "customer10:") || strings.Contains(string(data), "customer11:") {
		t.Errorf("want customers 1 to 10 for 30 accounts:\n%s", data)
	}
	if code := run(context.Background(), []string{"--write-config", path, "--target", "inet:127.0.0.1:7357", "--accounts", "31"}, io.Discard, io.Discard); code != cli.ExitUsage {
		t.Errorf("--accounts 31: exit %d, want %d", code, cli.ExitUsage)
	}
}

func TestHelpOnStdout(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != cli.ExitOK {
			t.Fatalf("%q: exit %d, stderr:\n%s", args, code, stderr.String())
		}
		for _, want := range []string{"Usage:", "--target", "--noop-network", "(tcp|unix)", "Exit status:", "1  some messages failed", "2  bad flags"} {
			if !strings.Contains(stdout.String(), want) {
				t.Errorf("%q: help lacks %q:\n%s", args, want, stdout.String())
			}
		}
		if stderr.Len() != 0 {
			t.Errorf("%q: help wrote to stderr:\n%s", args, stderr.String())
		}
	}
}

func TestHelpCompletionOnStdout(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"help", "completion"}, &stdout, &stderr); code != cli.ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	for _, want := range []string{"milterload completion", "bash", "zsh", "fish"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("help completion lacks %q:\n%s", want, stdout.String())
		}
	}
	if stderr.Len() != 0 {
		t.Errorf("help completion wrote to stderr:\n%s", stderr.String())
	}
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--version"}, &stdout, &stderr); code != cli.ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	if got := stdout.String(); !strings.HasPrefix(got, "milterload ") || strings.Count(got, "\n") != 1 {
		t.Errorf("--version printed %q, want one line \"milterload VERSION\"", got)
	}
}

func TestUnknownFlagInTwoLines(t *testing.T) {
	for _, args := range [][]string{{"--nope"}, {"--noop", "--nope"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != cli.ExitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, cli.ExitUsage)
		}
		lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
		if len(lines) > 2 || !strings.Contains(lines[0], "--nope") {
			t.Errorf("%q: want at most two stderr lines naming --nope, got:\n%s", args, stderr.String())
		}
		if stdout.Len() != 0 {
			t.Errorf("%q: wrote to stdout:\n%s", args, stdout.String())
		}
	}
}

func TestBadFlagValuesAreUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		says string
	}{
		{[]string{"--noop", "--noop-network", "udp"}, `"udp" is not one of tcp, unix`},
		{[]string{"--noop", "--duration", "soon"}, "--duration"},
		{[]string{"--noop", "--count", "many"}, "--count"},
	}
	for _, c := range cases {
		var stderr bytes.Buffer
		if code := run(context.Background(), c.args, io.Discard, &stderr); code != cli.ExitUsage || !strings.Contains(stderr.String(), c.says) {
			t.Errorf("%q: exit %d, want %d mentioning %q; stderr:\n%s", c.args, code, cli.ExitUsage, c.says, stderr.String())
		}
	}
}

// Flags are parsed wherever they stand: after a stray argument they still
// count (the argument is what is reported), and after a subcommand's
// argument they reach the subcommand.
func TestFlagsAfterArguments(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"extra", "--noop", "--count", "many"}, &stdout, &stderr)
	if code != cli.ExitUsage || !strings.Contains(stderr.String(), "--count") {
		t.Errorf("a bad --count after an argument: exit %d, want %d naming --count; stderr:\n%s", code, cli.ExitUsage, stderr.String())
	}
	stderr.Reset()
	code = run(context.Background(), []string{"extra", "--noop"}, &stdout, &stderr)
	if code != cli.ExitUsage || !strings.Contains(stderr.String(), `unexpected argument "extra"`) {
		t.Errorf("--noop after an argument: exit %d, want %d naming the argument; stderr:\n%s", code, cli.ExitUsage, stderr.String())
	}

	var with, without bytes.Buffer
	if code := run(context.Background(), []string{"completion", "bash"}, &with, io.Discard); code != cli.ExitOK {
		t.Fatalf("completion bash: exit %d", code)
	}
	if code := run(context.Background(), []string{"completion", "bash", "--no-descriptions"}, &without, io.Discard); code != cli.ExitOK {
		t.Fatalf("completion bash --no-descriptions: exit %d", code)
	}
	if bytes.Equal(with.Bytes(), without.Bytes()) {
		t.Error("--no-descriptions after the shell argument made no difference")
	}
}

func TestCompletionBashParses(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"completion", "bash"}, &stdout, &stderr); code != cli.ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	script := t.TempDir() + "/milterload.bash"
	if err := os.WriteFile(script, stdout.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bash, "-n", script).CombinedOutput(); err != nil {
		t.Errorf("bash -n: %v\n%s", err, out)
	}
	if !strings.Contains(stdout.String(), "milterload") {
		t.Errorf("the script does not name milterload:\n%.500s", stdout.String())
	}
}

func TestCompletionOfEnumFlag(t *testing.T) {
	var stdout bytes.Buffer
	if code := run(context.Background(), []string{"__complete", "--noop-network", ""}, &stdout, io.Discard); code != cli.ExitOK {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(stdout.String(), "tcp\nunix\n") {
		t.Errorf("completions of --noop-network:\n%s", stdout.String())
	}
}

func TestDurationFlagTakesDays(t *testing.T) {
	root := newRoot(io.Discard, io.Discard)
	if err := root.ParseFlags([]string{"--duration", "1d", "--timeout", "90s"}); err != nil {
		t.Fatal(err)
	}
	if got := root.Flags().Lookup("duration").Value.String(); got != "1d" {
		t.Errorf("--duration 1d reads back as %q", got)
	}
	if got := root.Flags().Lookup("timeout").Value.String(); got != "1m30s" {
		t.Errorf("--timeout 90s reads back as %q", got)
	}
}

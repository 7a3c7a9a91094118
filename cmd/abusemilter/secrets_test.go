package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
)

// closedPort returns a loopback port nobody listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// secretCase is a config that carries a secret one way or another.
type secretCase struct {
	name   string
	config string // %[1]s: the secret file, %[2]d: a closed port
	env    []string
}

// TestSecretsNeverPrinted runs the binary with configs that carry a Redis
// password (file, environment, URL) or a webhook token, with Redis on a
// closed loopback port, and checks that the secret appears in no output:
// --check-config, the daemon's log and error messages.
func TestSecretsNeverPrinted(t *testing.T) {
	const secret = "Sup3r-S3cret-Pa55word"
	base := `
listen: inet:127.0.0.1:0
identity:
  login_is_address: false
  accounts:
    alice:
      logins: [alice]
      send_as: [example.com]
`
	cases := []secretCase{
		{name: "redis password_file", config: base + "redis:\n  url: redis://127.0.0.1:%[2]d/0\n  password_file: %[1]s\n  timeout: 100ms\n"},
		{name: "redis password_env", config: base + "redis:\n  url: redis://127.0.0.1:%[2]d/0\n  password_env: ABUSEMILTER_TEST_REDIS_PASSWORD\n  timeout: 100ms\n",
			env: []string{"ABUSEMILTER_TEST_REDIS_PASSWORD=" + secret}},
		{name: "redis username and password_file", config: base + "redis:\n  url: redis://127.0.0.1:%[2]d/0\n  username: milter\n  password_file: %[1]s\n"},
		{name: "credentials in the redis url", config: base + "redis:\n  url: redis://milter:" + secret + "@127.0.0.1:%[2]d/0\n"},
		{name: "credentials in a broken redis url", config: base + "redis:\n  url: redis://milter:" + secret + "@127.0.0.1:notaport/0\n# closed port %[2]d\n"},
		{name: "sentinel with password_env", config: base + "redis:\n  addrs: [127.0.0.1:%[2]d]\n  master_name: mymaster\n  password_env: ABUSEMILTER_TEST_REDIS_PASSWORD\n",
			env: []string{"ABUSEMILTER_TEST_REDIS_PASSWORD=" + secret}},
		{name: "webhook token_file", config: base + "notify:\n  webhooks:\n    - url: http://127.0.0.1:%[2]d/hook\n      token_file: %[1]s\n"},
		{name: "webhook token_env", config: base + "notify:\n  webhooks:\n    - url: http://127.0.0.1:%[2]d/hook\n      token_env: ABUSEMILTER_TEST_TOKEN\n",
			env: []string{"ABUSEMILTER_TEST_TOKEN=" + secret}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			secretFile := filepath.Join(dir, "secret")
			if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := writeConfig(t, dir, fmt.Sprintf(tc.config, secretFile, closedPort(t)))

			check := runBinary(t, tc.env, 10*time.Second, "--check-config", "--config", cfg)
			expectNoSecret(t, "--check-config", check.output, secret)
			if check.code != exitOK && check.code != exitUsage {
				t.Fatalf("--check-config exit %d:\n%s", check.code, check.output)
			}
			if check.code == exitUsage {
				t.Logf("--check-config refused the config (checked for the secret):\n%s", check.output)
			}

			// The daemon: it either refuses to start (the store cannot be
			// built or reached) or starts and decides by its failure mode;
			// then one message makes it use the store before it stops.
			run := runBinary(t, tc.env, 15*time.Second, "--config", cfg, "--log-format", "json")
			expectNoSecret(t, "the daemon", run.output, secret)
			t.Logf("daemon: exit %d, %d output lines; first: %.200s", run.code, strings.Count(run.output, "\n"), firstLine(run.output))
		})
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func expectNoSecret(t *testing.T, what, output, secret string) {
	t.Helper()
	for _, s := range []string{secret, strings.ToLower(secret), "S3cret", "Pa55word"} {
		if strings.Contains(output, s) {
			t.Fatalf("%s printed the secret (%q):\n%s", what, s, output)
		}
	}
}

// binaryRun is what a run of the binary printed, stdout and stderr
// interleaved, and its exit code.
type binaryRun struct {
	output string
	code   int
}

// runBinary runs the daemon with extra environment. A daemon that comes up
// ("abusemilter ready") gets one message that makes it consult its rate
// store, then SIGTERM.
func runBinary(t *testing.T, env []string, timeout time.Duration, args ...string) binaryRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out testenv.SyncBuffer
	cmd.Stdout = &out
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	ready := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			out.Write([]byte(line + "\n"))
			if strings.Contains(line, `"abusemilter ready"`) {
				if _, rest, ok := strings.Cut(line, `"listen":"tcp:`); ok {
					addr, _, _ := strings.Cut(rest, `"`)
					select {
					case ready <- addr:
					default:
					}
				}
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { <-scanned; exited <- cmd.Wait() }()
	select {
	case addr := <-ready:
		s := clientSession(t, addr)
		startMessage(t, s, 1)
		endMessage(t, s)
		s.Close()
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	case <-exited:
	}
	if ctx.Err() != nil {
		t.Fatalf("the binary did not finish within %v:\n%s", timeout, out.String())
	}
	return binaryRun{output: out.String(), code: cmd.ProcessState.ExitCode()}
}

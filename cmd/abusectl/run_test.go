package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
)

// oneLineErr checks that stderr is exactly one "abusectl: " line that
// contains want.
func oneLineErr(t *testing.T, stderr, want string) {
	t.Helper()
	if !strings.HasPrefix(stderr, "abusectl: ") || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, want) {
		t.Errorf("stderr = %q, want one abusectl line containing %q", stderr, want)
	}
}

func TestUnreachableRedisIsOneLineExit1(t *testing.T) {
	port := redistest.FreePort(t) // nothing listens there
	_, stderr, code := runCmd(t, "--redis", "redis://127.0.0.1:"+itoa(port), "status", "alice")
	if code != exitFailed {
		t.Errorf("exit %d, want 1", code)
	}
	oneLineErr(t, stderr, "is unreachable")
	oneLineErr(t, stderr, "127.0.0.1:"+itoa(port))
}

func TestWrongPasswordIsOneLineExit1(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "right-password")
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("wrong-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, testConfig+"  password_file: %s\n", srv.Addr(), pw)
	_, stderr, code := runCmd(t, "--config", cfg, "locked")
	if code != exitFailed {
		t.Errorf("wrong password: exit %d, want 1", code)
	}
	oneLineErr(t, stderr, "refused the credentials")
	if strings.Contains(stderr, "wrong-password") {
		t.Errorf("the password leaked into the error: %q", stderr)
	}

	_, stderr, code = runCmd(t, "--redis", "redis://"+srv.Addr(), "locked")
	if code != exitFailed {
		t.Errorf("no password: exit %d, want 1", code)
	}
	oneLineErr(t, stderr, "wants a password")

	right := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(right, []byte("right-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCmd(t, "--config", cfg, "--password-file", right, "locked")
	if code != exitOK || stdout != "no account is locked\n" {
		t.Errorf("right password: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestConfigErrorsExit2(t *testing.T) {
	embedded := writeConfig(t, "mode: enforce\n")
	_, stderr, code := runCmd(t, "--config", embedded, "status", "alice")
	if code != exitUsage {
		t.Errorf("embedded store: exit %d, want 2", code)
	}
	oneLineErr(t, stderr, "embedded store lives inside the milter process")

	broken := writeConfig(t, "limits:\n  account_messages: [\"lots\"]\nstrikes:\n  threshold: -1\n")
	_, stderr, code = runCmd(t, "--config", broken, "locked")
	if code != exitUsage {
		t.Errorf("invalid config: exit %d, want 2", code)
	}
	oneLineErr(t, stderr, "strikes.threshold")

	_, stderr, code = runCmd(t, "--config", filepath.Join(t.TempDir(), "missing.yaml"), "locked")
	if code != exitUsage {
		t.Errorf("missing config: exit %d, want 2", code)
	}
	oneLineErr(t, stderr, "no such file")

	_, stderr, code = runCmd(t, "locked")
	if code != exitUsage || !strings.Contains(stderr, "--config FILE") {
		t.Errorf("no config at all: exit %d, stderr %q", code, stderr)
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	port := itoa(redistest.FreePort(t)) // nothing listens: usage errors come first
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"status", "--no-such-flag"},
		{"top", "--window", "soon"},
		{"help", "frobnicate"},
		{"completion", "tcsh"}, // fish is a shell cobra completes now
		{"status"},
		{"status", "client:nonsense"},
		{"lock", "alice"},
		{"override", "alice", "--limit", "messages"},
		{"reset", "alice", "--limit", "client_messages"},
		{"top", "--by", "bytes"},
		{"exempt", "add", "alice"},
		{"exempt", "frob"},
	} {
		_, stderr, code := runCmd(t, append([]string{"--redis", "redis://127.0.0.1:" + port}, args...)...)
		if code != exitUsage {
			t.Errorf("abusectl %q: exit %d, want 2 (stderr %q)", args, code, stderr)
		}
	}
}

func TestCommandLineAgainstRedis(t *testing.T) {
	f := newFixture(t)
	stdout, stderr, code := runCmd(t, "lock", "alice", "--config", f.configPath, "--reason", "spam run", "--for", "1d")
	if code != exitOK || !strings.Contains(stdout, `locked account "alice" for 1d: "spam run" (by `+testUser+`)`) {
		t.Fatalf("lock: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	stdout, _, code = runCmd(t, "--config", f.configPath, "locked")
	if code != exitOK || !strings.Contains(stdout, "alice") || !strings.Contains(stdout, "spam run") || strings.Contains(stdout, "\x1b[") {
		t.Errorf("locked: exit %d\n%s", code, stdout)
	}
	stdout, _, code = runCmd(t, "--config", f.configPath, "status", "alice", "--json")
	if code != exitOK || !strings.Contains(stdout, `"locked": true`) {
		t.Errorf("status --json: exit %d\n%s", code, stdout)
	}
	_, stderr, code = runCmd(t, "--config", f.configPath, "exempt", "remove", "bob")
	if code != exitFailed {
		t.Errorf("exempt remove of nothing: exit %d, want 1", code)
	}
	oneLineErr(t, stderr, `acct:bob has no exemption`)

	// Colour only on a terminal, never with NO_COLOR.
	for _, c := range []struct {
		d    deps
		want bool
	}{
		{deps{stdoutIsTerminal: true}, true},
		{deps{stdoutIsTerminal: true, noColor: true}, false},
		{deps{}, false},
	} {
		c.d.now, c.d.user = time.Now, testUser
		out, errOut, code := runWith(t, c.d, "--config", f.configPath, "status", "alice")
		if code != exitOK {
			t.Fatalf("status: exit %d: %s", code, errOut)
		}
		if got := strings.Contains(out, "\x1b["); got != c.want {
			t.Errorf("terminal %v NO_COLOR %v: colour %v, want %v", c.d.stdoutIsTerminal, c.d.noColor, got, c.want)
		}
	}
}

// commandNames are the commands the help lists, in its order.
var commandNames = []string{"status", "top", "locked", "lock", "unlock", "reset", "override", "exempt", "completion", "help"}

func TestHelp(t *testing.T) {
	stdout, _, code := runCmd(t, "help")
	if code != exitOK {
		t.Fatalf("help: exit %d", code)
	}
	for _, name := range commandNames {
		if !strings.Contains(stdout, "  "+name+" ") {
			t.Errorf("help lacks command %s", name)
		}
	}
	if !strings.Contains(stdout, "Exit codes:") || !strings.Contains(stdout, "2  usage or config error") {
		t.Errorf("help lacks the exit codes:\n%s", stdout)
	}
	for _, name := range commandNames {
		stdout, _, code := runCmd(t, "help", name)
		if code != exitOK || !strings.Contains(stdout, "Usage: abusectl "+name) || !strings.Contains(stdout, "Examples:\n  abusectl ") {
			t.Errorf("help %s: exit %d\n%s", name, code, stdout)
		}
	}
	stdout, _, code = runCmd(t, "lock", "--help")
	if code != exitOK || !strings.Contains(stdout, "--reason") || !strings.Contains(stdout, "--for duration") {
		t.Errorf("lock --help: exit %d\n%s", code, stdout)
	}
}

// completeWords asks the command tree what completes the last of args
// (cobra's __complete, which the generated scripts call) and keeps, as the
// shells do, the candidates that start with it.
func completeWords(t *testing.T, args ...string) []string {
	t.Helper()
	stdout, stderr, code := runCmd(t, append([]string{"__complete"}, args...)...)
	if code != exitOK {
		t.Fatalf("__complete %q: exit %d: %s", args, code, stderr)
	}
	prefix := args[len(args)-1]
	var words []string
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		w, _, _ := strings.Cut(l, "\t")
		if !strings.HasPrefix(w, ":") && strings.HasPrefix(w, prefix) {
			words = append(words, w)
		}
	}
	return words
}

func TestCompletionScripts(t *testing.T) {
	// Complete "abusectl st", "abusectl top --b", "abusectl exempt r",
	// "abusectl top --by r" and "abusectl override alice --li".
	var got []string
	for _, args := range [][]string{
		{"st"},
		{"top", "--b"},
		{"--config", "x.yaml", "exempt", "r"},
		{"top", "--by", "r"},
		{"override", "alice", "--li"},
	} {
		got = append(got, strings.Join(completeWords(t, args...), " "))
	}
	want := "status\n--by\nremove\nrecipients\n--limit\n"
	if out := strings.Join(got, "\n") + "\n"; out != want {
		t.Errorf("completions:\n%s\nwant:\n%s", out, want)
	}

	zsh, _, code := runCmd(t, "completion", "zsh")
	if code != exitOK || !strings.HasPrefix(zsh, "#compdef abusectl") {
		t.Errorf("completion zsh: exit %d\n%s", code, zsh)
	}
	if zshBin, err := exec.LookPath("zsh"); err == nil {
		p := filepath.Join(t.TempDir(), "_abusectl")
		os.WriteFile(p, []byte(zsh), 0o600)
		if out, err := exec.Command(zshBin, "-n", p).CombinedOutput(); err != nil {
			t.Errorf("zsh -n: %v\n%s", err, out)
		}
	}
}

// TestBinaryPrintsOneLine builds abusectl and checks that an unreachable
// Redis gives exactly one line on stderr (go-redis's own pool logging
// silenced) and exit 1.
func TestBinaryPrintsOneLine(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "abusectl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--redis", "redis://127.0.0.1:"+itoa(redistest.FreePort(t)), "top")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != exitFailed {
		t.Fatalf("exit: %v, want 1", err)
	}
	oneLineErr(t, stderr.String(), "is unreachable")
	if stdout.Len() != 0 {
		t.Errorf("stdout = %q, want nothing", stdout.String())
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestParseInterspersed checks that flags may come before, between or
// after the positional arguments ("status alice --json") and that "--"
// ends the flags, as cobra parses every command's line.
func TestParseInterspersed(t *testing.T) {
	for _, c := range []struct {
		args     []string
		pos      string
		json     bool
		reason   string
		wantsErr bool
	}{
		{[]string{"alice", "--json"}, "alice", true, "", false},
		{[]string{"--json", "add", "alice", "--reason", "r s"}, "add alice", true, "r s", false},
		{[]string{"add", "--", "--json"}, "add --json", false, "", false},
		{[]string{"--reason"}, "", false, "", true},
	} {
		var json bool
		var reason string
		var pos []string
		cmd := commandForTest(func(args []string) { pos = args })
		cmd.Flags().BoolVar(&json, "json", false, "")
		cmd.Flags().StringVar(&reason, "reason", "", "")
		cmd.SetArgs(c.args)
		err := cmd.Execute()
		if (err != nil) != c.wantsErr || strings.Join(pos, " ") != c.pos || json != c.json || reason != c.reason {
			t.Errorf("%q: pos %q json %v reason %q err %v", c.args, pos, json, reason, err)
		}
	}
}

// commandForTest is a command that hands its positional arguments to run.
func commandForTest(run func(args []string)) *cobra.Command {
	cmd := &cobra.Command{Use: "t", Run: func(_ *cobra.Command, args []string) { run(args) }}
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	return cmd
}

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
)

// TestHelpAndVersionOnStdout: --help, help COMMAND and --version print to
// stdout, nothing to stderr, and exit 0, on the root and on a subcommand.
func TestHelpAndVersionOnStdout(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"help", "lock"}, {"lock", "--help"}, {"top", "-h"}, {"exempt", "--help"}} {
		stdout, stderr, code := runCmd(t, args...)
		if code != exitOK || stderr != "" || !strings.Contains(stdout, "Usage: abusectl") {
			t.Errorf("abusectl %q: exit %d, stderr %q, stdout:\n%s", args, code, stderr, stdout)
		}
	}
	stdout, _, _ := runCmd(t, "help", "lock")
	if !strings.Contains(stdout, "Usage: abusectl lock ACCOUNT") || !strings.Contains(stdout, "--reason") {
		t.Errorf("help lock is not the help of lock:\n%s", stdout)
	}
	for _, args := range [][]string{{"--version"}, {"--version", "lock"}} {
		stdout, stderr, code := runCmd(t, args...)
		if code != exitOK || stderr != "" || !strings.HasPrefix(stdout, "abusectl ") || strings.Count(stdout, "\n") != 1 {
			t.Errorf("abusectl %q: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
}

// TestUnknownFlagIsTwoLinesExit2: an unknown flag is a usage error (exit
// 2) answered in at most two lines of stderr that name the flag, before
// any connection attempt.
func TestUnknownFlagIsTwoLinesExit2(t *testing.T) {
	port := itoa(redistest.FreePort(t)) // nothing listens there
	for _, args := range [][]string{
		{"--nope"},
		{"--nope", "status", "alice"},
		{"status", "alice", "--nope"},
		{"--redis", "redis://127.0.0.1:" + port, "lock", "alice", "--reason", "r", "--nope"},
		{"top", "--nope", "x"},
	} {
		stdout, stderr, code := runCmd(t, args...)
		lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
		if code != exitUsage || len(lines) > 2 || !strings.Contains(lines[0], "--nope") || stdout != "" {
			t.Errorf("abusectl %q: exit %d, stdout %q, stderr %q; want exit 2 and at most two lines naming --nope", args, code, stdout, stderr)
		}
	}
}

// TestFlagsAfterArgumentsAndDays: flags come before or after the
// arguments, and every duration flag takes days (top --window 1d as lock
// --for 7d).
func TestFlagsAfterArgumentsAndDays(t *testing.T) {
	srv := redistest.Start(t)
	cfg := writeConfig(t, testConfig, srv.Addr())
	stdout, stderr, code := runCmd(t, "lock", "alice", "--for", "7d", "--config", cfg, "--reason", "ticket 1")
	if code != exitOK || !strings.Contains(stdout, `locked account "alice" for 7d: "ticket 1"`) {
		t.Fatalf("lock alice --for 7d: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// Global flags before the command name, the command's own before its
	// argument.
	stdout, stderr, code = runCmd(t, "--config", cfg, "status", "--json", "alice")
	var v statusJSON
	if code != exitOK || json.Unmarshal([]byte(stdout), &v) != nil {
		t.Fatalf("--json status alice: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if v.Lock == nil || parseJSONTime(v.Lock.Until).Sub(parseJSONTime(v.Lock.At)) != 7*24*time.Hour {
		t.Errorf("lock = %+v, want one of 7 days", v.Lock)
	}
	for _, args := range [][]string{
		{"top", "--window", "1d", "--config", cfg, "--json"},
		{"--timeout", "1d", "--config", cfg, "top", "--json", "--window=1d", "--max-time", "1d"},
	} {
		stdout, stderr, code = runCmd(t, args...)
		var top topJSON
		if code != exitOK || json.Unmarshal([]byte(stdout), &top) != nil || top.WindowSeconds != 86400 {
			t.Errorf("abusectl %q: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
	if _, stderr, code := runCmd(t, "--config", cfg, "lock", "bob", "--reason", "r", "--for", "-1h"); code != exitUsage {
		t.Errorf("lock --for -1h: exit %d (%s), want 2", code, stderr)
	}
}

// TestGeneratedCompletion: cobra's completion command writes the scripts
// of bash, zsh and fish; bash parses its own; the scripts call back into
// the command tree (__complete), which offers the subcommands and the
// values of an enumerated flag.
func TestGeneratedCompletion(t *testing.T) {
	scripts := map[string]string{}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		stdout, stderr, code := runCmd(t, "completion", shell)
		if code != exitOK || stderr != "" || !strings.Contains(stdout, "abusectl") || !strings.Contains(stdout, "__complete") {
			t.Fatalf("completion %s: exit %d, stderr %q\n%s", shell, code, stderr, stdout)
		}
		scripts[shell] = stdout
	}
	if bash, err := exec.LookPath("bash"); err != nil {
		t.Logf("bash not installed, not parsing the script: %v", err)
	} else {
		path := filepath.Join(t.TempDir(), "abusectl.bash")
		if err := os.WriteFile(path, []byte(scripts["bash"]), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bash, "-n", path).CombinedOutput(); err != nil {
			t.Errorf("bash -n: %v\n%s", err, out)
		}
	}
	if got := completeWords(t, ""); !slices.Contains(got, "lock") || !slices.Contains(got, "exempt") || !slices.Contains(got, "completion") {
		t.Errorf("subcommands offered: %q", got)
	}
	if got := strings.Join(completeWords(t, "top", "--by", ""), " "); got != "messages recipients strikes" {
		t.Errorf("top --by offers %q, want messages recipients strikes", got)
	}
	if got := completeWords(t, "reset", "alice", "--limit", ""); !slices.Contains(got, "recipients") || !slices.Contains(got, "client_messages") {
		t.Errorf("reset --limit offers %q", got)
	}
}

// TestManPages: the hidden man command writes a page per command.
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	if _, stderr, code := runCmd(t, "man", dir); code != exitOK {
		t.Fatalf("man: exit %d: %s", code, stderr)
	}
	for _, page := range []string{"abusectl.1", "abusectl-lock.1", "abusectl-top.1", "abusectl-exempt.1"} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil || !strings.Contains(string(b), ".TH") {
			t.Errorf("%s: %v", page, err)
		}
	}
}

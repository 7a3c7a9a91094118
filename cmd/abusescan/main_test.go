package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/internal/cli"
	"github.com/abusemilter/abusemilter/internal/config"
)

const mailboxes = "../../testdata/mailboxes"

func mb(name string) string { return filepath.Join(mailboxes, name) }

type outcome struct {
	code           int
	stdout, stderr string
}

// execute runs the command line with run as the root command's work.
func execute(t *testing.T, run func(context.Context, *invocation) error, args ...string) outcome {
	t.Helper()
	var out, errb bytes.Buffer
	root := command(strings.NewReader(""), &out, &errb, run)
	root.SetContext(context.Background())
	code := cli.Execute(root, args)
	return outcome{code, out.String(), errb.String()}
}

// parse returns the invocation a command line makes, without scanning.
func parse(t *testing.T, args ...string) (*invocation, outcome) {
	t.Helper()
	var got *invocation
	o := execute(t, func(_ context.Context, inv *invocation) error {
		got = inv
		return nil
	}, args...)
	return got, o
}

// scanArgs are the flags of a test scan with the test config.
func scanArgs(args ...string) []string {
	return append([]string{"--config", mb("abusescan.yaml"), "--now", "2026-11-20T12:00:00Z", "-j", "2", "--no-progress"}, args...)
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		o := execute(t, scanInputs, args...)
		if o.code != exitOK || o.stderr != "" || !strings.Contains(o.stdout, "Exit status:") || !strings.Contains(o.stdout, "--fail-on") ||
			!strings.Contains(o.stdout, "1  at least one message at or above --fail-on") {
			t.Errorf("%v: exit %d, stderr %q, stdout:\n%s", args, o.code, o.stderr, o.stdout)
		}
	}
	o := execute(t, scanInputs, "help", "completion")
	if o.code != exitOK || o.stderr != "" || !strings.Contains(o.stdout, "bash") || !strings.Contains(o.stdout, "fish") {
		t.Errorf("help completion: exit %d, stderr %q, stdout:\n%s", o.code, o.stderr, o.stdout)
	}
}

func TestVersion(t *testing.T) {
	o := execute(t, scanInputs, "--version")
	if o.code != exitOK || !strings.HasPrefix(o.stdout, "abusescan ") || strings.Count(o.stdout, "\n") != 1 || o.stderr != "" {
		t.Errorf("--version: exit %d, stdout %q, stderr %q", o.code, o.stdout, o.stderr)
	}
}

func TestUnknownFlag(t *testing.T) {
	for _, args := range [][]string{{"--nope"}, {mb("sent.mbox"), "--nope"}, {"--config", "x.yaml", "--nope", "a"}} {
		o := execute(t, scanInputs, args...)
		lines := strings.Split(strings.TrimRight(o.stderr, "\n"), "\n")
		if o.code != exitUsage || len(lines) > 2 || !strings.Contains(lines[0], "--nope") || o.stdout != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and at most two lines naming --nope", args, o.code, o.stdout, o.stderr)
		}
	}
}

func TestParse(t *testing.T) {
	inv, o := parse(t, "--config", "c.yaml", "--account-from-sender", "-j", "3", "--now", "received", "a", "-")
	if o.code != exitOK || inv == nil || inv.configPath != "c.yaml" || !inv.opts.AccountFromSender || inv.opts.Jobs != 3 ||
		inv.opts.Now != "received" || strings.Join(inv.opts.Inputs, " ") != "a -" {
		t.Fatalf("parse = %+v, %+v", inv, o)
	}
	// Flags after the inputs, and -- ending the flags.
	inv, o = parse(t, "a", "--format", "csv", "b", "--account", "alice", "--as-received", "--", "--c")
	if o.code != exitOK || inv.opts.Format != "csv" || inv.opts.Account != "alice" || !inv.opts.AsReceived ||
		strings.Join(inv.opts.Inputs, " ") != "a b --c" {
		t.Errorf("flags after inputs: %+v, %+v", inv, o)
	}
	if inv, _ = parse(t, "--dns", "x.mbox"); inv == nil || !inv.opts.DNS {
		t.Errorf("--dns: %+v", inv)
	}
	inv, _ = parse(t, "x")
	if inv.opts.Format != "text" || inv.opts.FailOn != "reject" || inv.opts.MboxVariant != "mboxo" || inv.opts.Jobs != 0 || inv.noProgress {
		t.Errorf("defaults: %+v", inv.opts)
	}
	for _, args := range [][]string{
		{"--config", "x.yaml", "--bogus"},
		{"--format", "json"}, // no input
		{"--format", "xml", "a"},
		{"--fail-on", "maybe", "a"},
		{"--mbox-variant", "mboxcl", "a"},
	} {
		if inv, o := parse(t, args...); inv != nil || o.code != exitUsage || o.stderr == "" {
			t.Errorf("%v: accepted (%+v), exit %d, stderr %q", args, inv, o.code, o.stderr)
		}
	}
}

// TestFlagAfterArgument: "abusescan FILE --format json" scans FILE and
// reports in JSON lines.
func TestFlagAfterArgument(t *testing.T) {
	o := execute(t, scanInputs, append(scanArgs(mb("sent.mbox")), "--format", "json", "--account", "alice")...)
	lines := strings.Split(strings.TrimSpace(o.stdout), "\n")
	if o.code != exitFound || len(lines) != 5 {
		t.Fatalf("exit %d (want 1: a rejected message), %d lines, stderr %q:\n%s", o.code, len(lines), o.stderr, o.stdout)
	}
	for _, l := range lines {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("not JSON: %v: %s", err, l)
		}
	}
	if !strings.Contains(lines[1], `"verdict":"reject"`) || !strings.Contains(lines[4], `"summary":true`) {
		t.Errorf("report:\n%s", o.stdout)
	}
}

// TestExitStatus: the exit codes abusescan documents, through scanInputs.
func TestExitStatus(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("mode: loud\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sent := mb("sent.mbox")
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"rejected", scanArgs(sent, "--account", "alice"), exitFound, ""},
		{"fail-on never", scanArgs(sent, "--account", "alice", "--fail-on", "never"), exitOK, ""},
		{"nothing refused", scanArgs(mb("maildir")), exitOK, ""},
		{"bad config", []string{"--config", bad, sent}, exitUsage, "mode"},
		{"missing input", scanArgs("/nonexistent/box"), exitUsage, `input "/nonexistent/box"`},
		{"unknown account", scanArgs(sent, "--account", "mallory"), exitUsage, `--account "mallory"`},
		{"bad now", scanArgs(sent, "--now", "yesterday"), exitUsage, `--now "yesterday"`},
		{"no input", []string{"--format", "json"}, exitUsage, "no input given"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := execute(t, scanInputs, tc.args...)
			if o.code != tc.code || !strings.Contains(o.stderr, tc.msg) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q", o.code, o.stderr, tc.code, tc.msg)
			}
		})
	}
	// Warnings about inputs go to stderr with the command's name.
	o := execute(t, scanInputs, scanArgs(mb("truncated.mbox"), "--account", "alice")...)
	if o.code != exitOK || !strings.Contains(o.stderr, "abusescan: warning: ") || !strings.Contains(o.stderr, "truncated.mbox: offset 207: truncated") {
		t.Errorf("truncated: exit %d, stderr %q", o.code, o.stderr)
	}
}

func TestCompletionScripts(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		o := execute(t, scanInputs, "completion", shell)
		if o.code != exitOK || o.stderr != "" || !strings.Contains(o.stdout, "abusescan") || len(o.stdout) < 1000 {
			t.Errorf("completion %s: exit %d, stderr %q, %d bytes", shell, o.code, o.stderr, len(o.stdout))
			continue
		}
		if shell != "bash" {
			continue
		}
		bash, err := exec.LookPath("bash")
		if err != nil {
			t.Log("no bash: not checking the syntax of the bash script")
			continue
		}
		script := filepath.Join(t.TempDir(), "abusescan.bash")
		if err := os.WriteFile(script, []byte(o.stdout), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bash, "-n", script).CombinedOutput(); err != nil {
			t.Errorf("bash -n: %v\n%s", err, out)
		}
	}
}

// TestCompleteValues: cobra's __complete (what every shell script calls)
// offers the values of the enumerated flags, and the subcommands.
func TestCompleteValues(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--format", ""}, []string{"text", "json", "csv"}},
		{[]string{"x.mbox", "--format", ""}, []string{"text", "json", "csv"}},
		{[]string{"--fail-on", ""}, []string{"reject", "defer", "never"}},
		{[]string{"--mbox-variant", ""}, []string{"mboxo", "mboxrd"}},
		{[]string{"--now", ""}, []string{"received"}},
		{[]string{"compl"}, []string{"completion"}},
	} {
		o := execute(t, scanInputs, append([]string{"__complete"}, tc.args...)...)
		lines := strings.Split(strings.TrimSpace(o.stdout), "\n")
		// The last line is the directive (":4" and the like).
		if o.code != exitOK || len(lines) < 1 || !strings.HasPrefix(lines[len(lines)-1], ":") {
			t.Errorf("__complete %q: exit %d, stdout %q", tc.args, o.code, o.stdout)
			continue
		}
		var got []string
		for _, l := range lines[:len(lines)-1] {
			got = append(got, strings.SplitN(l, "\t", 2)[0])
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("__complete %q = %q, want %q", tc.args, got, tc.want)
		}
	}
}

// The in-process commands see no $ABUSEMILTER_CONFIG and no default path,
// whatever the host has (TestConfigSource sets its own).
func init() {
	lookup = func() config.Lookup { return config.Lookup{} }
}

// TestConfigSource: without --config, abusescan reads $ABUSEMILTER_CONFIG,
// else the default path when it exists, else the built-in defaults, and
// says which on stderr.
func TestConfigSource(t *testing.T) {
	dir := t.TempDir()
	def := filepath.Join(dir, "default.yaml")
	envFile := filepath.Join(dir, "env.yaml")
	for _, f := range []string{def, envFile} {
		if err := os.WriteFile(f, []byte("mode: monitor\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{}
	defer func(old func() config.Lookup) { lookup = old }(lookup)
	lookup = func() config.Lookup {
		return config.Lookup{Getenv: func(k string) string { return env[k] }, DefaultPath: def}
	}
	sent := mb("sent.mbox")
	run := func() string {
		o := execute(t, scanInputs, sent, "--fail-on", "never")
		if o.code != exitOK {
			t.Fatalf("exit %d: %s", o.code, o.stderr)
		}
		return o.stderr
	}
	if got := run(); !strings.Contains(got, "abusescan: config: "+def+" (the default path)") {
		t.Errorf("default path: stderr %q", got)
	}
	env["ABUSEMILTER_CONFIG"] = envFile
	if got := run(); !strings.Contains(got, "abusescan: config: "+envFile+" (from $ABUSEMILTER_CONFIG)") {
		t.Errorf("env: stderr %q", got)
	}
	os.Remove(def)
	delete(env, "ABUSEMILTER_CONFIG")
	if got := run(); !strings.Contains(got, "abusescan: config: built-in defaults") {
		t.Errorf("built-in: stderr %q", got)
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/internal/cli"
	"github.com/abusemilter/abusemilter/internal/config"
)

// writeConfig writes a config for a test daemon. Unless the body sets
// metrics itself, the metrics listener is turned off, so that test daemons
// never bind the fixed default port 127.0.0.1:9357.
func writeConfig(t *testing.T, dir, body string) string {
	t.Helper()
	if !strings.Contains(body, "\nmetrics:") && !strings.HasPrefix(body, "metrics:") {
		body += "\nmetrics:\n  listen: \"\"\n"
	}
	path := filepath.Join(dir, "abusemilter.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The in-process commands see no $ABUSEMILTER_CONFIG and no default path,
// whatever the host has.
func init() {
	lookup = func() config.Lookup { return config.Lookup{} }
}

func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = cli.Execute(newRootCommand(&out, &errOut), args)
	return code, out.String(), errOut.String()
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("REDIS_PASSWORD", "s3cret")
	good := writeConfig(t, dir, `
mode: monitor
redis:
  url: redis://127.0.0.1:6390/2
  username: redisuser
  password_env: REDIS_PASSWORD
identity:
  accounts:
    alice:
      logins: [alice]
      send_as: [example.com]
`)
	code, out, errOut := runCmd("--check-config", "--config", good)
	if code != exitOK || !strings.HasPrefix(out, "config OK: "+good+" (from --config)\n") {
		t.Fatalf("good config: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, want := range []string{"mode:      monitor", "alice, local", "redis redis://127.0.0.1:6390/2"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out+errOut, "s3cret") || strings.Contains(out, "redisuser") {
		t.Fatalf("summary leaks credentials:\n%s", out)
	}

	bad := writeConfig(t, t.TempDir(), "mode: loud\nsession:\n  idle_timeout: soon\nlog:\n  level: shouting\n")
	code, out, errOut = runCmd("--check-config", "--config", bad)
	if code != exitUsage || out != "" {
		t.Fatalf("bad config: exit %d, stdout %q", code, out)
	}
	for _, want := range []string{"3 problem(s)", "mode (line 1):", "session.idle_timeout (line 3)", "log.level (line 5):"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("errors lack %q:\n%s", want, errOut)
		}
	}
	if code, _, errOut := runCmd("--check-config", "--config", filepath.Join(dir, "missing.yaml")); code != exitUsage || !strings.Contains(errOut, "missing.yaml") {
		t.Fatalf("missing file: exit %d, %q", code, errOut)
	}
}

func TestFlags(t *testing.T) {
	if code, out, _ := runCmd("--version"); code != exitOK || !strings.HasPrefix(out, "abusemilter ") {
		t.Fatalf("--version: %d %q", code, out)
	}
	sock := "unix:" + filepath.Join(t.TempDir(), "abusemilter.sock")
	if code, out, errOut := runCmd("--check-config", "--listen", sock, "--log-format", "json"); code != exitOK || !strings.Contains(out, "listen:    "+sock) {
		t.Fatalf("--listen override: %d %q %q", code, out, errOut)
	}
	if code, out, _ := runCmd("--check-config"); code != exitOK || !strings.HasPrefix(out, "config OK: built-in defaults (no --config") {
		t.Fatalf("no config: %d %q", code, out)
	}
	code, _, errOut := runCmd("--check-config", "--listen", "inet:0.0.0.0:7357")
	if code != exitUsage || !strings.Contains(errOut, "not a loopback address") {
		t.Fatalf("non-loopback --listen: %d %q", code, errOut)
	}
	if code, _, errOut := runCmd("--log-format", "xml", "--check-config"); code != exitUsage || !strings.Contains(errOut, `"xml"`) {
		t.Fatalf("bad --log-format: %d %q", code, errOut)
	}
	if code, _, errOut := runCmd("--no-such-flag"); code != exitUsage || !strings.Contains(errOut, "no-such-flag") {
		t.Fatalf("unknown flag: %d %q", code, errOut)
	}
	if code, _, errOut := runCmd("serve"); code != exitUsage || !strings.Contains(errOut, "unexpected arguments") {
		t.Fatalf("positional argument: %d %q", code, errOut)
	}
	if code, _, _ := runCmd("--help"); code != exitOK {
		t.Fatalf("--help: %d", code)
	}
}

// TestCheckConfigJSON: --check-config --json prints the effective
// configuration (defaults filled in) and where it came from, with secrets
// redacted; --json alone is a usage error.
func TestCheckConfigJSON(t *testing.T) {
	path := writeConfig(t, t.TempDir(), `
mode: monitor
notify:
  webhooks:
    - url: https://hooks.example.com/services/T0/B0/s3cr3tpath
`)
	code, out, errOut := runCmd("--check-config", "--json", "--config", path)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var v struct {
		Source string         `json:"source"`
		Config map[string]any `json:"config"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if v.Source != path+" (from --config)" || v.Config["mode"] != "monitor" || v.Config["listen"] != "inet:127.0.0.1:7357" {
		t.Errorf("source %q, mode %v, listen %v", v.Source, v.Config["mode"], v.Config["listen"])
	}
	if session, _ := v.Config["session"].(map[string]any); session["idle_timeout"] != "10m" {
		t.Errorf("defaults not filled in: session %v", v.Config["session"])
	}
	if strings.Contains(out, "s3cr3tpath") || !strings.Contains(out, "https://hooks.example.com/REDACTED") {
		t.Errorf("the webhook URL is not redacted:\n%s", out)
	}
	if code, _, errOut := runCmd("--json"); code != exitUsage || !strings.Contains(errOut, "--json goes with --check-config") {
		t.Errorf("--json alone: exit %d, %q", code, errOut)
	}
}

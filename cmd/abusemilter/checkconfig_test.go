package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBinaryBrokenConfigs runs the built binary on broken configs, once
// with --check-config and once as a start, and wants from both exit status
// 2 (which the systemd unit does not restart) and the same message, naming
// the field path, the line and the value as written.
func TestBinaryBrokenConfigs(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	notExec := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mapFile := filepath.Join(dir, "sender_login")
	if err := os.WriteFile(mapFile, []byte("@bad..example alice\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		body string
		want []string
	}{
		{"misspelt key", "limtis:\n  account_messages: [100/1h]\n",
			[]string{`limtis (line 1): unknown key "limtis" (did you mean limits?)`}},
		{"misspelt nested key", "identity:\n  acounts: {}\n",
			[]string{`identity.acounts (line 2): unknown key "acounts" (did you mean accounts?)`}},
		{"send_as not an address", "identity:\n  accounts:\n    carol:\n      send_as: [\"not an address!\"]\n",
			[]string{`identity.accounts.carol.send_as[0] (line 4): send_as pattern "not an address!"`}},
		{"sender_login_maps file missing", "identity:\n  sender_login_maps: [" + missing + "/sender_login]\n",
			[]string{`identity.sender_login_maps[0] (line 2): ` + missing + `/sender_login does not exist`}},
		{"sender_login_maps bad sender", "identity:\n  sender_login_maps: [" + mapFile + "]\n",
			[]string{`identity.sender_login_maps[0] (line 2): ` + mapFile + `:1`}},
		{"webhook token_file missing", "notify:\n  webhooks:\n    - url: https://hooks.example.com/x\n      token_file: " + missing + "/token\n",
			[]string{`notify.webhooks[0].token_file (line 4): ` + missing + `/token does not exist`}},
		{"webhook token_env unset", "notify:\n  webhooks:\n    - url: https://hooks.example.com/x\n      token_env: AM_TEST_NO_SUCH_VARIABLE\n",
			[]string{`notify.webhooks[0].token_env (line 4): webhook token environment variable "AM_TEST_NO_SUCH_VARIABLE" is not set`}},
		{"on-lock program missing", "notify:\n  on_lock_command: [" + missing + "/lock-hook, \"{account}\"]\n",
			[]string{`notify.on_lock_command (line 2): the program ` + missing + `/lock-hook does not exist`}},
		{"on-lock program not executable", "notify:\n  on_lock_command: [" + notExec + "]\n",
			[]string{`notify.on_lock_command (line 2): the program "` + notExec + `" is not executable`}},
		{"audit log directory missing", "notify:\n  audit_log: " + missing + "/audit.jsonl\n",
			[]string{`notify.audit_log (line 2): the directory of the audit log: ` + missing + ` does not exist`}},
		{"classifier model not a model", "rules:\n  classifier:\n    model: " + notExec + "\n",
			[]string{`rules.classifier.model (line 3): model ` + notExec + `: bad magic: not a valid model`}},
		{"classifier model missing", "rules:\n  classifier:\n    model: " + missing + "/model\n",
			[]string{`rules.classifier.model (line 3): model ` + missing + `/model: open ` + missing + `/model: no such file or directory`}},
		{"listen port out of range", "listen: inet:127.0.0.1:99999\n",
			[]string{`listen (line 1): "inet:127.0.0.1:99999": port 99999 is out of range (1-65535)`}},
		{"socket directory missing", "listen: unix:" + missing + "/abusemilter.sock\n",
			[]string{`listen (line 1): "unix:` + missing + `/abusemilter.sock": the socket directory ` + missing + ` does not exist`}},
		{"socket group missing", "listen: unix:" + dir + "/abusemilter.sock\nsocket:\n  group: am-no-such-group\n",
			[]string{`socket.group (line 3): group "am-no-such-group" does not exist on this host`}},
		{"score not a number", "rules:\n  scores: {X: abc}\n",
			[]string{`rules.scores.X (line 2): want a number, got "abc"`}},
		{"rate window", "limits:\n  account_messages: [\"20/xx\"]\n",
			[]string{`limits.account_messages[0] (line 2): rate "20/xx": bad window "xx"`}},
		{"whole number", "session:\n  max_sessions: many\n",
			[]string{`session.max_sessions (line 2): want a whole number, got "many"`}},
		{"mode", "mode: loud\n",
			[]string{`mode (line 1): "loud" is not one of enforce, monitor`}},
		{"duration", "session:\n  idle_timeout: soon\n",
			[]string{`session.idle_timeout (line 2): invalid duration "soon"`}},
		{"redis password file missing", "redis:\n  url: redis://127.0.0.1:6379\n  password_file: " + missing + "/redis.pw\n",
			[]string{`redis.password_file (line 3): ` + missing + `/redis.pw does not exist`}},
		{"redis TLS client certificate missing", "redis:\n  url: rediss://127.0.0.1:6379\n  tls:\n    cert_file: " + missing + "/c.pem\n    key_file: " + missing + "/k.pem\n",
			[]string{`redis.tls.cert_file (line 4):`}},
		{"metrics port", "metrics:\n  listen: 127.0.0.1:70000\n",
			[]string{`metrics.listen (line 2): "127.0.0.1:70000": port 70000 is out of range`}},
		{"YAML syntax", "mode: enforce\n  listen: x\n",
			[]string{`line 2: mapping values are not allowed in this context`}},
		{"every problem at once", "mode: loud\nlimtis: {}\nlisten: inet:127.0.0.1:99999\nnotify:\n  on_lock_command: [" + missing + "/hook]\n",
			[]string{"problem(s)", `mode (line 1)`, `limtis (line 2)`, `listen (line 3)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeConfig(t, t.TempDir(), tc.body)
			checkCode, checkOut, checkErr := runToEnd(t, bin, "--check-config", "--config", cfg)
			startCode, startOut, startErr := runToEnd(t, bin, "--config", cfg, "--log-format", "json")
			if checkCode != 2 || startCode != 2 {
				t.Fatalf("exit %d from --check-config, %d from the start; want 2 from both\ncheck: %s\nstart: %s", checkCode, startCode, checkErr, startErr)
			}
			if checkOut != "" || startOut != "" {
				t.Errorf("stdout not empty: %q / %q", checkOut, startOut)
			}
			if checkErr != startErr {
				t.Errorf("--check-config and the start say different things:\ncheck: %s\nstart: %s", checkErr, startErr)
			}
			for _, w := range tc.want {
				if !strings.Contains(checkErr, w) {
					t.Errorf("message lacks %q:\n%s", w, checkErr)
				}
			}
			for _, goType := range []string{"float64", "[]string", "config.Config", "!!str", "not found in type"} {
				if strings.Contains(checkErr, goType) {
					t.Errorf("message names a Go or YAML type (%s):\n%s", goType, checkErr)
				}
			}
		})
	}
}

// runBinary runs the built binary to its end, with no $ABUSEMILTER_CONFIG.
func runToEnd(t *testing.T, bin string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A start that is not refused serves until killed: that is a failure.
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = withoutEnv(os.Environ(), "ABUSEMILTER_CONFIG")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errOut.String()
	case err != nil:
		t.Fatal(err)
	}
	return 0, out.String(), errOut.String()
}

func withoutEnv(env []string, name string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

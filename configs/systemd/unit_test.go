// Package systemd_test checks the shipped systemd unit: that it parses,
// carries the hardening a postmaster expects, and (where systemd-analyze is
// installed) that systemd itself accepts every line of it.
package systemd_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const unitFile = "abusemilter.service"

// unit maps "Section.Key" to every value given for it, in order.
type unit map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		switch {
		case text == "" || strings.HasPrefix(text, "#") || strings.HasPrefix(text, ";"):
		case strings.HasPrefix(text, "[") && strings.HasSuffix(text, "]"):
			section = strings.Trim(text, "[]")
		default:
			key, value, ok := strings.Cut(text, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", path, line, text)
			}
			k := section + "." + strings.TrimSpace(key)
			u[k] = append(u[k], strings.TrimSpace(value))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// last is the value in force for a key (systemd: the last assignment wins
// for single-valued settings).
func (u unit) last(key string) (string, bool) {
	v, ok := u[key]
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

func TestUnitHardening(t *testing.T) {
	u := parseUnit(t, unitFile)
	want := map[string]string{
		"Service.Type":                     "notify",
		"Service.NotifyAccess":             "main",
		"Service.WatchdogSec":              "30s",
		"Service.Environment":              "GOTRACEBACK=crash",
		"Service.LimitCORE":                "0",
		"Service.Restart":                  "on-failure",
		"Service.RestartPreventExitStatus": "2",
		"Service.ExecReload":               "/bin/kill -HUP $MAINPID",
		"Service.User":                     "abusemilter",
		"Service.Group":                    "abusemilter",
		"Service.RuntimeDirectory":         "abusemilter",
		"Service.NoNewPrivileges":          "yes",
		"Service.ProtectSystem":            "strict",
		"Service.ProtectHome":              "yes",
		"Service.PrivateTmp":               "yes",
		"Service.PrivateDevices":           "yes",
		"Service.ProtectKernelTunables":    "yes",
		"Service.ProtectKernelModules":     "yes",
		"Service.ProtectKernelLogs":        "yes",
		"Service.ProtectControlGroups":     "yes",
		"Service.RestrictAddressFamilies":  "AF_INET AF_INET6 AF_UNIX",
		"Service.MemoryDenyWriteExecute":   "yes",
		"Service.LockPersonality":          "yes",
		"Service.CapabilityBoundingSet":    "",
		"Service.AmbientCapabilities":      "",
		"Service.ReadWritePaths":           "-/var/spool/postfix/abusemilter",
		"Install.WantedBy":                 "multi-user.target",
	}
	for key, w := range want {
		got, ok := u.last(key)
		if !ok {
			t.Errorf("%s is missing", key)
		} else if got != w {
			t.Errorf("%s=%q, want %q", key, got, w)
		}
	}
	execStart, _ := u.last("Service.ExecStart")
	if !strings.HasPrefix(execStart, "/usr/bin/abusemilter ") {
		t.Errorf("ExecStart=%q: the packages install the daemon as /usr/bin/abusemilter", execStart)
	}
	if !strings.Contains(execStart, "--config ") {
		t.Errorf("ExecStart=%q does not pass --config", execStart)
	}
	// Writable places must be only the ones the daemon needs.
	if logs, _ := u.last("Service.LogsDirectory"); logs != "abusemilter" {
		t.Errorf("LogsDirectory=%q, want abusemilter (for the audit log)", logs)
	}
}

func TestTmpfilesEntryMatchesUnit(t *testing.T) {
	data, err := os.ReadFile("abusemilter-tmpfiles.conf")
	if err != nil {
		t.Fatal(err)
	}
	var entries [][]string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			entries = append(entries, strings.Fields(line))
		}
	}
	want := []string{"d", "/var/spool/postfix/abusemilter", "0750", "abusemilter", "postfix", "-"}
	if len(entries) != 1 || strings.Join(entries[0], " ") != strings.Join(want, " ") {
		t.Errorf("tmpfiles entries = %q, want one %q", entries, want)
	}
	rw, _ := parseUnit(t, unitFile).last("Service.ReadWritePaths")
	if strings.TrimPrefix(rw, "-") != want[1] {
		t.Errorf("unit ReadWritePaths=%q does not cover the tmpfiles directory %q", rw, want[1])
	}
}

// TestSystemdAcceptsUnit runs systemd-analyze verify on the unit (with
// ExecStart pointed at an existing binary, since the daemon is not
// installed here) and fails on any complaint, including the "unknown key"
// warnings that verify reports without failing.
func TestSystemdAcceptsUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("ABUSEMILTER_REQUIRE_TOOLS") == "1" {
			t.Fatalf("systemd-analyze is missing and ABUSEMILTER_REQUIRE_TOOLS=1")
		}
		t.Skipf("systemd-analyze not installed: cannot verify %s with systemd itself", unitFile)
	}
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	stub, err := exec.LookPath("true")
	if err != nil {
		t.Fatalf("no true(1) to stand in for the daemon: %v", err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "ExecStart="); ok {
			_, args, _ := strings.Cut(rest, " ")
			line = "ExecStart=" + stub + " " + args
		}
		out = append(out, line)
	}
	path := filepath.Join(t.TempDir(), unitFile)
	if err := os.WriteFile(path, []byte(strings.Join(out, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(analyze, "verify", path)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	err = cmd.Run()
	if err != nil || strings.TrimSpace(stderr.String()) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, stderr.String())
	}
}

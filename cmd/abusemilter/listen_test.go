package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestBinaryLoopbackOnly: a TCP listener on anything but loopback is refused
// unless the config sets allow_non_loopback, whether the address comes from
// the config or from --listen; nothing is opened when it is refused.
func TestBinaryLoopbackOnly(t *testing.T) {
	for _, tt := range []struct {
		name     string
		listen   string // in the config
		flag     string // --listen, when set
		allow    bool
		refused  bool   // refused for not being loopback
		bindFail string // otherwise: the bind itself must fail with this (192.0.2.1 is not ours)
	}{
		{name: "config, all interfaces", listen: "inet:0.0.0.0:0", refused: true},
		{name: "config, IPv6 any", listen: "inet:[::]:0", refused: true},
		{name: "config, empty host", listen: "inet::0", refused: true},
		{name: "config, a host name", listen: "inet:mail.example.com:7357", refused: true},
		{name: "config, a public address", listen: "inet:192.0.2.1:0", refused: true},
		{name: "flag over a loopback config", listen: "inet:127.0.0.1:0", flag: "inet:0.0.0.0:0", refused: true},
		{name: "flag, IPv4-mapped any", listen: "inet:127.0.0.1:0", flag: "inet:[::ffff:0.0.0.0]:0", refused: true},
		{name: "config allows it", listen: "inet:192.0.2.1:0", allow: true, bindFail: "assign requested address"},
		{name: "config allows the flag's address", listen: "inet:127.0.0.1:0", flag: "inet:192.0.2.1:0", allow: true, bindFail: "assign requested address"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := fmt.Sprintf("listen: %q\nallow_non_loopback: %v\n", tt.listen, tt.allow)
			cfg := writeConfig(t, t.TempDir(), body)
			args := []string{"--config", cfg, "--log-format", "json"}
			if tt.flag != "" {
				args = append(args, "--listen", tt.flag)
			}
			out, err := exec.Command(binary(t), args...).CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code == 0 || strings.Contains(string(out), "abusemilter ready") {
				t.Fatalf("the daemon started (exit %d):\n%s", code, out)
			}
			mentionsLoopback := strings.Contains(string(out), "loopback")
			if tt.refused && !mentionsLoopback {
				t.Fatalf("want a refusal naming loopback, got exit %d:\n%s", code, out)
			}
			if !tt.refused && (mentionsLoopback || !strings.Contains(string(out), tt.bindFail)) {
				t.Fatalf("with allow_non_loopback the address must pass the check and fail at bind (%q):\n%s", tt.bindFail, out)
			}
			t.Logf("exit %d: %s", code, strings.TrimSpace(string(out)))
		})
	}
}

// TestBinarySocketModeIgnoresUmask runs the daemon under a restrictive and a
// permissive umask: the unix socket gets the configured mode either way, and
// is removed when the daemon stops.
func TestBinarySocketModeIgnoresUmask(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		if os.Getenv("ABUSEMILTER_REQUIRE_TOOLS") == "1" {
			t.Fatalf("sh is missing: %v", err)
		}
		t.Skipf("sh is missing (needed to set a umask for the daemon only): %v", err)
	}
	for _, tt := range []struct {
		umask, mode string
		want        os.FileMode
	}{
		{"077", "0660", 0o660},
		{"000", "0600", 0o600},
		{"027", "0666", 0o666},
	} {
		t.Run("umask "+tt.umask+" mode "+tt.mode, func(t *testing.T) {
			dir := t.TempDir()
			sock := filepath.Join(dir, "milter.sock")
			cfg := writeConfig(t, dir, fmt.Sprintf("listen: unix:%s\nsocket:\n  mode: %q\n", sock, tt.mode))
			p := startCommand(t, exec.Command(sh, "-c", `umask "$0" && exec "$@"`, tt.umask, binary(t), "--config", cfg, "--log-format", "json"))
			p.waitLog(t, "abusemilter ready", 0)
			fi, err := os.Stat(sock)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != tt.want {
				t.Fatalf("socket %v under umask %s, want mode %o", fi.Mode(), tt.umask, tt.want)
			}
			p.signal(t, syscall.SIGTERM)
			if code := p.waitExit(t); code != 0 {
				t.Fatalf("exit %d", code)
			}
			if _, err := os.Lstat(sock); !os.IsNotExist(err) {
				t.Fatalf("socket left behind after a clean stop: %v", err)
			}
		})
	}
}

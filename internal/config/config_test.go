package config

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	if c.Session.IdleTimeout.Duration != 10*time.Minute || c.Message.BodySample.Bytes != 256<<10 || c.Redis != nil {
		t.Errorf("unexpected defaults: %+v", c)
	}
}

func TestEmptyFileIsDefault(t *testing.T) {
	c, err := Parse([]byte("# nothing\n"), "empty.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != "enforce" || c.Listen != "inet:127.0.0.1:7357" {
		t.Errorf("empty file did not give defaults: mode %q listen %q", c.Mode, c.Listen)
	}
}

func TestAllErrorsAtOnce(t *testing.T) {
	_, err := Parse([]byte(`
mode: loud
listen: inet:0.0.0.0:7357
session:
  idle_timeout: tenminutes
  max_sessions: 0
identity:
  unknown_login: shrug
  networks:
    - {network: 10.0.0.0/33, account: ghost}
limits:
  account_messages: [lots]
bogus_key: 1
`), "bad.yaml")
	if err == nil {
		t.Fatal("broken config accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		"bad.yaml",
		`mode: "loud" is not one of enforce, monitor`,
		"listen: \"inet:0.0.0.0:7357\" is not a loopback address",
		`session.idle_timeout (line 5): invalid duration "tenminutes"`,
		"session.max_sessions: must be at least 1",
		`identity.unknown_login: "shrug"`,
		`identity.networks[0].network: invalid network "10.0.0.0/33"`,
		`identity.networks[0].account: unknown account "ghost"`,
		`limits.account_messages[0]: rate "lots"`,
		"line 13: field bogus_key not found",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q:\n%s", want, msg)
		}
	}
}

func TestNonLoopbackAllowedExplicitly(t *testing.T) {
	if _, err := Parse([]byte("listen: inet:0.0.0.0:7357\nallow_non_loopback: true\n"), "x"); err != nil {
		t.Errorf("allow_non_loopback did not allow: %v", err)
	}
}

func TestParseListen(t *testing.T) {
	for in, want := range map[string]string{
		"inet:127.0.0.1:7357":  "tcp 127.0.0.1:7357",
		"inet:[::1]:7357":      "tcp [::1]:7357",
		"unix:/run/am/am.sock": "unix /run/am/am.sock",
	} {
		n, a, err := ParseListen(in)
		if err != nil || n+" "+a != want {
			t.Errorf("ParseListen(%q) = %s %s %v, want %s", in, n, a, err, want)
		}
	}
	for _, bad := range []string{"127.0.0.1:7357", "unix:relative.sock", "inet:nohost", "tcp6x:1:2"} {
		if _, _, err := ParseListen(bad); err == nil {
			t.Errorf("ParseListen(%q) accepted", bad)
		}
	}
}

func TestSizesAndDurations(t *testing.T) {
	for in, want := range map[string]int64{"262144": 262144, "256KiB": 256 << 10, "1MiB": 1 << 20, "10MB": 10e6, "2G": 2 << 30} {
		if got, err := ParseByteSize(in); err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d %v, want %d", in, got, err, want)
		}
	}
	for in, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "200ms": 200 * time.Millisecond, "0": 0} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v %v, want %v", in, got, err, want)
		}
	}
	for d, want := range map[time.Duration]string{36 * time.Hour: "36h", 10 * time.Minute: "10m", 30 * time.Second: "30s", 90 * time.Minute: "1h30m", 200 * time.Millisecond: "200ms", 48 * time.Hour: "2d"} {
		if got := D(d).String(); got != want {
			t.Errorf("Duration(%v).String() = %q, want %q", d, got, want)
		}
	}
}

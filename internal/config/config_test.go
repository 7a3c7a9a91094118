package config

import (
	"reflect"
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
		`mode (line 2): "loud" is not one of enforce, monitor`,
		"listen (line 3): \"inet:0.0.0.0:7357\" is not a loopback address",
		`session.idle_timeout (line 5): invalid duration "tenminutes"`,
		"session.max_sessions (line 6): must be at least 1",
		`identity.unknown_login (line 8): "shrug"`,
		`identity.networks[0].network (line 10): invalid network "10.0.0.0/33"`,
		`identity.networks[0].account (line 10): unknown account "ghost"`,
		`limits.account_messages[0] (line 12): rate "lots"`,
		`bogus_key (line 13): unknown key "bogus_key"`,
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

// TestShapeProblems: unknown keys name the nearest known one, values of the
// wrong kind name the kind wanted and echo the value, never a Go type, and
// every problem has its path and line.
func TestShapeProblems(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"limtis: {}\n", `limtis (line 1): unknown key "limtis" (did you mean limits?)`},
		{"limits:\n  acount_messages: [1/1h]\n", `limits.acount_messages (line 2): unknown key "acount_messages" (did you mean account_messages?)`},
		{"rules:\n  scores: {X: abc}\n", `rules.scores.X (line 2): want a number, got "abc"`},
		{"session:\n  max_sessions: many\n", `session.max_sessions (line 2): want a whole number, got "many"`},
		{"dns:\n  enabled: perhaps\n", `dns.enabled (line 2): want true or false, got "perhaps"`},
		{"identity:\n  accounts: [a, b]\n", `identity.accounts (line 2): want a mapping of NAME: value entries, got a list`},
		{"identity:\n  sender_login_maps: /etc/postfix/x\n", `identity.sender_login_maps (line 2): want a list`},
		{"session:\n  idle_timeout: [1m]\n", `session.idle_timeout (line 2): want a duration such as 30s, 10m, 1h or 7d, got a list`},
		{"limits:\n  account_messages: [20/xx]\n", `limits.account_messages[0] (line 2): rate "20/xx": bad window "xx"`},
		{"listen: inet:127.0.0.1:99999\n", `listen (line 1): "inet:127.0.0.1:99999": port 99999 is out of range (1-65535)`},
		{"metrics:\n  listen: 127.0.0.1:70000\n", `metrics.listen (line 2): "127.0.0.1:70000": port 70000 is out of range`},
		{"metrics:\n  listen: 127.0.0.1:http\n", `metrics.listen (line 2): "127.0.0.1:http": port "http" is not a number`},
		{"redis:\n  url: redis://x:1\n  tls:\n    cafile: /x\n", `redis.tls.cafile (line 4): unknown key "cafile" (did you mean ca_file?)`},
		{"mode: [enforce]\n", `mode (line 1): want a text value, got a list`},
		{"just text\n", `(top level) (line 1): want a section of keys`},
		{"mode: enforce\n  listen: x\n", `line 2: mapping values are not allowed`},
	} {
		_, err := Parse([]byte(tc.doc), "t.yaml")
		if err == nil {
			t.Errorf("%q accepted", tc.doc)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.want) {
			t.Errorf("%q:\n got %s\nwant %s", tc.doc, msg, tc.want)
		}
		for _, goType := range []string{"float64", "int", "config.", "[]string", "map[", "!!"} {
			if strings.Contains(msg, goType) {
				t.Errorf("%q: message names a Go or YAML type (%s): %s", tc.doc, goType, msg)
			}
		}
	}
}

// TestUnknownKeyEverySection: the known keys come from the yaml tags by
// reflection, so any section (including ones added later) is checked.
func TestUnknownKeyEverySection(t *testing.T) {
	for _, section := range KnownKeys(reflect.TypeOf(Config{})) {
		doc := section + ":\n  zz_not_a_key: 1\n"
		_, err := Parse([]byte(doc), "t.yaml")
		switch {
		case err != nil && strings.Contains(err.Error(), `unknown key "zz_not_a_key"`):
		case err != nil && strings.Contains(err.Error(), "want "):
			// a scalar or list key: the mapping is the wrong kind
		case err == nil:
			t.Errorf("%s: an unknown key in it was accepted", section)
		default:
			t.Errorf("%s: %v", section, err)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"limtis", "limits", 1}, {"", "abc", 3}, {"redis", "redis", 0}, {"mdoe", "mode", 1}, {"lisen", "listen", 1}} {
		if got := editDistance(tc.a, tc.b); got != tc.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.d)
		}
	}
}

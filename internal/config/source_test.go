package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestResolveOrder: --config, else $ABUSEMILTER_CONFIG, else the default
// path when it exists, else the built-in defaults; each says which.
func TestResolveOrder(t *testing.T) {
	dir := t.TempDir()
	def := filepath.Join(dir, "abusemilter.yaml")
	env := map[string]string{}
	l := Lookup{Getenv: func(k string) string { return env[k] }, DefaultPath: def}

	// Nothing anywhere: the built-in defaults.
	s := Resolve("", l)
	if s.How != FromBuiltIn || s.Path != "" {
		t.Fatalf("nothing given: %+v", s)
	}
	if !strings.Contains(s.String(), "built-in defaults") {
		t.Errorf("String() = %q", s.String())
	}
	c, err := s.Load()
	if err != nil || c.Mode != "enforce" || c.Path != "" {
		t.Fatalf("built-in load: %v %+v", err, c)
	}

	// The default path, once it exists.
	if err := os.WriteFile(def, []byte("mode: monitor\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s = Resolve("", l)
	if s.How != FromDefaultPath || s.Path != def || !strings.Contains(s.String(), "the default path") {
		t.Fatalf("default path: %+v %q", s, s)
	}
	if c, err := s.Load(); err != nil || c.Mode != "monitor" || c.Path != def {
		t.Fatalf("default path load: %v %+v", err, c)
	}

	// The environment variable wins over the default path, even when its
	// file is missing (then loading says so).
	env[EnvVar] = filepath.Join(dir, "env.yaml")
	s = Resolve("", l)
	if s.How != FromEnv || s.Path != env[EnvVar] || !strings.Contains(s.String(), "$ABUSEMILTER_CONFIG") {
		t.Fatalf("env: %+v", s)
	}
	if _, err := s.Load(); err == nil || !strings.Contains(err.Error(), "$ABUSEMILTER_CONFIG") {
		t.Fatalf("missing env file: %v", err)
	}

	// --config wins over everything.
	flag := filepath.Join(dir, "flag.yaml")
	if err := os.WriteFile(flag, []byte("mode: enforce\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s = Resolve(flag, l)
	if s.How != FromFlag || s.Path != flag || !strings.Contains(s.String(), "from --config") {
		t.Fatalf("flag: %+v", s)
	}
	if c, err := s.Load(); err != nil || c.Path != flag {
		t.Fatalf("flag load: %v", err)
	}

	// An empty variable is no variable.
	env[EnvVar] = ""
	if s := Resolve("", l); s.How != FromDefaultPath {
		t.Fatalf("empty env: %+v", s)
	}
}

func TestSystemLookupDefaultPath(t *testing.T) {
	if l := SystemLookup(); l.DefaultPath != "/etc/abusemilter/abusemilter.yaml" {
		t.Errorf("default path %q", l.DefaultPath)
	}
}

// TestEffective: every key with its default, and a webhook URL's secret
// path and query redacted.
func TestEffective(t *testing.T) {
	c, err := Parse([]byte(`
notify:
  webhooks:
    - url: https://hooks.example.com/services/T000/B000/s3cr3t?token=abc
redis:
  url: redis://127.0.0.1:6379/0
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data, err := c.EffectiveJSON()
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for _, want := range []string{`"mode": "enforce"`, `"idle_timeout": "10m"`, `"key_prefix": "am:"`, `"timeout": "200ms"`,
		`"retries": 3`, `"url": "https://hooks.example.com/REDACTED"`, `"account_messages": [`} {
		if !strings.Contains(s, want) {
			t.Errorf("effective config lacks %s:\n%s", want, s)
		}
	}
	for _, secret := range []string{"s3cr3t", "token=abc", "T000"} {
		if strings.Contains(s, secret) {
			t.Errorf("effective config shows %q", secret)
		}
	}
}

// TestMerge: a later check's problems are added once, without repeating a
// field the file's problems already cover.
func TestMerge(t *testing.T) {
	first := &Error{Path: "f", Problems: []string{"identity.networks[0].account (line 3): unknown account", "mode (line 1): bad"}}
	second := &Error{Path: "f", Problems: []string{"identity: network: unknown account", "mode: bad too", "listen (line 2): no socket directory"}}
	err := Merge("f", first, second)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Merge returned %v", err)
	}
	want := []string{"mode (line 1): bad", "listen (line 2): no socket directory", "identity.networks[0].account (line 3): unknown account"}
	if strings.Join(e.Problems, "|") != strings.Join(want, "|") {
		t.Errorf("merged:\n%s\nwant:\n%s", strings.Join(e.Problems, "\n"), strings.Join(want, "\n"))
	}
	if Merge("f", nil, nil) != nil {
		t.Error("nothing merged into an error")
	}
	if err := Merge("f", nil, second); err == nil || len(err.(*Error).Problems) != 3 {
		t.Errorf("Merge(nil, second) = %v", err)
	}
}

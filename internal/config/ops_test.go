package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// parseNotify decodes a notify section over DefaultNotify and validates it,
// as Parse will once the lead adds the field to Config.
func parseNotify(t *testing.T, src string) (NotifyConfig, errorList) {
	t.Helper()
	n := DefaultNotify()
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&n); err != nil {
		t.Fatalf("decoding %q: %v", src, err)
	}
	var e errorList
	n.validate(&e)
	return n, e
}

func TestDefaultNotifyIsValid(t *testing.T) {
	n := DefaultNotify()
	var e errorList
	n.validate(&e)
	if len(e) > 0 {
		t.Fatalf("DefaultNotify invalid: %v", e)
	}
	if n.Threshold != 0.8 || n.QueueSize != 1000 || len(n.Webhooks) != 0 || n.AuditLog != "" {
		t.Errorf("unexpected defaults: %+v", n)
	}
}

func TestNotifyWebhookDefaultsFilled(t *testing.T) {
	n, e := parseNotify(t, `
webhooks:
  - url: https://hooks.example.net/abuse
    token_env: HOOK_TOKEN
  - url: http://127.0.0.1:8080/x
    retries: 0
    timeout: 2s
audit_log: /var/log/abusemilter/audit.jsonl
on_lock_command: [/usr/local/sbin/hold-account, "{account}", "{reason}"]
`)
	if len(e) > 0 {
		t.Fatalf("valid config rejected: %v", e)
	}
	if got := n.Webhooks[0].Timeout.Duration; got != DefaultWebhookTimeout {
		t.Errorf("webhooks[0].timeout = %v, want default %v", got, DefaultWebhookTimeout)
	}
	if got := n.Webhooks[0].RetryCount(); got != DefaultWebhookRetries {
		t.Errorf("webhooks[0] retries = %d, want default %d", got, DefaultWebhookRetries)
	}
	if got := n.Webhooks[1].RetryCount(); got != 0 {
		t.Errorf("webhooks[1] retries = %d, want explicit 0", got)
	}
	if got := n.Webhooks[1].Timeout.String(); got != "2s" {
		t.Errorf("webhooks[1] timeout = %s, want 2s", got)
	}
}

func TestNotifyValidationReportsEveryProblem(t *testing.T) {
	_, e := parseNotify(t, `
queue_size: 0
threshold: 1.5
command_timeout: soon
on_lock_command: [postsuper, -h]
command_concurrency: 0
audit_log: audit.jsonl
webhooks:
  - url: ftp://example.net/
  - url: https://user:pw@example.net/
    token_file: /etc/t
    token_env: T
    retries: -1
  - token_header: "X Bad"
`)
	want := []string{
		"notify.queue_size: must be at least 1",
		"notify.threshold: must be a share between 0 and 1",
		`notify.command_timeout (line 4): invalid duration "soon"`,
		`notify.on_lock_command: the program "postsuper" must be an absolute path`,
		"notify.command_concurrency: must be at least 1",
		`notify.audit_log: path "audit.jsonl" must be absolute`,
		`notify.webhooks[0].url: "ftp://example.net/": want an http:// or https:// URL`,
		"notify.webhooks[1].url: credentials in the URL",
		"notify.webhooks[1]: set token_file or token_env, not both",
		"notify.webhooks[1].retries: must be between 0 and 20, got -1",
		"notify.webhooks[2].url: must be set",
		"notify.webhooks[2].token_header: is set but there is no token_file or token_env",
		`notify.webhooks[2].token_header: "X Bad" is not a valid header name`,
	}
	joined := strings.Join(e, "\n")
	for _, w := range want {
		if !strings.Contains(joined, w) {
			t.Errorf("missing problem %q in:\n%s", w, joined)
		}
	}
	if len(e) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(e), len(want), joined)
	}
}

func TestWebhookToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("  s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := (WebhookConfig{TokenFile: file}).Token(); err != nil || tok != "s3cret" {
		t.Errorf("token from file = %q, %v; want s3cret", tok, err)
	}
	t.Setenv("ABUSEMILTER_TEST_HOOK_TOKEN", "envtok")
	if tok, err := (WebhookConfig{TokenEnv: "ABUSEMILTER_TEST_HOOK_TOKEN"}).Token(); err != nil || tok != "envtok" {
		t.Errorf("token from env = %q, %v; want envtok", tok, err)
	}
	if _, err := (WebhookConfig{TokenEnv: "ABUSEMILTER_TEST_UNSET_VARIABLE"}).Token(); err == nil {
		t.Errorf("unset env variable gave no error")
	}
	if _, err := (WebhookConfig{TokenFile: filepath.Join(dir, "missing")}).Token(); err == nil {
		t.Errorf("missing token file gave no error")
	}
	if tok, err := (WebhookConfig{}).Token(); err != nil || tok != "" {
		t.Errorf("no token configured = %q, %v; want empty", tok, err)
	}
}

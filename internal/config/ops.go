package config

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// NotifyConfig configures operational notifications: webhooks, a command
// run when an account is locked, and the audit log. Nothing here is ever on
// the mail decision path: events are queued and dropped (and counted) when
// a queue is full.
type NotifyConfig struct {
	// Webhooks receive every event as a JSON POST.
	Webhooks []WebhookConfig `yaml:"webhooks"`
	// QueueSize bounds the events waiting for each sink (default 1000).
	QueueSize int `yaml:"queue_size"`
	// Threshold is the share of a limit whose crossing sends a
	// limit_threshold event (default 0.8; 0 turns these events off).
	Threshold float64 `yaml:"threshold"`
	// OnLockCommand is run, without a shell, when an account is locked.
	// Arguments may hold the placeholders {account}, {reason}, {rule},
	// {by}, {until} and {event_id}. Empty: no command.
	OnLockCommand []string `yaml:"on_lock_command"`
	// CommandTimeout bounds each run of the command (default 30s).
	CommandTimeout Duration `yaml:"command_timeout"`
	// CommandConcurrency bounds the commands running at once (default 2).
	CommandConcurrency int `yaml:"command_concurrency"`
	// AuditLog is a file that gets one JSON line per event (appended,
	// reopened on SIGHUP). Empty: no audit log.
	AuditLog string `yaml:"audit_log"`
}

// WebhookConfig is one webhook receiver.
type WebhookConfig struct {
	// URL is the http:// or https:// address events are POSTed to.
	URL string `yaml:"url"`
	// The token comes from a file or an environment variable, never from
	// the config itself; it is sent as "Authorization: Bearer TOKEN", or as
	// the bare value of TokenHeader when that is set.
	TokenFile   string `yaml:"token_file"`
	TokenEnv    string `yaml:"token_env"`
	TokenHeader string `yaml:"token_header"`
	// Timeout bounds each attempt (default 5s).
	Timeout Duration `yaml:"timeout"`
	// Retries is the number of further attempts after a failed one, with
	// exponential backoff (default 3; 0 sends once).
	Retries *int `yaml:"retries"`
}

// Notify defaults.
const (
	DefaultNotifyQueueSize          = 1000
	DefaultNotifyThreshold          = 0.8
	DefaultNotifyCommandTimeout     = 30 * time.Second
	DefaultNotifyCommandConcurrency = 2
	DefaultWebhookTimeout           = 5 * time.Second
	DefaultWebhookRetries           = 3
)

// DefaultNotify returns the built-in notification settings: no webhooks,
// no command, no audit log; limit_threshold at 80%.
func DefaultNotify() NotifyConfig {
	return NotifyConfig{
		QueueSize:          DefaultNotifyQueueSize,
		Threshold:          DefaultNotifyThreshold,
		CommandTimeout:     D(DefaultNotifyCommandTimeout),
		CommandConcurrency: DefaultNotifyCommandConcurrency,
	}
}

// RetryCount returns the configured retries, or the default when unset.
func (w WebhookConfig) RetryCount() int {
	if w.Retries == nil {
		return DefaultWebhookRetries
	}
	return *w.Retries
}

// Token reads the webhook's token from its file (surrounding white space
// trimmed) or environment variable; "" when neither is set.
func (w WebhookConfig) Token() (string, error) {
	switch {
	case w.TokenFile != "":
		data, err := os.ReadFile(w.TokenFile)
		if err != nil {
			return "", fmt.Errorf("reading webhook token: %w", err)
		}
		tok := strings.TrimSpace(string(data))
		if tok == "" {
			return "", fmt.Errorf("webhook token file %q is empty", w.TokenFile)
		}
		return tok, nil
	case w.TokenEnv != "":
		tok, ok := os.LookupEnv(w.TokenEnv)
		if !ok || strings.TrimSpace(tok) == "" {
			return "", fmt.Errorf("webhook token environment variable %q is not set", w.TokenEnv)
		}
		return strings.TrimSpace(tok), nil
	}
	return "", nil
}

// validate checks the notify section (paths under "notify.") and fills in
// the defaults of each webhook.
func (n *NotifyConfig) validate(e *errorList) {
	if n.QueueSize < 1 {
		e.add("notify.queue_size", "must be at least 1, got %d", n.QueueSize)
	}
	if n.Threshold < 0 || n.Threshold > 1 {
		e.add("notify.threshold", "must be a share between 0 and 1 (e.g. 0.8), got %v", n.Threshold)
	}
	e.duration("notify.command_timeout", n.CommandTimeout)
	if len(n.OnLockCommand) > 0 {
		if !filepath.IsAbs(n.OnLockCommand[0]) {
			e.add("notify.on_lock_command", "the program %q must be an absolute path (no shell, no PATH lookup)", n.OnLockCommand[0])
		}
		if n.CommandTimeout.Duration == 0 && n.CommandTimeout.err == nil {
			e.add("notify.command_timeout", "must be more than 0 when on_lock_command is set")
		}
	}
	if n.CommandConcurrency < 1 {
		e.add("notify.command_concurrency", "must be at least 1, got %d", n.CommandConcurrency)
	}
	if n.AuditLog != "" && !filepath.IsAbs(n.AuditLog) {
		e.add("notify.audit_log", "path %q must be absolute", n.AuditLog)
	}
	for i := range n.Webhooks {
		n.Webhooks[i].validate(e, fmt.Sprintf("notify.webhooks[%d]", i))
	}
}

func (w *WebhookConfig) validate(e *errorList, path string) {
	u, err := url.Parse(w.URL)
	switch {
	case w.URL == "":
		e.add(path+".url", "must be set")
	case err != nil:
		e.add(path+".url", "invalid URL %q", w.URL)
	case u.Scheme != "http" && u.Scheme != "https":
		e.add(path+".url", "%q: want an http:// or https:// URL", w.URL)
	case u.Host == "":
		e.add(path+".url", "%q has no host", w.URL)
	case u.User != nil:
		e.add(path+".url", "credentials in the URL would be logged; use token_file or token_env")
	}
	if w.TokenFile != "" && w.TokenEnv != "" {
		e.add(path, "set token_file or token_env, not both")
	}
	if w.TokenHeader != "" && (w.TokenFile == "" && w.TokenEnv == "") {
		e.add(path+".token_header", "is set but there is no token_file or token_env")
	}
	if w.TokenHeader != "" && strings.ContainsAny(w.TokenHeader, " :\r\n\t") {
		e.add(path+".token_header", "%q is not a valid header name", w.TokenHeader)
	}
	if w.Timeout.Duration == 0 && w.Timeout.err == nil {
		w.Timeout = D(DefaultWebhookTimeout)
	}
	e.duration(path+".timeout", w.Timeout)
	if r := w.RetryCount(); r < 0 || r > 20 {
		e.add(path+".retries", "must be between 0 and 20, got %d", r)
	}
}

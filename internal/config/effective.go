package config

import (
	"encoding/json"
	"fmt"
	"net/url"

	"go.yaml.in/yaml/v3"
)

// Redacted is how a secret part of a value is shown in the effective
// configuration.
const Redacted = "REDACTED"

// Effective returns the configuration as it is in force, every key with
// its value (the defaults filled in), in the YAML key names, with secrets
// redacted: the configuration itself holds no password or token (those
// come from files and environment variables, whose names are kept), but a
// webhook URL often carries one in its path or query (Slack, Teams,
// Mattermost), so only its scheme and host are shown.
func (c *Config) Effective() (map[string]any, error) {
	cp := *c
	cp.Notify.Webhooks = make([]WebhookConfig, len(c.Notify.Webhooks))
	for i, w := range c.Notify.Webhooks {
		retries := w.RetryCount()
		w.Retries = &retries
		if w.Timeout.Duration == 0 {
			w.Timeout = D(DefaultWebhookTimeout)
		}
		w.URL = redactURL(w.URL)
		cp.Notify.Webhooks[i] = w
	}
	if c.Redis != nil {
		r := *c.Redis
		if u, err := url.Parse(r.URL); err == nil && u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), Redacted)
				r.URL = u.String()
			}
		}
		cp.Redis = &r
	}
	data, err := yaml.Marshal(&cp)
	if err != nil {
		return nil, fmt.Errorf("effective config: %w", err)
	}
	var out map[string]any
	if err := yaml.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("effective config: %w", err)
	}
	return out, nil
}

// EffectiveJSON is Effective as indented JSON.
func (c *Config) EffectiveJSON() ([]byte, error) {
	m, err := c.Effective()
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(m, "", "  ")
}

// redactURL keeps a URL's scheme and host and redacts the rest.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return Redacted
	}
	if u.Path == "" || u.Path == "/" {
		if u.RawQuery == "" && u.User == nil {
			return s
		}
	}
	return u.Scheme + "://" + u.Host + "/" + Redacted
}

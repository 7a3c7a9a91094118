package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/abusemilter/abusemilter/ratelimit"
	"github.com/abusemilter/abusemilter/scoring"
)

// CampaignsConfig sets campaign detection across accounts: the store counts,
// per message fingerprint, the distinct accounts that sent it
// (CAMPAIGN_MULTI_ACCOUNT for the body text, CAMPAIGN_LINK_DOMAIN for link
// domains and URLs). Forwarder accounts are never counted.
type CampaignsConfig struct {
	Enabled bool `yaml:"enabled"`
	// Body: the same body text from this many accounts within the window.
	Body CampaignThresholdConfig `yaml:"body"`
	// LinkDomain: links to the same domain from this many accounts within
	// the window.
	LinkDomain CampaignThresholdConfig `yaml:"link_domain"`
	// ExemptDomains are link domains never counted (with their
	// subdomains), beside the built-in list of domains every newsletter
	// links to.
	ExemptDomains []string `yaml:"exempt_domains"`
}

// CampaignThresholdConfig is a number of distinct accounts within a window.
type CampaignThresholdConfig struct {
	Accounts int      `yaml:"accounts"`
	Window   Duration `yaml:"window"`
}

// DefaultCampaigns returns the built-in campaign settings: on, the body
// from 5 accounts within an hour, a link domain from 10.
func DefaultCampaigns() CampaignsConfig {
	return CampaignsConfig{
		Enabled:       true,
		Body:          CampaignThresholdConfig{Accounts: scoring.DefaultCampaignBody.Accounts, Window: D(scoring.DefaultCampaignBody.Window)},
		LinkDomain:    CampaignThresholdConfig{Accounts: scoring.DefaultCampaignLinkDomain.Accounts, Window: D(scoring.DefaultCampaignLinkDomain.Window)},
		ExemptDomains: []string{},
	}
}

// Options converts the section into the engine's campaign options.
func (c CampaignsConfig) Options() scoring.CampaignOptions {
	return scoring.CampaignOptions{
		Enabled:       c.Enabled,
		Body:          scoring.CampaignThreshold{Accounts: c.Body.Accounts, Window: c.Body.Window.Duration},
		LinkDomain:    scoring.CampaignThreshold{Accounts: c.LinkDomain.Accounts, Window: c.LinkDomain.Window.Duration},
		ExemptDomains: c.ExemptDomains,
	}
}

// maxCampaignWindow bounds a campaign window: the store keeps each
// fingerprint that long.
const maxCampaignWindow = 7 * 24 * time.Hour

func (c *Config) validateCampaigns(e *errorList) {
	cc := c.Rules.Campaigns
	for _, th := range []struct {
		path string
		t    CampaignThresholdConfig
	}{{"rules.campaigns.body", cc.Body}, {"rules.campaigns.link_domain", cc.LinkDomain}} {
		if th.t.Accounts < 2 || th.t.Accounts > ratelimit.CampaignMaxAccounts {
			e.add(th.path+".accounts", "must be from 2 to %d (distinct accounts), got %d", ratelimit.CampaignMaxAccounts, th.t.Accounts)
		}
		w := th.t.Window
		e.duration(th.path+".window", w)
		if w.err == nil && (w.Duration < time.Minute || w.Duration > maxCampaignWindow || w.Duration%time.Second != 0) {
			e.addAt(th.path+".window", w.line, fmt.Errorf("must be whole seconds from 1m to 7d, got %q", w.String()))
		}
	}
	for i, d := range cc.ExemptDomains {
		if d = strings.Trim(strings.TrimSpace(d), "."); d == "" || !strings.Contains(d, ".") || strings.ContainsAny(d, " @/*{}") {
			e.add(fmt.Sprintf("rules.campaigns.exempt_domains[%d]", i), "%q is not a domain name", cc.ExemptDomains[i])
		}
	}
}

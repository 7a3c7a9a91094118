package config

import (
	"strings"
	"testing"
	"time"
)

// TestCampaignsConfig: the defaults, a partial section on top of them, and
// every invalid field reported with its path (and line).
func TestCampaignsConfig(t *testing.T) {
	c, err := Parse([]byte("rules:\n  campaigns:\n    body:\n      accounts: 3\n    exempt_domains: [city-news.example]\n"), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	o := c.Rules.Campaigns.Options()
	if !o.Enabled || o.Body.Accounts != 3 || o.Body.Window != time.Hour || o.LinkDomain.Accounts != 10 || o.LinkDomain.Window != time.Hour ||
		len(o.ExemptDomains) != 1 || o.ExemptDomains[0] != "city-news.example" {
		t.Fatalf("options %+v", o)
	}
	_, err = Parse([]byte(`rules:
  campaigns:
    body:
      accounts: 1
      window: 10s
    link_domain:
      accounts: 500
      window: 1x
    exempt_domains: ["bad domain", "ok.example", "localhost"]
`), "test.yaml")
	if err == nil {
		t.Fatal("invalid campaigns section accepted")
	}
	got := err.Error()
	for _, want := range []string{
		`rules.campaigns.body.accounts (line 4): must be from 2 to 128 (distinct accounts), got 1`,
		`rules.campaigns.body.window (line 5): must be whole seconds from 1m to 7d, got "10s"`,
		`rules.campaigns.link_domain.accounts (line 7): must be from 2 to 128 (distinct accounts), got 500`,
		`rules.campaigns.link_domain.window (line 8): invalid duration "1x"`,
		`rules.campaigns.exempt_domains[0] (line 9): "bad domain" is not a domain name`,
		`rules.campaigns.exempt_domains[2] (line 9): "localhost" is not a domain name`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("errors lack %q; got:\n%s", want, got)
		}
	}
	if strings.Contains(got, "exempt_domains[1]") {
		t.Errorf("a valid domain reported:\n%s", got)
	}
}

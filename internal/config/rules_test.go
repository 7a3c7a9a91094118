package config

import (
	"strings"
	"testing"
	"time"
)

func TestValidateRulesAndDNS(t *testing.T) {
	c := Default()
	if c.DNS.Budget.Duration != 100*time.Millisecond || c.DNS.CacheSize != 10000 || c.DNS.PositiveTTL.Duration != 5*time.Minute {
		t.Fatalf("DNS defaults = %+v", c.DNS)
	}
	c.Rules.Disable = []string{"LOOKALIKE_BRAND", "NO_SUCH_RULE"}
	c.Rules.Scores = map[string]float64{"DATE_OLD": 0, "BCC_BLAST": -1, "TYPO_RULE": 3}
	c.Rules.OwnMTAs = []string{"mx.provider.net", "bad host"}
	c.DNS.CacheSize = -5
	var e errorList
	c.validateRules(&e)
	got := strings.Join(e, "\n")
	for _, want := range []string{
		`rules.disable[1]: unknown rule "NO_SUCH_RULE"`,
		`rules.scores.BCC_BLAST: must not be negative`,
		`rules.scores.TYPO_RULE: unknown rule "TYPO_RULE"`,
		`rules.own_mtas[1]: "bad host" is not a host or domain name`,
		`dns.cache_size: must not be negative`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("validation errors lack %q; got:\n%s", want, got)
		}
	}
	if strings.Contains(got, "rules.disable[0]") || strings.Contains(got, "rules.scores.DATE_OLD") || strings.Contains(got, "rules.own_mtas[0]") {
		t.Errorf("valid entries reported:\n%s", got)
	}
}

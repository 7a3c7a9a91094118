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

func TestValidateClassifierAndTraining(t *testing.T) {
	c := Default()
	if c.Rules.Classifier != nil || c.Desk.Training.ReleasedDir != "" || len(c.Desk.Training.CopyCommand) == 0 {
		t.Fatalf("defaults: classifier %+v, training %+v", c.Rules.Classifier, c.Desk.Training)
	}
	c.Rules.Classifier = &ClassifierConfig{Model: " ", HoldProbability: 1.2}
	c.Desk.Training = TrainingConfig{ReleasedDir: "relative/released", PurgedDir: "/var/lib/purged", CopyCommand: []string{"postcat", "-bh"}}
	var e errorList
	c.validateRules(&e)
	c.validateDesk(&e)
	got := strings.Join(e, "\n")
	for _, want := range []string{
		`rules.classifier.model: must name the model file`,
		`rules.classifier.hold_probability: must be between 0 and 1 (exclusive), got 1.2`,
		`desk.training.released_dir: "relative/released" must be an absolute path`,
		`desk.training.copy_command: the program "postcat" must be an absolute path`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("validation errors lack %q; got:\n%s", want, got)
		}
	}
	if strings.Contains(got, "purged_dir") {
		t.Errorf("a valid purged_dir reported:\n%s", got)
	}
	c = Default()
	c.Rules.Classifier = &ClassifierConfig{Model: "/etc/abusemilter/model"}
	e = nil
	c.validateRules(&e)
	if len(e) != 0 {
		t.Errorf("a classifier with a model and the default probability: %q", e)
	}
}

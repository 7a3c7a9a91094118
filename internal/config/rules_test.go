package config

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
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

// TestProtectedBrandForms: rules.protected_brands takes a domain alone and
// a mapping with the names the brand is written as, side by side; the
// rules get both, and the long form round-trips through the effective
// config.
func TestProtectedBrandForms(t *testing.T) {
	doc := "rules:\n  protected_brands:\n    - paypal.com\n    - {domain: hsbc.com, names: [HSBC, \"HSBC Bank\"]}\n    - domain: bankofamerica.com\n      names:\n        - Bank of America\n"
	c, err := Parse([]byte(doc), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []ProtectedBrand{
		{Domain: "paypal.com"},
		{Domain: "hsbc.com", Names: []string{"HSBC", "HSBC Bank"}},
		{Domain: "bankofamerica.com", Names: []string{"Bank of America"}},
	}
	if !reflect.DeepEqual(c.Rules.ProtectedBrands, want) {
		t.Fatalf("protected_brands = %+v, want %+v", c.Rules.ProtectedBrands, want)
	}
	brands := c.Rules.ScoringBrands()
	if len(brands) != 3 || brands[1].Domain != "hsbc.com" || !reflect.DeepEqual(brands[1].Names, []string{"HSBC", "HSBC Bank"}) || brands[0].Names != nil {
		t.Errorf("ScoringBrands() = %+v", brands)
	}
	out, err := yaml.Marshal(c.Rules.ProtectedBrands)
	if err != nil {
		t.Fatal(err)
	}
	var back []ProtectedBrand
	if err := yaml.Unmarshal(out, &back); err != nil || !reflect.DeepEqual(back, want) {
		t.Errorf("round trip through\n%s\ngave %+v (%v)", out, back, err)
	}
	if !strings.HasPrefix(string(out), "- paypal.com\n") {
		t.Errorf("a brand without names is not written in the short form:\n%s", out)
	}
	if Default().Rules.ScoringBrands() != nil {
		t.Error("no protected_brands must leave the built-in list (nil)")
	}
}

// TestProtectedBrandProblems: a malformed entry is reported with its field
// path and line, and the valid entries beside it are not.
func TestProtectedBrandProblems(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"rules:\n  protected_brands:\n    - paypal.com\n    - {domian: hsbc.com, names: [HSBC]}\n",
			`rules.protected_brands[1].domian (line 4): unknown key "domian" (did you mean domain?)`},
		{"rules:\n  protected_brands:\n    - paypal.com\n    - {names: [HSBC]}\n",
			`rules.protected_brands[1].domain (line 4): missing: each brand needs its domain`},
		{"rules:\n  protected_brands:\n    - {domain: hsbc.com, names: HSBC}\n",
			`rules.protected_brands[0].names (line 3): want a list`},
		{"rules:\n  protected_brands:\n    - [hsbc.com, HSBC]\n",
			`rules.protected_brands[0] (line 3): want a domain, or a mapping such as {domain: hsbc.com, names: [HSBC]}, got a list`},
		{"rules:\n  protected_brands:\n    - {domain: \"hsbc bank\", names: [HSBC]}\n",
			`rules.protected_brands[0].domain (line 3): "hsbc bank" is not a domain name`},
		{"rules:\n  protected_brands:\n    - paypal.com\n    - \"bad host\"\n",
			`rules.protected_brands[1] (line 4): "bad host" is not a domain name`},
		{"rules:\n  protected_brands:\n    - {domain: hsbc.com, names: [HSBC, \" \"]}\n",
			`rules.protected_brands[0].names[1] (line 3): empty name`},
	} {
		_, err := Parse([]byte(tc.doc), "test.yaml")
		if err == nil {
			t.Errorf("%q: no error, want %q", tc.doc, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error\n%v\nlacks %q", tc.doc, err, tc.want)
		}
		if strings.Contains(err.Error(), "protected_brands[0]") && strings.Contains(tc.want, "protected_brands[1]") {
			t.Errorf("%q: the valid entry is reported too:\n%v", tc.doc, err)
		}
	}
}

// TestPhishingClauseAction: the phishing clause and its rules can be given
// an action (the guide recommends holding them); a misspelt clause is
// refused.
func TestPhishingClauseAction(t *testing.T) {
	doc := "rules:\n  actions:\n    phishing: hold\n    BRAND_CONFUSABLE_NAME: hold\n    CONTENT_PASSWORD_FORM: reject\n"
	c, err := Parse([]byte(doc), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Rules.Actions["phishing"] != "hold" || c.Rules.Actions["CONTENT_PASSWORD_FORM"] != "reject" {
		t.Errorf("actions = %v", c.Rules.Actions)
	}
	_, err = Parse([]byte("rules:\n  actions:\n    phising: hold\n"), "test.yaml")
	if err == nil || !strings.Contains(err.Error(), `rules.actions.phising (line 3): unknown rule or clause "phising"`) {
		t.Errorf("misspelt clause: %v", err)
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

package scoring_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/classifier"
	"github.com/abusemilter/abusemilter/scoring"
)

// modelRules need a trained model: TestContentClassifier has their cases.
var modelRules = map[string]bool{scoring.RuleContentClassifier: true}

// prizeMail and meetingMail are the two kinds of mail the test model
// tells apart.
// probabilityReason is the start of a finding's reason at or above the
// hold probability 0.9, with two decimals.
var probabilityReason = regexp.MustCompile(`^classifier spam probability (0\.9\d|1\.00) `)

func prizeMail(i int) string {
	return message(aliceFrom, "", fmt.Sprintf("You WON prize %d! Claim your FREE prize now at http://claim.shady.example/win\n", i))
}

func meetingMail(i int) string {
	return message(aliceFrom, "", fmt.Sprintf("Bob, the figures of quarter %d are in; the review is on Thursday.\n", i))
}

// TestContentClassifier runs CONTENT_CLASSIFIER with a real model trained
// on made-up mail: it fires at or above the hold probability with the
// probability and the model in its reason, not below it, never without
// a model, and its score alone does not reject.
func TestContentClassifier(t *testing.T) {
	tr, err := classifier.NewTrainer(1 << 12)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		tr.Add(parse(t, prizeMail(i)), true)
		tr.Add(parse(t, meetingMail(i)), false)
	}
	model, err := tr.Train(classifier.TrainOptions{Date: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	accts := testAccounts(t)
	env := &scoring.Envelope{AuthLogin: "alice", MailFrom: "alice@example.com", Rcpts: []string{"bob@example.net"}}
	engine := func(cs scoring.ClassifierSettings, actions map[string]scoring.Action) *scoring.Engine {
		s := testSettings()
		s.Classifier = cs
		return scoring.NewEngine(nil, nil, scoring.Options{Now: func() time.Time { return testNow }, Settings: s, Actions: actions})
	}
	withModel := engine(scoring.ClassifierSettings{Model: model, HoldProbability: 0.9}, nil)

	v := decide(t, withModel, env, prizeMail(99), accts["alice"])
	if !hasRule(v, scoring.RuleContentClassifier) {
		t.Fatalf("prize mail: findings %v, want CONTENT_CLASSIFIER", findingReasons(v))
	}
	if v.Action != scoring.Accept {
		t.Errorf("without an action of its own the finding alone gives %s, want accept (its score %v is below the reject threshold)", v.Action, v.Score)
	}
	reason := v.Findings[0].Reason
	if !probabilityReason.MatchString(reason) || !strings.HasSuffix(reason, "(model trained 2026-12-02 on 20 ham / 20 spam)") {
		t.Errorf("reason %q", reason)
	}
	if v := decide(t, withModel, env, meetingMail(99), accts["alice"]); hasRule(v, scoring.RuleContentClassifier) {
		t.Errorf("meeting mail: findings %v, want no CONTENT_CLASSIFIER", findingReasons(v))
	}
	p := model.SpamProbability(parse(t, prizeMail(99)))
	above := engine(scoring.ClassifierSettings{Model: model, HoldProbability: min(p+1e-9, 0.999999)}, nil)
	if v := decide(t, above, env, prizeMail(99), accts["alice"]); hasRule(v, scoring.RuleContentClassifier) {
		t.Errorf("hold probability above the message's %v: the rule fired", p)
	}
	if v := decide(t, engine(scoring.ClassifierSettings{}, nil), env, prizeMail(99), accts["alice"]); hasRule(v, scoring.RuleContentClassifier) {
		t.Error("the rule fired without a model")
	}
	held := engine(scoring.ClassifierSettings{Model: model, HoldProbability: 0.9}, map[string]scoring.Action{scoring.RuleContentClassifier: scoring.Hold})
	if v := decide(t, held, env, prizeMail(99), accts["alice"]); v.Action != scoring.Hold || v.Rule != scoring.RuleContentClassifier {
		t.Errorf("with the action hold: %s by %s, want hold by CONTENT_CLASSIFIER", v.Action, v.Rule)
	}
}

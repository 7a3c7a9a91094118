package scoring

import "fmt"

// RuleContentClassifier is the rule of the provider's own content
// classifier (package classifier).
const RuleContentClassifier = "CONTENT_CLASSIFIER"

// Classifier is a trained content classifier (classifier.Model), which
// rules.classifier.model loads. Scoring only asks it for a probability,
// so that it does not depend on how a model is trained or stored.
type Classifier interface {
	// SpamProbability returns the probability that msg is spam, from 0
	// to 1. It must be safe for concurrent use.
	SpamProbability(msg *Message) float64
	// Describe names the model in finding reasons, e.g. "model trained
	// 2026-12-02 on 1375 ham / 698 spam".
	Describe() string
}

// ClassifierSettings are what rules.classifier configures.
type ClassifierSettings struct {
	// Model is the classifier; nil: the rule never fires.
	Model Classifier
	// HoldProbability is the spam probability at or above which the rule
	// fires (0 < p < 1; the rule does not fire without one).
	HoldProbability float64
}

func classifierRules() []Rule {
	return []Rule{{
		ID: RuleContentClassifier, Clause: SpamVolume, Score: 3,
		Summary: "The content classifier that the provider trained on its own mail (`abusescan learn`, `rules.classifier.model`) gives the message a spam probability at or above `rules.classifier.hold_probability`. " +
			"Its natural action is hold: unless `rules.actions` names CONTENT_CLASSIFIER, a finding holds the message for the abuse desk, and its score alone never reaches the reject threshold. Without a model it never fires.",
		FalsePositives: "Legitimate mail that resembles the spam the model was trained on (newsletters, offers) and mail unlike anything in its ham: on the public corpus, 0.21% of held-out ham, all of it marketing mail (docs/QUALITY.md). The desk's release and purge decisions, fed back as training material, correct it (docs/guide.md).",
		Check: func(c *Check) (string, bool) {
			cs := &c.Settings.Classifier
			if cs.Model == nil || cs.HoldProbability <= 0 {
				return "", false
			}
			p := cs.Model.SpamProbability(c.Msg)
			if p < cs.HoldProbability {
				return "", false
			}
			return fmt.Sprintf("classifier spam probability %.2f (%s)", p, cs.Model.Describe()), true
		},
	}}
}

package scoring_test

import (
	"context"
	"hash/crc32"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/classifier"
	"github.com/abusemilter/abusemilter/scoring"
)

// corpusModel trains a content classifier on the training half of the
// real-mail corpus: the messages whose file name has an even CRC-32, the
// split docs/QUALITY.md describes (classifier's TestCorpusHeldOut uses
// the same).
func corpusModel(t testing.TB, msgs []corpusMessage) scoring.ClassifierSettings {
	tr, err := classifier.NewTrainer(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range msgs {
		if crc32.ChecksumIEEE([]byte(cm.name))%2 == 0 {
			tr.Add(cm.msg, cm.class == "spam")
		}
	}
	m, err := tr.Train(classifier.TrainOptions{Date: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	return scoring.ClassifierSettings{Model: m, HoldProbability: m.HoldProbability()}
}

// TestCorpusNoHamRejectedWithClassifier is TestCorpusNoHamRejected with
// CONTENT_CLASSIFIER on (a model trained on half the corpus, its natural
// action hold): no ham of the whole corpus may be rejected.
func TestCorpusNoHamRejectedWithClassifier(t *testing.T) {
	msgs := loadCorpus(t)
	cs := corpusModel(t, msgs)
	actions := map[string]scoring.Action{scoring.RuleContentClassifier: scoring.Hold}
	verdicts := map[string]map[scoring.Action]int{}
	fired := map[string]int{}
	for _, cm := range msgs {
		now := cm.now
		e := scoring.NewEngine(nil, nil, scoring.Options{Now: func() time.Time { return now }, Actions: actions,
			Settings: scoring.RuleSettings{Classifier: cs}})
		v := e.Decide(context.Background(), cm.env, cm.msg, cm.acct)
		if verdicts[cm.class] == nil {
			verdicts[cm.class] = map[scoring.Action]int{}
		}
		verdicts[cm.class][v.Action]++
		if hasRule(v, scoring.RuleContentClassifier) {
			fired[cm.class]++
		}
		if v.Action == scoring.Reject && cm.class != "spam" {
			t.Errorf("%s/%s rejected: %s (findings %v)", cm.class, cm.name, v.Reply(), findingReasons(v))
		}
	}
	for _, class := range []string{"ham", "hard-ham", "spam"} {
		t.Logf("%s: CONTENT_CLASSIFIER fired on %d; verdicts %v", class, fired[class], verdicts[class])
	}
	if fired["spam"] == 0 {
		t.Error("the classifier never fired on spam")
	}
}

// BenchmarkEngineCorpusHam measures the rules per message on the
// corpus's ham, without and with the content classifier (a model trained
// on half the corpus); the difference is the classifier's cost.
func BenchmarkEngineCorpusHam(b *testing.B) {
	msgs := loadCorpus(b)
	cs := corpusModel(b, msgs)
	var ham []corpusMessage
	for _, cm := range msgs {
		if cm.class == "ham" {
			ham = append(ham, cm)
		}
	}
	for _, bc := range []struct {
		name string
		cs   scoring.ClassifierSettings
	}{{"without-classifier", scoring.ClassifierSettings{}}, {"with-classifier", cs}} {
		b.Run(bc.name, func(b *testing.B) {
			e := scoring.NewEngine(nil, nil, scoring.Options{Settings: scoring.RuleSettings{Classifier: bc.cs}})
			ctx := context.Background()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				cm := &ham[i%len(ham)]
				e.Decide(ctx, cm.env, cm.msg, cm.acct)
			}
		})
	}
}

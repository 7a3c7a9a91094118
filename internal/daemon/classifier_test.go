package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	zapobserver "go.uber.org/zap/zaptest/observer"

	"github.com/abusemilter/abusemilter/classifier"
	"github.com/abusemilter/abusemilter/internal/atomicfile"
	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/scoring"
)

// probabilityReason is the start of a finding's reason at or above the
// hold probability 0.9, with two decimals.
var probabilityReason = regexp.MustCompile(`^classifier spam probability (0\.9\d|1\.00) `)

func parseMessage(t *testing.T, raw string) *scoring.Message {
	t.Helper()
	m, err := scoring.ParseBytes([]byte(raw), 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// prize and meeting are the two kinds of mail the test models tell apart.
func prize(t *testing.T, i int) *scoring.Message {
	return parseMessage(t, fmt.Sprintf("From: Alice <alice@example.com>\nSubject: You WON a prize %d\n\n<b>Claim your FREE prize now</b> <a href=\"http://claim.shady.example/win\">click</a>\n", i))
}

func meeting(t *testing.T, i int) *scoring.Message {
	return parseMessage(t, fmt.Sprintf("From: Alice <alice@example.com>\nSubject: meeting notes %d\n\nBob, the build passed; the review is on Thursday.\n", i))
}

// trainModel trains a real model in which prize mail is spam, or (swapped)
// meeting mail is, and writes it to path.
func trainModel(t *testing.T, path string, swapped bool) {
	t.Helper()
	tr, err := classifier.NewTrainer(1 << 12)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		tr.Add(prize(t, i), !swapped)
		tr.Add(meeting(t, i), swapped)
	}
	m, err := tr.Train(classifier.TrainOptions{Date: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(path, m.Marshal(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestClassifierReloadedOnSIGHUP: the daemon loads rules.classifier.model
// when it builds the engine, a reload (what SIGHUP runs) reads a swapped
// model file, and a model that no longer loads fails the reload with the
// file and the reason, keeping the running engine. A finding holds the
// message (the rule's natural action).
func TestClassifierReloadedOnSIGHUP(t *testing.T) {
	model := filepath.Join(t.TempDir(), "classifier.model")
	trainModel(t, model, false)
	load := func() (*config.Config, error) {
		cfg := config.Default()
		cfg.Metrics.Listen = ""
		cfg.Identity.Accounts["alice"] = config.AccountConfig{Logins: []string{"alice"}, SendAs: []string{"example.com"}}
		cfg.Rules.Classifier = &config.ClassifierConfig{Model: model}
		return cfg, nil
	}
	cfg, _ := load()
	core, logs := zapobserver.New(zap.InfoLevel)
	d, err := New(cfg, Options{ConfigPath: "(test)", Load: load, Logger: zap.New(core), Level: zap.NewAtomicLevel()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.limiter.Close() })

	ctx := context.Background()
	verdict := func(msg *scoring.Message) scoring.Verdict {
		env := &scoring.Envelope{AuthLogin: "alice", MailFrom: "alice@example.com", Rcpts: []string{"bob@example.org"}}
		e := d.srv.Engine()
		id, _ := e.CheckSender(env)
		return e.CheckMessage(ctx, env, msg, id)
	}
	v := verdict(prize(t, 99))
	if v.Action != scoring.Hold || v.Rule != scoring.RuleContentClassifier {
		t.Fatalf("prize mail under the first model: %s by %s, want hold by CONTENT_CLASSIFIER (findings %+v)", v.Action, v.Rule, v.Findings)
	}
	if r := v.Findings[0].Reason; !probabilityReason.MatchString(r) || !strings.Contains(r, "model trained 2026-12-02 on 20 ham / 20 spam") {
		t.Errorf("reason %q", r)
	}
	if v := verdict(meeting(t, 99)); v.Action != scoring.Accept {
		t.Errorf("meeting mail under the first model: %s by %s, want accept", v.Action, v.Rule)
	}

	trainModel(t, model, true)
	if err := d.reload(); err != nil {
		t.Fatalf("reload with a swapped model: %v", err)
	}
	if loaded := logs.FilterMessage("content classifier loaded").All(); len(loaded) != 2 || loaded[1].ContextMap()["model"] != model {
		t.Errorf("log lines of the loaded models: %+v, want one at the start and one at the reload", loaded)
	}
	if v := verdict(prize(t, 99)); v.Action != scoring.Accept {
		t.Errorf("prize mail after the reload: %s by %s, want accept", v.Action, v.Rule)
	}
	if v := verdict(meeting(t, 99)); v.Action != scoring.Hold {
		t.Errorf("meeting mail after the reload: %s by %s, want hold", v.Action, v.Rule)
	}

	if err := os.WriteFile(model, []byte("not a model\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = d.reload()
	if err == nil || !strings.Contains(err.Error(), "rules.classifier.model: model "+model+": bad magic") {
		t.Errorf("reload with a broken model: %v, want the field, the file and the reason", err)
	}
	if v := verdict(meeting(t, 99)); v.Action != scoring.Hold {
		t.Errorf("after the failed reload the running engine changed: meeting mail %s, want hold", v.Action)
	}
	cfg, _ = load()
	if err := Check(cfg); err == nil || !strings.Contains(err.Error(), "rules.classifier.model: model "+model+": bad magic") {
		t.Errorf("Check with a broken model: %v", err)
	}
}

// TestClassifierNaturalActionIsHold: CONTENT_CLASSIFIER holds unless
// rules.actions names it.
func TestClassifierNaturalActionIsHold(t *testing.T) {
	cfg := config.Default()
	if a := EngineOptions(cfg).Actions[scoring.RuleContentClassifier]; a != scoring.Hold {
		t.Errorf("default action %v, want hold", a)
	}
	cfg.Rules.Actions = map[string]string{scoring.RuleContentClassifier: "accept"}
	if a := EngineOptions(cfg).Actions[scoring.RuleContentClassifier]; a != scoring.Accept {
		t.Errorf("rules.actions accept: %v, want accept", a)
	}
}

package daemon

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	zapobserver "go.uber.org/zap/zaptest/observer"

	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/metrics"
	"github.com/abusemilter/abusemilter/scoring"
)

// TestRulePanicLoggedCountedAndIgnored: a rule that panics does not take
// the message with it: the message is decided as if the rule had not
// fired, the panic is counted in abusemilter_rule_panics_total{rule}, and
// it is logged with the rule ID and the panic value at most once a minute
// per rule.
func TestRulePanicLoggedCountedAndIgnored(t *testing.T) {
	cfg, err := config.Parse([]byte(`
dns:
  enabled: false
identity:
  accounts:
    alice:
      logins: [alice]
      send_as: [example.com]
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := Directory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := zapobserver.New(zap.DebugLevel)
	clock := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	obs := &observer{log: zap.New(core), metrics: metrics.New(metrics.BuildInfo{}), now: func() time.Time { return clock }}
	broken := scoring.Rule{ID: "TEST_BROKEN", Clause: scoring.Impersonation, Score: 100, Decisive: true,
		Check: func(*scoring.Check) (string, bool) { panic("index out of range [3] with length 3") }}
	withBroken := func(o *scoring.Options) { o.Rules = append(scoring.DefaultRules(), broken) }
	lim, err := Limiter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lim.Close() })
	engine := Engine(cfg, dir, lim, nil, WithRulePanicHandler(obs.rulePanicked), withBroken)

	env := &scoring.Envelope{AuthLogin: "alice", MailFrom: "alice@example.com", Rcpts: []string{"bob@example.net"}}
	msg, err := scoring.ParseBytes([]byte("From: Alice <alice@example.com>\nTo: bob@example.net\nSubject: hello\nMessage-ID: <1@example.com>\nDate: Wed, 02 Dec 2026 03:00:00 +0000\n\nhi\n"), 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	decide := func() scoring.Verdict {
		id, v := engine.CheckSender(env)
		if v.Action != scoring.Accept {
			t.Fatalf("sender refused: %+v", v)
		}
		return engine.CheckMessage(context.Background(), env, msg, id)
	}
	for i := range 3 {
		if i == 2 {
			clock = clock.Add(rulePanicLogEvery)
		}
		v := decide()
		if v.Action != scoring.Accept {
			t.Fatalf("message %d: %v, want accept as if the panicking decisive rule had not fired", i, v.Action)
		}
		for _, f := range v.Findings {
			if f.Rule == broken.ID {
				t.Fatalf("message %d: the panicking rule left a finding: %+v", i, f)
			}
		}
	}
	want := "abusemilter_rule_panics_total{rule=\"TEST_BROKEN\"} 3\n"
	if err := testutil.GatherAndCompare(obs.metrics.Registry(), strings.NewReader(
		"# HELP abusemilter_rule_panics_total Rules that panicked while checking a message, by rule ID; the message was decided as if the rule had not fired.\n"+
			"# TYPE abusemilter_rule_panics_total counter\n"+want), "abusemilter_rule_panics_total"); err != nil {
		t.Errorf("metric: %v", err)
	}
	lines := logs.FilterMessageSnippet("rule panicked").All()
	if len(lines) != 2 {
		t.Fatalf("%d log lines for 3 panics over a minute, want 2 (once a minute per rule)", len(lines))
	}
	for _, l := range lines {
		fields := l.ContextMap()
		if l.Level != zap.ErrorLevel || fields["rule"] != broken.ID || !strings.Contains(fields["panic"].(string), "index out of range") {
			t.Errorf("log line %v %q %v: want error level with the rule ID and the panic value", l.Level, l.Message, fields)
		}
	}
}

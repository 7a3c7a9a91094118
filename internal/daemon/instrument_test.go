package daemon

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	zapobserver "go.uber.org/zap/zaptest/observer"

	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
	"github.com/abusemilter/abusemilter/milter"
	"github.com/abusemilter/abusemilter/ratelimit"
	"github.com/abusemilter/abusemilter/scoring"
)

func gauge(t *testing.T, d *Daemon, name string) (float64, bool) {
	t.Helper()
	fams, err := d.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			var sum float64
			for _, m := range f.GetMetric() {
				sum += metricValue(m)
			}
			return sum, true
		}
	}
	return 0, false
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func newTestDaemon(t *testing.T, logger *zap.Logger) *Daemon {
	t.Helper()
	cfg := config.Default()
	cfg.Metrics.Listen = ""
	d, err := New(cfg, Options{Logger: logger, Level: zap.NewAtomicLevel()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.limiter.Close() })
	return d
}

// TestLockedAccountsGauge: abusemilter_accounts_locked is read from the
// store (locks made by abusectl or another milter count too) at once and
// then at every tick.
func TestLockedAccountsGauge(t *testing.T) {
	d := newTestDaemon(t, zap.NewNop())
	admin := d.limiter.(ratelimit.Admin)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := admin.Lock(ctx, "alice", "test", "admin", 0); err != nil {
		t.Fatal(err)
	}
	d.readLocked(ctx)
	if v, _ := gauge(t, d, "abusemilter_accounts_locked"); v != 1 {
		t.Fatalf("accounts_locked = %v, want 1", v)
	}
	go d.watchLocked(ctx, 10*time.Millisecond)
	for _, a := range []string{"bob", "carol"} {
		if err := admin.Lock(ctx, a, "test", "admin", 0); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, 5*time.Second, "the gauge to read 3", func() bool { v, _ := gauge(t, d, "abusemilter_accounts_locked"); return v == 3 })
	if err := admin.Unlock(ctx, "alice", "admin"); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "the gauge to read 2", func() bool { v, _ := gauge(t, d, "abusemilter_accounts_locked"); return v == 2 })
}

// TestStoreCallsTimedAndTrialsCounted: the engine's store calls land in
// the store latency histogram; decisions land in the decision series by
// stage and mode, trials only in abusemilter_trials_total.
func TestStoreCallsTimedAndTrialsCounted(t *testing.T) {
	d := newTestDaemon(t, zap.NewNop())
	engine := d.srv.Engine()
	env := &scoring.Envelope{AuthLogin: "alice@example.com", MailFrom: "alice@example.com", Rcpts: []string{"bob@example.org"}}
	msg := &scoring.Message{Headers: []scoring.Header{{Name: "From", Value: "alice@example.com"}}}
	v := engine.CheckMessage(context.Background(), env, msg, scoring.Identity{})
	if v.Action != scoring.Accept {
		t.Fatalf("verdict %+v", v)
	}
	if n, _ := gauge(t, d, "abusemilter_store_call_duration_seconds"); n != 1 {
		t.Errorf("store calls observed = %v, want 1", n)
	}
	engine.DryRun().CheckMessage(context.Background(), env, msg, scoring.Identity{})
	if n, _ := gauge(t, d, "abusemilter_store_call_duration_seconds"); n != 1 {
		t.Errorf("store calls observed after a dry run = %v, want still 1 (a trial makes none)", n)
	}
	d.obs.Decision(milter.DecisionEvent{Stage: "eom", Mode: scoring.Enforce, Verdict: v})
	d.obs.Decision(milter.DecisionEvent{Stage: "eom", Mode: scoring.Enforce, Verdict: v, Trial: true})
	if n, _ := gauge(t, d, "abusemilter_decisions_total"); n != 1 {
		t.Errorf("decisions_total = %v, want 1", n)
	}
	if n, _ := gauge(t, d, "abusemilter_trials_total"); n != 1 {
		t.Errorf("trials_total = %v, want 1", n)
	}
}

// TestFailModeLoggedAsWarning: entering the store's fail mode is one
// warning (journal priority 4), leaving it one info line.
func TestFailModeLoggedAsWarning(t *testing.T) {
	core, logs := zapobserver.New(zapcore.DebugLevel)
	o := &observer{log: zap.New(core)}
	o.failModeChanged(false, "accept", nil)
	o.failModeChanged(true, "accept", context.DeadlineExceeded)
	o.failModeChanged(true, "accept", context.DeadlineExceeded)
	o.failModeChanged(false, "accept", nil)
	entries := logs.All()
	if len(entries) != 2 || entries[0].Level != zapcore.WarnLevel || !strings.Contains(entries[0].Message, "fail mode entered") ||
		entries[1].Level != zapcore.InfoLevel || !strings.Contains(entries[1].Message, "fail mode left") {
		t.Fatalf("log entries: %+v", entries)
	}
}

// TestTimedStoreKeepsRecords: the engine's timed store still writes the
// abuse desk's records (the timing wrapper alone hid ratelimit.Recorder,
// and the daemon kept no Message-ID, held or refused records).
func TestTimedStoreKeepsRecords(t *testing.T) {
	d := newTestDaemon(t, zap.NewNop())
	env := &scoring.Envelope{AuthLogin: "alice@example.com", MailFrom: "alice@example.com", Rcpts: []string{"bob@example.org"}, QueueID: "4TIMED1"}
	msg := &scoring.Message{Headers: []scoring.Header{{Name: "From", Value: "alice@example.com"}, {Name: "Message-Id", Value: "<timed.1@example.com>"}}}
	if v := d.srv.Engine().CheckMessage(context.Background(), env, msg, scoring.Identity{}); v.Action != scoring.Accept {
		t.Fatalf("verdict %+v", v)
	}
	rec, ok, err := d.limiter.(ratelimit.Admin).DecisionRecord(context.Background(), "timed.1@example.com")
	if err != nil || !ok || rec.QueueID != "4TIMED1" {
		t.Fatalf("the accepted message's Message-ID record: %+v %v %v", rec, ok, err)
	}
	if n, _ := gauge(t, d, "abusemilter_store_call_duration_seconds"); n != 1 {
		t.Errorf("store calls observed = %v, want 1", n)
	}
}

// TestTimedStoreCountsCampaigns: through the daemon's timed store the
// engine still counts campaigns (the timing wrapper hid
// ratelimit.CampaignCounter, and the daemon never counted one): the same
// body from five logins fires CAMPAIGN_MULTI_ACCOUNT on the fifth.
func TestTimedStoreCountsCampaigns(t *testing.T) {
	d := newTestDaemon(t, zap.NewNop())
	body := []byte("Dear friend, our spring offer ends tonight: order the garden furniture set now and pay half the price, delivery to your door is free this week only.\r\n")
	var last scoring.Verdict
	for i := 1; i <= 5; i++ {
		login := fmt.Sprintf("user%d@example.com", i)
		env := &scoring.Envelope{AuthLogin: login, MailFrom: login, Rcpts: []string{"bob@example.org"}}
		msg := &scoring.Message{Headers: []scoring.Header{{Name: "From", Value: login}, {Name: "Subject", Value: "Offer"}}, Body: body, BodySize: int64(len(body))}
		last = d.srv.Engine().CheckMessage(context.Background(), env, msg, scoring.Identity{})
		if last.CampaignError != "" {
			t.Fatalf("message %d: campaign error %s", i, last.CampaignError)
		}
		if fired := slices.Contains(last.RuleIDs(), scoring.RuleCampaignMultiAccount); fired != (i == 5) {
			t.Fatalf("message %d from %s: CAMPAIGN_MULTI_ACCOUNT fired %v, findings %v", i, login, fired, last.RuleIDs())
		}
	}
}

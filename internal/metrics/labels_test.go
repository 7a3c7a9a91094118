package metrics

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// TestMonitorAndEnforceRefusalsAreApart: the same refusal in monitor mode
// and in enforce mode lands in two series (mode label), and so do the
// stages of one message (a recipient-cap deferral, then its accept at end
// of message); a trial moves no decision series at all.
func TestMonitorAndEnforceRefusalsAreApart(t *testing.T) {
	m := New(BuildInfo{})
	base := startServer(t, m, nil)
	m.Decision("eom", "enforce", "reject", "impersonation", "FROM_DOMAIN_NOT_OWNED", []string{"FROM_DOMAIN_NOT_OWNED"}, time.Millisecond)
	m.Decision("eom", "monitor", "reject", "impersonation", "FROM_DOMAIN_NOT_OWNED", []string{"FROM_DOMAIN_NOT_OWNED"}, time.Millisecond)
	m.Decision("eom", "monitor", "reject", "impersonation", "FROM_DOMAIN_NOT_OWNED", []string{"FROM_DOMAIN_NOT_OWNED"}, time.Millisecond)
	m.Decision("rcpt", "enforce", "defer", "spam-volume", "RCPT_PER_MESSAGE_LIMIT", nil, time.Microsecond)
	m.Decision("eom", "enforce", "accept", "", "", nil, time.Millisecond)
	m.Trial("reject")
	got := scrapeMetrics(t, base)
	series := func(stage, mode, action, clause, rule string) map[string]string {
		return map[string]string{"stage": stage, "mode": mode, "action": action, "clause": clause, "rule": rule}
	}
	for _, tc := range []struct {
		labels map[string]string
		want   float64
	}{
		{series("eom", "enforce", "reject", "impersonation", "FROM_DOMAIN_NOT_OWNED"), 1},
		{series("eom", "monitor", "reject", "impersonation", "FROM_DOMAIN_NOT_OWNED"), 2},
		{series("rcpt", "enforce", "defer", "spam-volume", "RCPT_PER_MESSAGE_LIMIT"), 1},
		{series("eom", "enforce", "accept", "none", "none"), 1},
	} {
		if v := got.value("abusemilter_decisions_total", tc.labels); v != tc.want {
			t.Errorf("decisions_total%v = %v, want %v", tc.labels, v, tc.want)
		}
	}
	if n := len(got["abusemilter_decisions_total"].GetMetric()); n != 4 {
		t.Errorf("%d decision series, want 4 (a trial adds none)", n)
	}
	if v := got.value("abusemilter_trials_total", map[string]string{"action": "reject"}); v != 1 {
		t.Errorf("trials_total{action=reject} = %v, want 1", v)
	}
	if n := got.histCount("abusemilter_decision_duration_seconds", map[string]string{"stage": "eom", "mode": "monitor", "action": "reject"}); n != 2 {
		t.Errorf("monitor eom latency observations = %d, want 2", n)
	}
	for _, f := range got["abusemilter_decisions_total"].GetMetric() {
		for _, l := range f.GetLabel() {
			if l.GetName() == "account" || l.GetName() == "login" {
				t.Errorf("a decision series is labelled by %s: the label sets must stay bounded", l.GetName())
			}
		}
	}
}

func TestDNSLockAndQueueMetrics(t *testing.T) {
	m := New(BuildInfo{})
	base := startServer(t, m, nil)
	m.DNSLookup("cache_hit", false, 0)
	m.DNSLookup("answer", true, 3*time.Millisecond)
	m.DNSLookup("timeout", true, 2*time.Second)
	m.DNSLookup("budget_exhausted", true, 100*time.Millisecond)
	m.AccountsLocked(3)
	depth := map[string]int{"webhook": 7, "audit": 0}
	m.WatchNotifyQueues(func() map[string]int { return depth })
	got := scrapeMetrics(t, base)
	for result, want := range map[string]float64{"cache_hit": 1, "answer": 1, "timeout": 1, "budget_exhausted": 1, "error": 0} {
		if v := got.value("abusemilter_dns_lookups_total", map[string]string{"result": result}); v != want {
			t.Errorf("dns_lookups_total{result=%s} = %v, want %v", result, v, want)
		}
	}
	if n := got.histCount("abusemilter_dns_query_duration_seconds", nil); n != 3 {
		t.Errorf("DNS queries observed = %d, want 3 (a cache hit is no query)", n)
	}
	if v := got.value("abusemilter_accounts_locked", nil); v != 3 {
		t.Errorf("accounts_locked = %v, want 3", v)
	}
	if v := got.value("abusemilter_notify_queue_depth", map[string]string{"sink": "webhook"}); v != 7 {
		t.Errorf("notify_queue_depth{sink=webhook} = %v, want 7", v)
	}
	m.ConfigReloaded(errors.New("x"))
}

func TestNamesListsFamiliesWithoutSamples(t *testing.T) {
	names := New(BuildInfo{}).Names()
	for _, want := range []string{"abusemilter_decisions_total", "abusemilter_trials_total", "abusemilter_dns_lookups_total",
		"abusemilter_notify_queue_depth", "abusemilter_store_calls_total", "abusemilter_accounts_locked", "go_goroutines"} {
		if !slices.Contains(names, want) {
			t.Errorf("Names() lacks %s: %v", want, names)
		}
	}
	if !slices.IsSorted(names) {
		t.Error("Names() is not sorted")
	}
}

package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// startServer serves m on a free loopback port and shuts it down at the end
// of the test.
func startServer(t *testing.T, m *Metrics, ready Readiness) string {
	t.Helper()
	srv, err := m.Serve("127.0.0.1:0", ready)
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return "http://" + srv.Addr()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// scrape fetches /metrics and parses the text exposition format.
type scrape map[string]*dto.MetricFamily

func scrapeMetrics(t *testing.T, base string) scrape {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: status %d: %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return families
}

// find returns the sample of family name whose labels include labels, or
// nil when there is none.
func (s scrape) find(name string, labels map[string]string) *dto.Metric {
	f := s[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		for k, v := range labels {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		return m
	}
	return nil
}

// value returns the counter or gauge value of a sample (0 when absent, as a
// counter that has not been touched yet).
func (s scrape) value(name string, labels map[string]string) float64 {
	m := s.find(name, labels)
	switch {
	case m == nil:
		return 0
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

func (s scrape) histCount(name string, labels map[string]string) uint64 {
	m := s.find(name, labels)
	if m == nil || m.Histogram == nil {
		return 0
	}
	return m.Histogram.GetSampleCount()
}

func TestDecisionCountersMoveExactly(t *testing.T) {
	m := New(BuildInfo{Version: "v1.2.3", Commit: "abc123"})
	base := startServer(t, m, nil)
	before := scrapeMetrics(t, base)

	m.Decision("eom", "enforce", "reject", "impersonation", "FROM_DOMAIN_NOT_OWNED",
		[]string{"FROM_DOMAIN_NOT_OWNED", "DISPLAY_NAME_BRAND"}, 2*time.Millisecond)
	m.Decision("eom", "enforce", "reject", "impersonation", "FROM_DOMAIN_NOT_OWNED",
		[]string{"FROM_DOMAIN_NOT_OWNED"}, 300*time.Microsecond)
	m.Decision("mail", "enforce", "defer", "spam-volume", "ACCOUNT_MSG_RATE", nil, 3*time.Second)
	m.Decision("eom", "enforce", "accept", "", "", []string{"DISPLAY_NAME_BRAND"}, 150*time.Microsecond)

	after := scrapeMetrics(t, base)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		delta  float64
	}{
		{"abusemilter_decisions_total", map[string]string{"stage": "eom", "mode": "enforce", "action": "reject", "clause": "impersonation", "rule": "FROM_DOMAIN_NOT_OWNED"}, 2},
		{"abusemilter_decisions_total", map[string]string{"stage": "mail", "mode": "enforce", "action": "defer", "clause": "spam-volume", "rule": "ACCOUNT_MSG_RATE"}, 1},
		{"abusemilter_decisions_total", map[string]string{"stage": "eom", "mode": "enforce", "action": "accept", "clause": "none", "rule": "none"}, 1},
		{"abusemilter_findings_total", map[string]string{"rule": "FROM_DOMAIN_NOT_OWNED"}, 2},
		{"abusemilter_findings_total", map[string]string{"rule": "DISPLAY_NAME_BRAND"}, 2},
		{"abusemilter_findings_total", map[string]string{"rule": "ACCOUNT_MSG_RATE"}, 0},
	} {
		if got := after.value(tc.name, tc.labels) - before.value(tc.name, tc.labels); got != tc.delta {
			t.Errorf("%s%v moved by %v, want %v", tc.name, tc.labels, got, tc.delta)
		}
	}
	if got := after.histCount("abusemilter_decision_duration_seconds", map[string]string{"stage": "eom", "mode": "enforce", "action": "reject"}); got != 2 {
		t.Errorf("reject latency observations = %d, want 2", got)
	}
	// 150µs must land in the 250µs bucket but not in the 100µs one.
	h := after.find("abusemilter_decision_duration_seconds", map[string]string{"stage": "eom", "mode": "enforce", "action": "accept"}).GetHistogram()
	for _, b := range h.GetBucket() {
		want := uint64(0)
		if b.GetUpperBound() >= 0.00025 {
			want = 1
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("accept latency bucket le=%v has %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	if bi := after.find("abusemilter_build_info", map[string]string{"version": "v1.2.3", "commit": "abc123", "goversion": runtime.Version()}); bi == nil || bi.GetGauge().GetValue() != 1 {
		t.Errorf("abusemilter_build_info with version, commit and go version not found or not 1")
	}
	if after["go_goroutines"] == nil || after["process_start_time_seconds"] == nil {
		t.Errorf("Go runtime and process collectors missing from the registry")
	}
}

func TestOperationalCountersMoveExactly(t *testing.T) {
	m := New(BuildInfo{})
	base := startServer(t, m, nil)
	before := scrapeMetrics(t, base)

	m.SessionOpened()
	m.SessionOpened()
	m.SessionOpened()
	m.SessionClosed()
	m.SessionRefused()
	m.AccountLocked()
	m.AccountLocked()
	m.AccountUnlocked()
	m.ConfigLoaded()
	m.ConfigReloaded(nil)
	m.ConfigReloaded(errors.New("bad config"))
	m.ConfigReloaded(errors.New("bad config"))
	m.NotifySent("webhook")
	m.NotifySent("webhook")
	m.NotifyFailed("webhook")
	m.NotifyDropped("audit")

	after := scrapeMetrics(t, base)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		delta  float64
	}{
		{"abusemilter_milter_sessions_open", nil, 2},
		{"abusemilter_milter_sessions_refused_total", nil, 1},
		{"abusemilter_account_locks_total", nil, 2},
		{"abusemilter_account_unlocks_total", nil, 1},
		{"abusemilter_config_reloads_total", nil, 1},
		{"abusemilter_config_reload_failures_total", nil, 2},
		{"abusemilter_notify_sent_total", map[string]string{"sink": "webhook"}, 2},
		{"abusemilter_notify_failed_total", map[string]string{"sink": "webhook"}, 1},
		{"abusemilter_notify_dropped_total", map[string]string{"sink": "audit"}, 1},
	} {
		if got := after.value(tc.name, tc.labels) - before.value(tc.name, tc.labels); got != tc.delta {
			t.Errorf("%s%v moved by %v, want %v", tc.name, tc.labels, got, tc.delta)
		}
	}
	if ts := after.value("abusemilter_config_last_reload_success_timestamp_seconds", nil); ts < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last reload timestamp %v is not recent", ts)
	}
}

func TestStoreStatsCollector(t *testing.T) {
	m := New(BuildInfo{})
	base := startServer(t, m, nil)
	if got := scrapeMetrics(t, base); got["abusemilter_store_calls_total"] != nil {
		t.Errorf("store metrics reported before WatchStore")
	}

	var stats atomic.Pointer[StoreStats]
	stats.Store(&StoreStats{Calls: 10, Errors: 3, FailFast: 2, BreakerOpen: true, BreakerOpens: 1,
		LatencyTotal: 16 * time.Millisecond, LatencyMax: 9 * time.Millisecond, EventsDropped: 4})
	m.WatchStore(func() StoreStats { return *stats.Load() })
	got := scrapeMetrics(t, base)
	for name, want := range map[string]float64{
		"abusemilter_store_calls_total":               10,
		"abusemilter_store_errors_total":              3,
		"abusemilter_store_fail_fast_total":           2,
		"abusemilter_store_circuit_open":              1,
		"abusemilter_store_circuit_opens_total":       1,
		"abusemilter_store_call_duration_max_seconds": 0.009,
		"abusemilter_store_events_dropped_total":      4,
	} {
		if v := got.value(name, nil); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}

	// Call latency is a histogram, observed per call by the daemon's
	// wrapper of the store, by result.
	m.StoreCall(300*time.Microsecond, nil)
	m.StoreCall(40*time.Millisecond, nil)
	m.StoreCall(200*time.Millisecond, errors.New("i/o timeout"))
	got = scrapeMetrics(t, base)
	if n := got.histCount("abusemilter_store_call_duration_seconds", map[string]string{"result": "ok"}); n != 2 {
		t.Errorf("ok store calls observed = %d, want 2", n)
	}
	if n := got.histCount("abusemilter_store_call_duration_seconds", map[string]string{"result": "error"}); n != 1 {
		t.Errorf("failed store calls observed = %d, want 1", n)
	}

	// The breaker closes: the next scrape says so.
	stats.Store(&StoreStats{Calls: 11, Errors: 3, FailFast: 2, BreakerOpens: 1})
	if v := scrapeMetrics(t, base).value("abusemilter_store_circuit_open", nil); v != 0 {
		t.Errorf("circuit gauge = %v after the breaker closed, want 0", v)
	}
}

func TestRedisSubscriptionGauge(t *testing.T) {
	const name = "abusemilter_redis_invalidation_subscribed"
	m := New(BuildInfo{})
	base := startServer(t, m, nil)
	if got := scrapeMetrics(t, base); got[name] != nil {
		t.Errorf("%s reported before WatchSubscription", name)
	}
	// A store without a subscription (in-memory): absent, not 0.
	m.WatchSubscription(func() (bool, bool) { return false, false })
	if got := scrapeMetrics(t, base); got[name] != nil {
		t.Errorf("%s reported for a store without a subscription: %v", name, got[name])
	}
	var up atomic.Bool
	m.WatchSubscription(func() (bool, bool) { return up.Load(), true })
	for _, want := range []bool{false, true, false} {
		up.Store(want)
		got := scrapeMetrics(t, base)
		if got.find(name, nil) == nil || got.value(name, nil) != boolValue(want) || got[name].GetType() != dto.MetricType_GAUGE {
			t.Errorf("subscribed=%v: %s = %v", want, name, got[name])
		}
	}
}

func TestHealthAndReadiness(t *testing.T) {
	m := New(BuildInfo{})
	var reason error = errors.New("rate store unreachable and fail mode not active\nsecond line")
	base := startServer(t, m, func() error { return reason })

	if code, body := get(t, base+"/healthz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable {
		t.Errorf("/readyz not ready: status %d, want 503", code)
	}
	if want := "not ready: rate store unreachable and fail mode not active second line\n"; body != want {
		t.Errorf("/readyz body = %q, want %q", body, want)
	}
	reason = nil
	if code, body := get(t, base+"/readyz"); code != http.StatusOK || strings.TrimSpace(body) != "ready" {
		t.Errorf("/readyz ready = %d %q, want 200 ready", code, body)
	}
	if code, _ := get(t, base+"/nonexistent"); code != http.StatusNotFound {
		t.Errorf("unknown path: status %d, want 404", code)
	}
}

func TestServeOffAndShutdown(t *testing.T) {
	m := New(BuildInfo{})
	srv, err := m.Serve("", nil)
	if err != nil || srv != nil {
		t.Fatalf("Serve(\"\") = %v, %v; want nil, nil (off)", srv, err)
	}
	if err := srv.Shutdown(context.Background()); err != nil || srv.Addr() != "" {
		t.Errorf("nil server: Shutdown = %v, Addr = %q", err, srv.Addr())
	}

	srv, err = m.Serve("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Errorf("server still answers after Shutdown")
	}

	// A taken port is a clear error naming the address.
	busy, err := m.Serve("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Shutdown(context.Background()) })
	if _, err := m.Serve(busy.Addr(), nil); err == nil || !strings.Contains(err.Error(), busy.Addr()) {
		t.Errorf("Serve on a busy port: err = %v, want one naming %q", err, busy.Addr())
	}
}

func TestNilMetricsIsNoop(t *testing.T) {
	var m *Metrics
	m.Decision("eom", "enforce", "accept", "", "", []string{"X"}, time.Millisecond)
	m.Trial("accept")
	m.StoreCall(time.Millisecond, nil)
	m.AccountsLocked(3)
	m.DNSLookup("answer", true, time.Millisecond)
	m.WatchNotifyQueues(func() map[string]int { return nil })
	m.SessionOpened()
	m.SessionClosed()
	m.SessionRefused()
	m.WatchStore(func() StoreStats { return StoreStats{} })
	m.WatchSubscription(func() (bool, bool) { return true, true })
	m.AccountLocked()
	m.AccountUnlocked()
	m.ConfigLoaded()
	m.ConfigReloaded(nil)
	m.NotifySent("webhook")
	m.NotifyFailed("webhook")
	m.NotifyDropped("webhook")
}

func BenchmarkDecision(b *testing.B) {
	m := New(BuildInfo{})
	findings := []string{"FROM_DOMAIN_NOT_OWNED", "DISPLAY_NAME_BRAND"}
	b.ReportAllocs()
	for b.Loop() {
		m.Decision("eom", "enforce", "reject", "impersonation", "FROM_DOMAIN_NOT_OWNED", findings, time.Millisecond)
	}
}

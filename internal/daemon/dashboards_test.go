package daemon

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/abusemilter/abusemilter/internal/config"
)

const (
	rulesFile     = "../../configs/prometheus/abusemilter.rules.yml"
	dashboardFile = "../../configs/grafana/abusemilter.json"
)

// metricName finds the abusemilter metrics an expression reads; recorded
// series ("abusemilter:...") are matched apart.
var (
	metricName   = regexp.MustCompile(`\babusemilter_[a-z0-9_]+`)
	recordedName = regexp.MustCompile(`\babusemilter:[a-z0-9_:]+`)
)

// rulesExprs returns the expressions of the rules file and the names it
// records.
func rulesExprs(t *testing.T) (exprs, recorded []string) {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Record, Alert, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
			if r.Record != "" {
				recorded = append(recorded, r.Record)
			}
		}
	}
	return exprs, recorded
}

// dashboardExprs returns every "expr" of the dashboard's panels and
// template queries.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d any
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s is not JSON: %v", dashboardFile, err)
	}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "definition") {
					out = append(out, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(d)
	return out
}

// registered is every metric family the daemon registers.
func registered(t *testing.T) []string {
	t.Helper()
	cfg := config.Default()
	cfg.Metrics.Listen = ""
	d, err := New(cfg, Options{Logger: zap.NewNop(), Level: zap.NewAtomicLevel()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.limiter.Close() })
	return d.metrics.Names()
}

// TestRulesAndDashboardUseRegisteredMetrics: every abusemilter metric the
// Prometheus rules and the Grafana dashboard read is one the daemon
// registers (a histogram's _bucket, _sum and _count included), every
// recorded series they read is recorded by the rules file, and together
// they cover what the issue asks the desk to see.
func TestRulesAndDashboardUseRegisteredMetrics(t *testing.T) {
	names := registered(t)
	known := func(n string) bool {
		if slices.Contains(names, n) {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(n, suffix); ok && slices.Contains(names, base) {
				return true
			}
		}
		return false
	}
	rules, recorded := rulesExprs(t)
	dash := dashboardExprs(t)
	if len(rules) < 15 || len(dash) < 20 {
		t.Fatalf("%d rule and %d dashboard expressions: files not read?", len(rules), len(dash))
	}
	used := map[string]bool{}
	for what, exprs := range map[string][]string{rulesFile: rules, dashboardFile: dash} {
		for _, e := range exprs {
			for _, n := range metricName.FindAllString(e, -1) {
				used[n] = true
				if !known(n) {
					t.Errorf("%s reads %s, which the daemon does not register (in %q)", what, n, e)
				}
			}
			for _, n := range recordedName.FindAllString(e, -1) {
				if !slices.Contains(recorded, n) {
					t.Errorf("%s reads %s, which no rule records", what, n)
				}
			}
		}
	}
	for _, want := range []string{
		"abusemilter_decisions_total", "abusemilter_decision_duration_seconds_bucket",
		"abusemilter_store_call_duration_seconds_bucket", "abusemilter_store_errors_total", "abusemilter_store_circuit_open",
		"abusemilter_accounts_locked", "abusemilter_account_locks_total", "abusemilter_milter_sessions_open",
		"abusemilter_milter_sessions_total", "abusemilter_notify_dropped_total", "abusemilter_config_reload_failures_total",
		"abusemilter_dns_lookups_total", "abusemilter_notify_queue_depth",
	} {
		if !used[want] {
			t.Errorf("neither the rules nor the dashboard use %s", want)
		}
	}
}

// TestDashboardPanels: the dashboard imports (panel ids unique, a
// Prometheus data source input) and has the panels the desk needs.
func TestDashboardPanels(t *testing.T) {
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string `json:"uid"`
		Inputs []struct {
			PluginID string `json:"pluginId"`
		} `json:"__inputs"`
		Panels []struct {
			ID    int    `json:"id"`
			Title string `json:"title"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || len(d.Inputs) != 1 || d.Inputs[0].PluginID != "prometheus" {
		t.Errorf("uid %q, inputs %+v", d.UID, d.Inputs)
	}
	ids := map[int]bool{}
	var titles []string
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		titles = append(titles, p.Title)
	}
	all := strings.Join(titles, "\n")
	for _, want := range []string{"by action", "by clause", "by rule", "p50 / p99 by stage", "Rate store latency", "Rate store errors", "Locked accounts", "Milter sessions"} {
		if !strings.Contains(all, want) {
			t.Errorf("no panel titled with %q:\n%s", want, all)
		}
	}
}

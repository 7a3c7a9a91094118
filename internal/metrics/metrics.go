// Package metrics owns abusemilter's Prometheus metrics and the small HTTP
// server that exposes them with the health endpoints (/metrics, /healthz,
// /readyz).
//
// Everything is registered on a registry of its own, never on the global
// default one, so that tests and several instances in one process never
// collide. The methods that the milter, the rate store and the notifier call
// take plain Go types: no Prometheus type leaks into their code, and a nil
// *Metrics is a valid no-op receiver so that callers need no "if metrics
// enabled" branches.
package metrics

import (
	"regexp"
	"runtime"
	"sort"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Namespace prefixes every metric name.
const Namespace = "abusemilter"

// noneLabel stands for an empty label value (a plain accept has no clause
// and no deciding rule).
const noneLabel = "none"

// DecisionBuckets are the decision latency histogram buckets, in seconds:
// from 100µs (rules only, no I/O) to 10s (a rate store at its deadline).
var DecisionBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
	0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// StoreBuckets are the rate-store latency histogram buckets, in seconds:
// from 250µs (the in-memory store, Redis on loopback) to the longest
// redis.timeout, 10s.
var StoreBuckets = []float64{
	0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.2, 0.5, 1, 2.5, 10,
}

// DNSBuckets are the DNS query latency histogram buckets, in seconds:
// from a local cache's 1ms to a resolver's 5s timeout.
var DNSBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// BuildInfo identifies the running binary; it is exported as the labels of
// abusemilter_build_info.
type BuildInfo struct {
	Version string
	Commit  string
}

// Metrics holds every metric of the daemon. Create it with New; the zero
// value is not usable, but a nil *Metrics is: every method is then a no-op.
type Metrics struct {
	registry *prometheus.Registry

	decisions       *prometheus.CounterVec
	findings        *prometheus.CounterVec
	decisionLatency *prometheus.HistogramVec
	trials          *prometheus.CounterVec

	sessionsOpen    prometheus.Gauge
	sessionsTotal   prometheus.Counter
	sessionsRefused prometheus.Counter

	storeLatency   *prometheus.HistogramVec
	lockedAccounts prometheus.Gauge

	dnsLookups *prometheus.CounterVec
	dnsLatency prometheus.Histogram

	// notifyQueues, when set by WatchNotifyQueues, is asked for the
	// notification queues' depths at every scrape.
	notifyQueues atomic.Pointer[func() map[string]int]

	// collectors are every collector registered, for Names.
	collectors []prometheus.Collector

	// store, when set by WatchStore, is asked for the rate store's
	// counters at every scrape.
	store atomic.Pointer[func() StoreStats]
	// subscription, when set by WatchSubscription, is asked at every
	// scrape whether the store's admin-change subscription is confirmed.
	subscription atomic.Pointer[func() (value, ok bool)]

	locks   prometheus.Counter
	unlocks prometheus.Counter

	reloads        prometheus.Counter
	reloadFailures prometheus.Counter
	lastReload     prometheus.Gauge

	notifySent    *prometheus.CounterVec
	notifyFailed  *prometheus.CounterVec
	notifyDropped *prometheus.CounterVec

	rulePanics *prometheus.CounterVec

	av *antivirusMetrics // set by WatchAntivirus (antivirus.go)
}

// New creates the metrics on a fresh registry, together with the Go runtime
// and process collectors and abusemilter_build_info.
func New(build BuildInfo) *Metrics {
	m := &Metrics{registry: prometheus.NewRegistry()}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help})
	}

	m.decisions = counterVec("decisions_total",
		"Decisions by stage (mail: a refusal at MAIL FROM; rcpt: a message's first recipient refused past the cap; eom: end of message), "+
			"mode (enforce, monitor: action is what enforce mode would have done), action (accept, defer, reject), policy clause and "+
			"deciding rule ID (none for a plain accept). A message is counted at most once per stage; trials are not counted.",
		"stage", "mode", "action", "clause", "rule")
	m.findings = counterVec("findings_total",
		"Rule findings by rule ID, whether or not the rule decided the message.", "rule")
	m.decisionLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "decision_duration_seconds",
		Help: "Time the milter spent deciding, by stage, mode and action: at end of message the DKIM check, the rules, " +
			"DNS and the rate-store call; at MAIL FROM and RCPT TO the early checks.",
		Buckets: DecisionBuckets,
	}, []string{"stage", "mode", "action"})
	m.trials = counterVec("trials_total",
		"Trials (abusescan --milter on trial.listen) by the action the milter would have taken; they charge nothing and are not decisions.",
		"action")

	m.sessionsOpen = gauge("milter_sessions_open", "Milter sessions (MTA connections) currently open.")
	m.sessionsTotal = counter("milter_sessions_total", "Milter sessions (MTA connections) opened.")
	m.sessionsRefused = counter("milter_sessions_refused_total",
		"Milter connections refused because session.max_sessions were already open.")

	m.storeLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "store_call_duration_seconds",
		Help: "Latency of rate-store check-and-charge calls, by result (ok, error: failed, timed out, or refused at once " +
			"by the open circuit breaker).",
		Buckets: StoreBuckets,
	}, []string{"result"})
	m.lockedAccounts = gauge("accounts_locked",
		"Accounts locked in the rate store now, read from the store once a minute.")

	m.dnsLookups = counterVec("dns_lookups_total",
		"DNS lookups of the rules and of DKIM, by result: cache_hit, answer, not_found, error, timeout (the resolver "+
			"timed out), budget_exhausted (the message's DNS budget or the DKIM key deadline ended first).", "result")
	m.dnsLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "dns_query_duration_seconds",
		Help:    "Latency of DNS queries that missed the cache, whatever their result.",
		Buckets: DNSBuckets,
	})

	m.locks = counter("account_locks_total", "Accounts locked (automatically after strikes, or by an admin through this daemon).")
	m.unlocks = counter("account_unlocks_total", "Accounts unlocked.")

	m.reloads = counter("config_reloads_total", "Successful configuration reloads (SIGHUP).")
	m.reloadFailures = counter("config_reload_failures_total",
		"Configuration reloads that failed; the previous configuration stays in force.")
	m.lastReload = gauge("config_last_reload_success_timestamp_seconds",
		"Unix time of the last successful configuration load or reload.")

	m.notifySent = counterVec("notify_sent_total",
		"Notification events delivered, by sink (webhook, command, audit).", "sink")
	m.notifyFailed = counterVec("notify_failed_total",
		"Notification events that could not be delivered after all retries, by sink.", "sink")
	m.notifyDropped = counterVec("notify_dropped_total",
		"Notification events dropped because the sink's queue was full (or the notifier was closed), by sink.", "sink")

	m.rulePanics = counterVec("rule_panics_total",
		"Rules that panicked while checking a message, by rule ID; the message was decided as if the rule had not fired.", "rule")

	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help: "Always 1; the labels identify the running binary.",
	}, []string{"version", "commit", "goversion"})
	buildInfo.WithLabelValues(orNone(build.Version), orNone(build.Commit), runtime.Version()).Set(1)

	m.collectors = []prometheus.Collector{
		m.decisions, m.findings, m.decisionLatency, m.trials,
		m.sessionsOpen, m.sessionsTotal, m.sessionsRefused,
		storeCollector{m}, m.storeLatency, m.lockedAccounts,
		m.dnsLookups, m.dnsLatency,
		m.locks, m.unlocks,
		m.reloads, m.reloadFailures, m.lastReload,
		m.notifySent, m.notifyFailed, m.notifyDropped, notifyQueueCollector{m},
		m.rulePanics,
		buildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}
	m.registry.MustRegister(m.collectors...)
	return m
}

// fqName reads a metric's full name out of its description.
var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// Names lists the name of every metric family registered, sorted, whether
// or not it has samples yet (the Prometheus rules and the dashboard may
// only use these).
func (m *Metrics) Names() []string {
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range m.collectors {
			c.Describe(ch)
		}
		close(ch)
	}()
	seen := make(map[string]bool)
	for d := range ch {
		if sm := fqName.FindStringSubmatch(d.String()); sm != nil {
			seen[sm[1]] = true
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Registry returns the registry holding every metric (for tests and for
// embedding in another HTTP mux).
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Decision counts one decision. stage is "mail", "rcpt" or "eom"; mode
// "enforce" or "monitor"; action "accept", "defer" or "reject"; clause and
// rule are those of the deciding rule (empty for a plain accept); findings
// are the rule IDs of every finding, deciding or not; d is the time the
// decision took. Stages, modes and rule IDs are stable constants and no
// label names an account, so the label sets stay bounded.
func (m *Metrics) Decision(stage, mode, action, clause, rule string, findings []string, d time.Duration) {
	if m == nil {
		return
	}
	stage, mode, action = orNone(stage), orNone(mode), orNone(action)
	m.decisions.WithLabelValues(stage, mode, action, orNone(clause), orNone(rule)).Inc()
	for _, f := range findings {
		m.findings.WithLabelValues(orNone(f)).Inc()
	}
	m.decisionLatency.WithLabelValues(stage, mode, action).Observe(d.Seconds())
}

// Trial counts a trial (abusescan --milter) by the action the milter would
// have taken.
func (m *Metrics) Trial(action string) {
	if m != nil {
		m.trials.WithLabelValues(orNone(action)).Inc()
	}
}

// StoreCall observes one rate-store check-and-charge call.
func (m *Metrics) StoreCall(d time.Duration, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.storeLatency.WithLabelValues(result).Observe(d.Seconds())
}

// AccountsLocked sets the number of accounts locked in the store now.
func (m *Metrics) AccountsLocked(n int) {
	if m != nil {
		m.lockedAccounts.Set(float64(n))
	}
}

// DNSLookup counts one DNS lookup by result (dns.Result*) and, for one
// that queried the resolver, observes how long the query took.
func (m *Metrics) DNSLookup(result string, queried bool, d time.Duration) {
	if m == nil {
		return
	}
	m.dnsLookups.WithLabelValues(orNone(result)).Inc()
	if queried {
		m.dnsLatency.Observe(d.Seconds())
	}
}

// WatchNotifyQueues makes every scrape read the notification queues'
// depths by sink (abusemilter_notify_queue_depth); depths must be cheap and
// safe for concurrent use (notify.Notifier.QueueDepths).
func (m *Metrics) WatchNotifyQueues(depths func() map[string]int) {
	if m != nil && depths != nil {
		m.notifyQueues.Store(&depths)
	}
}

// RulePanicked counts a rule that panicked while checking a message.
func (m *Metrics) RulePanicked(rule string) {
	if m == nil {
		return
	}
	m.rulePanics.WithLabelValues(orNone(rule)).Inc()
}

// SessionOpened counts a milter session (MTA connection) as open.
func (m *Metrics) SessionOpened() {
	if m != nil {
		m.sessionsOpen.Inc()
		m.sessionsTotal.Inc()
	}
}

// SessionClosed counts a milter session as closed.
func (m *Metrics) SessionClosed() {
	if m != nil {
		m.sessionsOpen.Dec()
	}
}

// SessionRefused counts a connection refused past the session cap.
func (m *Metrics) SessionRefused() {
	if m != nil {
		m.sessionsRefused.Inc()
	}
}

// WatchStore makes every scrape read the rate store's counters from stats
// (abusemilter_store_*). stats must be cheap and safe for concurrent use;
// a later call replaces an earlier one (e.g. after a reload built a new
// store). With the ratelimit stores, whose Stats has the same fields:
//
//	m.WatchStore(func() metrics.StoreStats { return metrics.StoreStats(store.Stats()) })
func (m *Metrics) WatchStore(stats func() StoreStats) {
	if m != nil && stats != nil {
		m.store.Store(&stats)
	}
}

// AccountLocked counts an account lock.
func (m *Metrics) AccountLocked() {
	if m != nil {
		m.locks.Inc()
	}
}

// AccountUnlocked counts an account unlock.
func (m *Metrics) AccountUnlocked() {
	if m != nil {
		m.unlocks.Inc()
	}
}

// ConfigLoaded stamps the time of the initial configuration load (it is
// not counted as a reload).
func (m *Metrics) ConfigLoaded() {
	if m != nil {
		m.lastReload.SetToCurrentTime()
	}
}

// ConfigReloaded records a configuration reload: err nil counts a success
// and stamps its time, otherwise a failure (the old config stays in force).
func (m *Metrics) ConfigReloaded(err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.reloadFailures.Inc()
		return
	}
	m.reloads.Inc()
	m.lastReload.SetToCurrentTime()
}

// NotifySent counts an event delivered to a sink ("webhook", "command",
// "audit"). Together with NotifyFailed and NotifyDropped it satisfies
// notify.Observer.
func (m *Metrics) NotifySent(sink string) {
	if m != nil {
		m.notifySent.WithLabelValues(orNone(sink)).Inc()
	}
}

// NotifyFailed counts an event a sink could not deliver after its retries.
func (m *Metrics) NotifyFailed(sink string) {
	if m != nil {
		m.notifyFailed.WithLabelValues(orNone(sink)).Inc()
	}
}

// NotifyDropped counts an event dropped because the sink's queue was full.
func (m *Metrics) NotifyDropped(sink string) {
	if m != nil {
		m.notifyDropped.WithLabelValues(orNone(sink)).Inc()
	}
}

func orNone(s string) string {
	if s == "" {
		return noneLabel
	}
	return s
}

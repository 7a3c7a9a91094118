package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// AntivirusStats are the clamd client's cumulative counters; the fields
// match clamd.Stats one for one, so that metrics.AntivirusStats(s) is the
// wiring.
type AntivirusStats struct {
	Scans        uint64 // scans finished with a verdict
	Found        uint64 // of them, with a signature
	Errors       uint64 // scans without a verdict (fail-fast included)
	FailFast     uint64 // scans refused at once by the open breaker
	BreakerOpen  bool
	BreakerOpens uint64
	Truncated    uint64 // messages longer than antivirus.max_size
}

// antivirusMetrics are registered by WatchAntivirus, when clamd is
// configured.
type antivirusMetrics struct {
	stats func() AntivirusStats
	found *prometheus.CounterVec
}

var (
	avScansDesc = prometheus.NewDesc(Namespace+"_antivirus_scans_total",
		"Messages clamd gave a verdict on.", nil, nil)
	avFoundDesc = prometheus.NewDesc(Namespace+"_antivirus_infected_total",
		"Messages clamd found a signature in (by signature: abusemilter_antivirus_signatures_total).", nil, nil)
	avErrorsDesc = prometheus.NewDesc(Namespace+"_antivirus_errors_total",
		"Scans clamd gave no verdict on within antivirus.timeout (down, slow, or the circuit breaker open): antivirus.on_error decided.", nil, nil)
	avFailFastDesc = prometheus.NewDesc(Namespace+"_antivirus_fail_fast_total",
		"Scans refused at once because the clamd circuit breaker was open.", nil, nil)
	avCircuitDesc = prometheus.NewDesc(Namespace+"_antivirus_circuit_open",
		"1 while the clamd circuit breaker is open (on_error decides without asking clamd), else 0.", nil, nil)
	avOpensDesc = prometheus.NewDesc(Namespace+"_antivirus_circuit_opens_total",
		"Times the clamd circuit breaker opened.", nil, nil)
	avTruncatedDesc = prometheus.NewDesc(Namespace+"_antivirus_partial_total",
		"Messages longer than antivirus.max_size, of which only the first max_size bytes were scanned.", nil, nil)
)

// WatchAntivirus registers the antivirus metrics and makes every scrape
// read the clamd client's counters from stats. Call it once, when clamd is
// configured; without it the antivirus metrics are absent.
func (m *Metrics) WatchAntivirus(stats func() AntivirusStats) {
	if m == nil || stats == nil || m.av != nil {
		return
	}
	av := &antivirusMetrics{stats: stats}
	av.found = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "antivirus_signatures_total",
		Help: "Messages refused for a virus, by the signature clamd named.",
	}, []string{"signature"})
	m.registry.MustRegister(antivirusCollector{av}, av.found)
	m.av = av
}

// VirusFound counts a message in which clamd found signature.
func (m *Metrics) VirusFound(signature string) {
	if m == nil || m.av == nil {
		return
	}
	m.av.found.WithLabelValues(orNone(signature)).Inc()
}

type antivirusCollector struct{ av *antivirusMetrics }

// Describe implements prometheus.Collector.
func (c antivirusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{avScansDesc, avFoundDesc, avErrorsDesc, avFailFastDesc, avCircuitDesc, avOpensDesc, avTruncatedDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c antivirusCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.av.stats()
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(avScansDesc, s.Scans)
	counter(avFoundDesc, s.Found)
	counter(avErrorsDesc, s.Errors)
	counter(avFailFastDesc, s.FailFast)
	counter(avOpensDesc, s.BreakerOpens)
	counter(avTruncatedDesc, s.Truncated)
	ch <- prometheus.MustNewConstMetric(avCircuitDesc, prometheus.GaugeValue, boolValue(s.BreakerOpen))
}

package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// StoreStats are the rate store's cumulative call counters. The fields
// match ratelimit.Stats one for one, so that a conversion
// metrics.StoreStats(s) is all the wiring needed.
type StoreStats struct {
	Calls         uint64        // CheckAndCharge calls
	Errors        uint64        // calls that returned an error (fail-fast included)
	FailFast      uint64        // calls refused at once by the open circuit breaker
	BreakerOpen   bool          // the breaker is open now
	BreakerOpens  uint64        // times the breaker opened
	LatencyTotal  time.Duration // summed latency of calls that reached the store
	LatencyMax    time.Duration // slowest call so far
	EventsDropped uint64        // store events (locks, usage) dropped on a full queue
}

var (
	storeCallsDesc = prometheus.NewDesc(Namespace+"_store_calls_total",
		"Rate-store check-and-charge calls.", nil, nil)
	storeErrorsDesc = prometheus.NewDesc(Namespace+"_store_errors_total",
		"Rate-store calls that failed, timed out or were refused by the open circuit breaker (the fail mode decided).", nil, nil)
	storeFailFastDesc = prometheus.NewDesc(Namespace+"_store_fail_fast_total",
		"Rate-store calls refused at once because the circuit breaker was open.", nil, nil)
	storeCircuitDesc = prometheus.NewDesc(Namespace+"_store_circuit_open",
		"1 while the rate-store circuit breaker is open (the fail mode decides without asking the store), else 0.", nil, nil)
	storeOpensDesc = prometheus.NewDesc(Namespace+"_store_circuit_opens_total",
		"Times the rate-store circuit breaker opened.", nil, nil)
	storeLatencyMaxDesc = prometheus.NewDesc(Namespace+"_store_call_duration_max_seconds",
		"Slowest rate-store call since the store was created.", nil, nil)
	storeEventsDroppedDesc = prometheus.NewDesc(Namespace+"_store_events_dropped_total",
		"Rate-store events (locks, usage thresholds) dropped because the event queue was full.", nil, nil)
	redisSubscribedDesc = prometheus.NewDesc(Namespace+"_redis_invalidation_subscribed",
		"1 while the Redis store's subscription to admin changes (locks, unlocks, exemptions by abusectl or another instance) is confirmed; "+
			"0 while it is not, and cached refusals are then served for at most 5s. Absent with the in-memory store.", nil, nil)
)

// WatchSubscription makes every scrape read, through subscribed, whether
// the rate store's subscription to admin changes is confirmed
// (abusemilter_redis_invalidation_subscribed, 1 or 0). ok false means the
// store in use has no such subscription (the in-memory store): then the
// metric is absent rather than a 0 that would look like an outage. A
// later call replaces an earlier one; subscribed must be cheap and safe
// for concurrent use. With the Redis store:
//
//	m.WatchSubscription(func() (bool, bool) { return store.Subscribed(), true })
func (m *Metrics) WatchSubscription(subscribed func() (value, ok bool)) {
	if m != nil && subscribed != nil {
		m.subscription.Store(&subscribed)
	}
}

// storeCollector turns the store's counters into metrics at scrape time;
// it reports nothing until WatchStore is called.
type storeCollector struct{ m *Metrics }

// Describe implements prometheus.Collector.
func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{storeCallsDesc, storeErrorsDesc, storeFailFastDesc, storeCircuitDesc,
		storeOpensDesc, storeLatencyMaxDesc, storeEventsDroppedDesc, redisSubscribedDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	if sub := c.m.subscription.Load(); sub != nil {
		if v, ok := (*sub)(); ok {
			ch <- prometheus.MustNewConstMetric(redisSubscribedDesc, prometheus.GaugeValue, boolValue(v))
		}
	}
	f := c.m.store.Load()
	if f == nil {
		return
	}
	s := (*f)()
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(storeCallsDesc, s.Calls)
	counter(storeErrorsDesc, s.Errors)
	counter(storeFailFastDesc, s.FailFast)
	counter(storeOpensDesc, s.BreakerOpens)
	counter(storeEventsDroppedDesc, s.EventsDropped)
	ch <- prometheus.MustNewConstMetric(storeCircuitDesc, prometheus.GaugeValue, boolValue(s.BreakerOpen))
	ch <- prometheus.MustNewConstMetric(storeLatencyMaxDesc, prometheus.GaugeValue, s.LatencyMax.Seconds())
}

var notifyQueueDesc = prometheus.NewDesc(Namespace+"_notify_queue_depth",
	"Notification events waiting in each sink's queue (webhook, command, audit); a queue at notify.queue_size drops new events.",
	[]string{"sink"}, nil)

// notifyQueueCollector reports the notification queues' depths at scrape
// time; nothing until WatchNotifyQueues is called.
type notifyQueueCollector struct{ m *Metrics }

// Describe implements prometheus.Collector.
func (c notifyQueueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- notifyQueueDesc }

// Collect implements prometheus.Collector.
func (c notifyQueueCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.m.notifyQueues.Load()
	if f == nil {
		return
	}
	for sink, n := range (*f)() {
		ch <- prometheus.MustNewConstMetric(notifyQueueDesc, prometheus.GaugeValue, float64(n), orNone(sink))
	}
}

// boolValue is a gauge's 1 for true, 0 for false.
func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

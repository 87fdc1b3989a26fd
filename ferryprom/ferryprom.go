// Package ferryprom exposes a ferry App's events and stats as Prometheus
// metrics (X3).
//
//	reg := prometheus.NewRegistry()
//	metrics, err := ferryprom.New(reg)
//	if err != nil { ... }
//	app, err := ferry.New(..., ferry.OnEvent(metrics.Observe))
//	if err != nil { ... }
//	metrics.Watch(app) // lag and assignment gauges, read at each scrape
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// Counters and the batch duration histogram follow the events, so their
// counts are exact; gauges (lag, partitions assigned, paused) are read from
// App.Stats when Prometheus scrapes, so they cost nothing between scrapes
// and never keep a partition the app no longer owns.
//
// Labels are bounded: group, topic and partition, and for some metrics a
// reason, result or kind from a fixed set. Offsets, keys and error texts
// never become labels.
//
// The metrics:
//
//	ferry_messages_consumed_total{group,topic,partition}  counter    messages of batches whose Consume returned nil
//	ferry_batches_consumed_total{group,topic,partition}   counter    such batches
//	ferry_batch_duration_seconds{group,topic}             histogram  how long Consume ran, failed batches included
//	ferry_consume_errors_total{group,topic,partition}     counter    Consume calls that failed (error or panic)
//	ferry_retries_total{group,topic,partition}            counter    retries scheduled after a failure
//	ferry_dead_letters_total{group,topic,partition}       counter    messages sent to the dead-letter topic
//	ferry_commits_total{group,reason,result}              counter    commit requests; result is "success" or "failure"
//	ferry_rebalances_total{group,kind}                    counter    partitions assigned, revoked or lost (kind), counting events that named any
//	ferry_fetch_errors_total{group,topic,partition}       counter    fetch errors
//	ferry_pauses_total{group,topic,partition,reason}      counter    pauses of a partition: "backoff" (retry), "memory" (QueueBytes), "record" (Parallel's record full), "user" (App.Pause)
//	ferry_consumer_lag{group,topic,partition}             gauge      end offset − committed offset
//	ferry_consumer_processing_lag{group,topic,partition}  gauge      end offset − offset after the last processed message
//	ferry_partitions_assigned{group}                      gauge      partitions this member owns
//	ferry_partition_paused{group,topic,partition}         gauge      1 while its fetching is paused
//	ferry_group_ready{group}                              gauge      1 once joined and assigned
package ferryprom

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/event"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics turns events into Prometheus metrics. Create it with New.
type Metrics struct {
	consumed    *prometheus.CounterVec
	batches     *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	errors      *prometheus.CounterVec
	retries     *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	commits     *prometheus.CounterVec
	rebalances  *prometheus.CounterVec
	fetchErrors *prometheus.CounterVec
	pauses      *prometheus.CounterVec

	stats stats
	parts sync.Map // partition → *partitionMetrics: a batch costs no label lookup
}

// partition names one topic-partition of a group.
type partition struct {
	group, topic string
	id           int32
}

// partitionMetrics are the per-batch metrics of one partition, resolved
// once.
type partitionMetrics struct {
	consumed, batches prometheus.Counter
	duration          prometheus.Observer
}

// Option configures Metrics.
type Option func(*options)

type options struct {
	buckets []float64
}

// Buckets sets the buckets of ferry_batch_duration_seconds. Default
// prometheus.DefBuckets (5 ms to 10 s).
func Buckets(b ...float64) Option {
	return func(o *options) { o.buckets = b }
}

// New creates the metrics and registers them on reg. Pass Observe to
// ferry.OnEvent, and the App to Watch for the gauges.
func New(reg prometheus.Registerer, opts ...Option) (*Metrics, error) {
	o := options{buckets: prometheus.DefBuckets}
	for _, opt := range opts {
		opt(&o)
	}
	byPartition := []string{"group", "topic", "partition"}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	m := &Metrics{
		consumed: counter("ferry_messages_consumed_total", "Messages of batches whose Consume returned nil.", byPartition...),
		batches:  counter("ferry_batches_consumed_total", "Batches whose Consume returned nil.", byPartition...),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ferry_batch_duration_seconds", Help: "How long Consume ran for one batch, failed batches included.",
			Buckets: o.buckets,
		}, []string{"group", "topic"}),
		errors:      counter("ferry_consume_errors_total", "Consume calls that returned an error or panicked.", byPartition...),
		retries:     counter("ferry_retries_total", "Retries scheduled after a failed batch.", byPartition...),
		deadLetters: counter("ferry_dead_letters_total", "Messages sent to the dead-letter topic.", byPartition...),
		commits:     counter("ferry_commits_total", "Commit requests (and committed transactions), by reason and result.", "group", "reason", "result"),
		rebalances:  counter("ferry_rebalances_total", "Rebalance callbacks that assigned, revoked or lost partitions.", "group", "kind"),
		fetchErrors: counter("ferry_fetch_errors_total", "Fetch errors franz-go does not retry by itself.", byPartition...),
		pauses: counter("ferry_pauses_total", "Times a partition stopped taking messages for a while, by reason: backoff, memory, record or user.",
			append(byPartition, "reason")...),
	}
	m.stats = newStats()
	for _, c := range []prometheus.Collector{m.consumed, m.batches, m.duration, m.errors, m.retries,
		m.deadLetters, m.commits, m.rebalances, m.fetchErrors, m.pauses, &m.stats} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Watch makes the gauges read app's Stats at each scrape. Call it once,
// after ferry.New; without it the gauges are absent.
func (m *Metrics) Watch(app *ferry.App) { m.stats.app.Store(app) }

// Observe is the event subscriber: pass it to ferry.OnEvent.
func (m *Metrics) Observe(e event.Event) {
	switch e := e.(type) {
	case event.BatchConsumed:
		pm := m.partition(e.Group, e.Topic, e.Partition)
		pm.consumed.Add(float64(e.Count))
		pm.batches.Inc()
		pm.duration.Observe(e.Duration.Seconds())
	case event.ConsumeFailed:
		m.partition(e.Group, e.Topic, e.Partition).duration.Observe(e.Duration.Seconds())
		m.errors.WithLabelValues(e.Group, e.Topic, itoa(e.Partition)).Inc()
	case event.RetryScheduled:
		m.retries.WithLabelValues(e.Group, e.Topic, itoa(e.Partition)).Inc()
	case event.DeadLettered:
		m.deadLetters.WithLabelValues(e.Group, e.Topic, itoa(e.Partition)).Inc()
	case event.Committed:
		result := "success"
		if e.Err != nil {
			result = "failure"
		}
		m.commits.WithLabelValues(e.Group, e.Reason, result).Inc()
	case event.Assigned:
		m.rebalance(e.Group, "assigned", e.Partitions)
	case event.Revoked:
		m.rebalance(e.Group, "revoked", e.Partitions)
	case event.Lost:
		m.rebalance(e.Group, "lost", e.Partitions)
	case event.FetchFailed:
		m.fetchErrors.WithLabelValues(e.Group, e.Topic, itoa(e.Partition)).Inc()
	case event.Paused:
		m.pauses.WithLabelValues(e.Group, e.Topic, itoa(e.Partition), e.Reason).Inc()
	}
}

func (m *Metrics) rebalance(group, kind string, parts map[string][]int32) {
	for _, ids := range parts {
		if len(ids) > 0 {
			m.rebalances.WithLabelValues(group, kind).Inc()
			return
		}
	}
}

func (m *Metrics) partition(group, topic string, id int32) *partitionMetrics {
	k := partition{group, topic, id}
	if pm, ok := m.parts.Load(k); ok {
		return pm.(*partitionMetrics)
	}
	p := itoa(id)
	pm, _ := m.parts.LoadOrStore(k, &partitionMetrics{
		consumed: m.consumed.WithLabelValues(group, topic, p),
		batches:  m.batches.WithLabelValues(group, topic, p),
		duration: m.duration.WithLabelValues(group, topic),
	})
	return pm.(*partitionMetrics)
}

func itoa(id int32) string { return strconv.Itoa(int(id)) }

// stats is the collector of the gauges read from App.Stats.
type stats struct {
	app                                  atomic.Pointer[ferry.App]
	lag, processingLag, assigned, paused *prometheus.Desc
	ready                                *prometheus.Desc
}

func newStats() stats {
	byPartition := []string{"group", "topic", "partition"}
	return stats{
		lag: prometheus.NewDesc("ferry_consumer_lag",
			"End offset of the partition, as of the latest fetch, minus the group's committed offset.", byPartition, nil),
		processingLag: prometheus.NewDesc("ferry_consumer_processing_lag",
			"End offset of the partition, as of the latest fetch, minus the offset after the last processed message.", byPartition, nil),
		assigned: prometheus.NewDesc("ferry_partitions_assigned", "Partitions this member owns.", []string{"group"}, nil),
		paused:   prometheus.NewDesc("ferry_partition_paused", "1 while fetching of the partition is paused.", byPartition, nil),
		ready:    prometheus.NewDesc("ferry_group_ready", "1 once the member joined its group and got its assignment.", []string{"group"}, nil),
	}
}

func (s *stats) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.lag
	ch <- s.processingLag
	ch <- s.assigned
	ch <- s.paused
	ch <- s.ready
}

func (s *stats) Collect(ch chan<- prometheus.Metric) {
	app := s.app.Load()
	if app == nil {
		return
	}
	for _, g := range app.Stats().Groups {
		ch <- prometheus.MustNewConstMetric(s.assigned, prometheus.GaugeValue, float64(len(g.Partitions)), g.Name)
		ch <- prometheus.MustNewConstMetric(s.ready, prometheus.GaugeValue, bool01(g.Running && g.Joined), g.Name)
		for _, p := range g.Partitions {
			labels := []string{g.Name, p.Topic, itoa(p.Partition)}
			if p.Lag >= 0 {
				ch <- prometheus.MustNewConstMetric(s.lag, prometheus.GaugeValue, float64(p.Lag), labels...)
			}
			if p.ProcessingLag >= 0 {
				ch <- prometheus.MustNewConstMetric(s.processingLag, prometheus.GaugeValue, float64(p.ProcessingLag), labels...)
			}
			ch <- prometheus.MustNewConstMetric(s.paused, prometheus.GaugeValue, bool01(p.Paused), labels...)
		}
	}
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

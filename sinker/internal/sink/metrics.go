package sink

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	rowsInserted      prometheus.Counter
	bytesInserted     prometheus.Counter
	inserts           prometheus.Counter
	insertDuration    prometheus.Histogram
	batchRows         prometheus.Histogram
	insertRetries     prometheus.Counter
	deadLetters       *prometheus.CounterVec
	deadLetterRetries prometheus.Counter
	commitFailures    prometheus.Counter
	lastInsert        prometheus.Gauge
	splits            prometheus.Counter
	lag               *prometheus.GaugeVec
	dropped           *prometheus.CounterVec
	droppedErased     prometheus.Counter
	droppedCopy       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		rowsInserted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alumini_sinker_rows_inserted_total",
			Help: "Events ClickHouse accepted (replays included; storage deduplicates them).",
		}),
		bytesInserted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alumini_sinker_bytes_inserted_total",
			Help: "Kafka record bytes of the events ClickHouse accepted.",
		}),
		inserts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alumini_sinker_inserts_total",
			Help: "Batches ClickHouse accepted.",
		}),
		insertDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "alumini_sinker_insert_duration_seconds",
			Help:    "Time one insert attempt took, failed ones included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "alumini_sinker_batch_rows",
			Help:    "Events per inserted batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10), // 1 .. 262144
		}),
		insertRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alumini_sinker_insert_retries_total",
			Help: "Insert attempts that failed and were retried.",
		}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alumini_sinker_dead_letters_total",
			Help: "Records written to the dead-letter topic instead of ClickHouse, by reason.",
		}, []string{"reason"}),
		deadLetterRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alumini_sinker_dead_letter_retries_total",
			Help: "Dead-letter writes that failed and were retried.",
		}),
		commitFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alumini_sinker_commit_failures_total",
			Help: "Offset commits that failed after the batch was stored; its records are replayed and deduplicated.",
		}),
		lastInsert: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "alumini_sinker_last_insert_timestamp_seconds",
			Help: "Unix time of the last batch ClickHouse accepted.",
		}),
	}
	m.splits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "alumini_sinker_batch_splits_total",
		Help: "Batches ClickHouse rejected for their data and the sinker split in halves to find the bad rows.",
	})
	// One series per partition of the enriched topic: bounded by the
	// topic's partition count.
	m.lag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "alumini_sinker_consumer_lag_records",
		Help: "Records between the last one fetched and the end of its partition, by partition.",
	}, []string{"partition"})
	m.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "alumini_sinker_dropped_total",
		Help: "Records committed without being stored or dead-lettered, by reason (erased: the visitor's erasure was requested; copy: an earlier record of the partition holds the same client and event id).",
	}, []string{"reason"})
	m.droppedErased = m.dropped.WithLabelValues(DropErased)
	m.droppedCopy = m.dropped.WithLabelValues(DropCopy)
	for _, r := range []string{ReasonDecodeError, ReasonInvalidEvent, ReasonRejected} {
		m.deadLetters.WithLabelValues(r) // export zeros, so alerts see the series
	}
	reg.MustRegister(m.rowsInserted, m.bytesInserted, m.inserts, m.insertDuration, m.batchRows,
		m.insertRetries, m.deadLetters, m.deadLetterRetries, m.commitFailures, m.lastInsert, m.splits, m.lag,
		m.dropped)
	return m
}

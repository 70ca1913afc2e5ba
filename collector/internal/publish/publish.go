// Package publish writes raw hits to Kafka and reports success only once
// the brokers acknowledged them.
package publish

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// ErrUnavailable means Kafka did not acknowledge in time; the caller answers
// 503 so the sender retries with the same event id.
var ErrUnavailable = errors.New("kafka did not acknowledge the event in time")

// Config tunes the producer.
type Config struct {
	Addr  net.Addr
	Topic string
	// BatchTimeout is how long the writer waits to fill a batch. kafka-go's
	// default of 1s would hold every HTTP request for a second; a few
	// milliseconds still batches well under load because concurrent
	// requests share one batch.
	BatchTimeout time.Duration
	// AckTimeout bounds how long one request waits for the broker.
	AckTimeout time.Duration
}

// Publisher produces to one topic with acks from all in-sync replicas.
type Publisher struct {
	w          *kafka.Writer
	ackTimeout time.Duration
	latency    prometheus.Histogram
	failures   prometheus.Counter
}

// New returns a Publisher whose metrics are registered on reg.
func New(cfg Config, reg prometheus.Registerer) *Publisher {
	p := &Publisher{
		w: &kafka.Writer{
			Addr:  cfg.Addr,
			Topic: cfg.Topic,
			// Murmur2 is the Java client's partitioner: the same key lands on
			// the same partition whichever producer wrote it.
			Balancer:     &kafka.Murmur2Balancer{},
			RequiredAcks: kafka.RequireAll,
			BatchTimeout: cfg.BatchTimeout,
			BatchSize:    1000,
			// Retries inside the writer stay shorter than the request's own
			// deadline, which is what the sender waits on.
			MaxAttempts:  3,
			WriteTimeout: cfg.AckTimeout,
			Compression:  kafka.Lz4,
		},
		ackTimeout: cfg.AckTimeout,
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "alumini_collector_produce_duration_seconds",
			Help:    "Time from handing an event to the producer until Kafka acknowledged it.",
			Buckets: []float64{.001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alumini_collector_produce_failures_total",
			Help: "Events Kafka did not acknowledge in time (answered 503).",
		}),
	}
	reg.MustRegister(p.latency, p.failures)
	return p
}

// Publish blocks until Kafka acknowledged msgs or the ack timeout passed.
func (p *Publisher) Publish(ctx context.Context, msgs ...kafka.Message) error {
	ctx, cancel := context.WithTimeout(ctx, p.ackTimeout)
	defer cancel()
	start := time.Now()
	err := p.w.WriteMessages(ctx, msgs...)
	p.latency.Observe(time.Since(start).Seconds())
	if err != nil {
		p.failures.Add(float64(len(msgs)))
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// Ping opens a fresh connection to a broker and asks for its API
// versions: the readiness check of the producer. It does not go through
// kafka-go's shared transport, which answers metadata requests from its
// cache and so keeps saying yes for a while after the brokers went away.
func (p *Publisher) Ping(ctx context.Context) error {
	var errs []error
	for _, b := range strings.Split(p.w.Addr.String(), ",") {
		d := kafka.Dialer{Timeout: 2 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", strings.TrimSpace(b))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		_, err = conn.ApiVersions()
		if cerr := conn.Close(); cerr != nil && err == nil {
			err = cerr
		}
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("broker %s: %w", b, err))
	}
	return fmt.Errorf("no kafka broker answers: %w", errors.Join(errs...))
}

// Close flushes what the writer holds and closes its connections.
func (p *Publisher) Close() error { return p.w.Close() }

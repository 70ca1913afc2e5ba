// Package publish writes raw hits to Kafka and reports success only once
// the brokers acknowledged them.
package publish

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/metadata"
)

// ErrUnavailable means Kafka did not acknowledge in time; the caller answers
// 503 so the sender retries with the same event id.
var ErrUnavailable = errors.New("kafka did not acknowledge the event in time")

// Config tunes the producer.
type Config struct {
	Addr  net.Addr
	Topic string
	// Transport carries TLS and SASL (kafkaconf); nil: plaintext.
	Transport *kafka.Transport
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
	window     atomic.Pointer[ackWindow]
	latency    prometheus.Histogram
	failures   prometheus.Counter
}

func transport(t *kafka.Transport) kafka.RoundTripper {
	if t == nil {
		return kafka.DefaultTransport
	}
	return t
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
			Transport:    &metadataCache{RoundTripper: transport(cfg.Transport), ttl: time.Second},
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
	start := time.Now()
	// A caller that already gave up gets its own reason, and nothing is
	// written for it: kafka-go would otherwise try, and report whichever
	// failure came first.
	if err := ctx.Err(); err != nil {
		p.failures.Add(float64(len(msgs)))
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if ctx.Done() == nil {
		ctx = p.ackContext(start)
	} else {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.ackTimeout)
		defer cancel()
	}
	err := p.w.WriteMessages(ctx, msgs...)
	p.latency.Observe(time.Since(start).Seconds())
	if err != nil {
		p.failures.Add(float64(len(msgs)))
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// ackWindowWidth is how finely ack deadlines are shared (see ackContext).
const ackWindowWidth = 20 * time.Millisecond

// ackWindow is the deadline context shared by the calls that start within
// one window of ackWindowWidth.
type ackWindow struct {
	index  int64 // start time / ackWindowWidth
	ctx    context.Context
	cancel context.CancelFunc // never called: the context ends at its deadline
}

// ackContext returns a context that ends between ackTimeout and ackTimeout
// plus ackWindowWidth after now. Calls in the same window share it: a
// context and timer of its own for every request was a few percent of a
// single-event request's CPU, and a deadline 20 ms later matters to no one.
func (p *Publisher) ackContext(now time.Time) context.Context {
	index := now.UnixNano() / int64(ackWindowWidth)
	if w := p.window.Load(); w != nil && w.index == index {
		return w.ctx
	}
	w := &ackWindow{index: index}
	end := time.Unix(0, (index+1)*int64(ackWindowWidth))
	w.ctx, w.cancel = context.WithDeadline(context.Background(), end.Add(p.ackTimeout))
	p.window.Store(w) // a racing call may store its own: both are right
	return w.ctx
}

// metadataCache answers the writer's metadata requests for one topic from
// a copy at most ttl old. kafka-go's Writer asks for the topic's partition
// count once per message (WriteMessages calls Writer.partitions in its
// loop), and even from kafka.Transport's own cache each answer is a
// filtered copy of the cluster's metadata: a tenth of the collector's CPU
// and allocations on batches. Partition counts change only when an
// operator adds partitions; a second's delay in noticing is nothing, while
// errors are never cached and produce requests always go through.
type metadataCache struct {
	kafka.RoundTripper
	ttl     time.Duration
	current atomic.Pointer[cachedMetadata]
}

type cachedMetadata struct {
	topic   string
	expires time.Time
	resp    *metadata.Response
}

func (c *metadataCache) RoundTrip(ctx context.Context, addr net.Addr, req kafka.Request) (kafka.Response, error) {
	m, ok := req.(*metadata.Request)
	if !ok || len(m.TopicNames) != 1 || m.AllowAutoTopicCreation {
		return c.RoundTripper.RoundTrip(ctx, addr, req)
	}
	now := time.Now()
	if e := c.current.Load(); e != nil && e.topic == m.TopicNames[0] && now.Before(e.expires) {
		return e.resp, nil // read-only to the writer: shared safely
	}
	resp, err := c.RoundTripper.RoundTrip(ctx, addr, req)
	if err != nil {
		return nil, err
	}
	if r, ok := resp.(*metadata.Response); ok && len(r.Topics) == 1 && r.Topics[0].ErrorCode == 0 {
		c.current.Store(&cachedMetadata{topic: m.TopicNames[0], expires: now.Add(c.ttl), resp: r})
	}
	return resp, nil
}

// Close flushes what the writer holds and closes its connections.
func (p *Publisher) Close() error { return p.w.Close() }

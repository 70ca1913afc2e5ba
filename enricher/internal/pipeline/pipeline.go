// Package pipeline moves hits through the enricher: it reads the raw topic
// in a consumer group, enriches each hit, writes events (and dead letters)
// and commits the read offsets only after Kafka acknowledged every write.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/enricher/internal/enrich"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// Config tunes the loop.
type Config struct {
	Brokers         []string
	GroupID         string
	RawTopic        string
	EnrichedTopic   string
	DeadLetterTopic string
	// MaxBatch bounds how many hits are read before they are written out.
	MaxBatch int
	// MaxWait bounds how long a partial batch waits for more hits.
	MaxWait time.Duration
}

// Pipeline is one enricher's consume-enrich-produce loop.
type Pipeline struct {
	cfg      Config
	enricher *enrich.Enricher
	log      *zap.Logger
	reader   *kafka.Reader
	events   *kafka.Writer
	dead     *kafka.Writer

	in         prometheus.Counter
	out        prometheus.Counter
	deadLetter *prometheus.CounterVec
	retries    prometheus.Counter
	batchTime  prometheus.Histogram

	commitFailures prometheus.Counter
}

// New connects a pipeline; metrics are registered on reg.
func New(cfg Config, e *enrich.Enricher, log *zap.Logger, reg prometheus.Registerer) *Pipeline {
	writer := func(topic string) *kafka.Writer {
		return &kafka.Writer{
			Addr:     kafka.TCP(cfg.Brokers...),
			Topic:    topic,
			Balancer: &kafka.Murmur2Balancer{},
			// Offsets are committed after these writes, so they must be
			// on every in-sync replica first.
			RequiredAcks: kafka.RequireAll,
			// Whole batches are written at once: do not wait for more.
			BatchSize:    cfg.MaxBatch,
			BatchTimeout: time.Millisecond,
			Compression:  kafka.Lz4,
		}
	}
	p := &Pipeline{
		cfg:      cfg,
		enricher: e,
		log:      log,
		reader: kafka.NewReader(kafka.ReaderConfig{
			Brokers: cfg.Brokers,
			GroupID: cfg.GroupID,
			Topic:   cfg.RawTopic,
			// A new group starts at the oldest hit: nothing accepted is skipped.
			StartOffset: kafka.FirstOffset,
			// Commits are explicit and synchronous, after the writes.
			CommitInterval: 0,
			MaxWait:        250 * time.Millisecond,
		}),
		events: writer(cfg.EnrichedTopic),
		dead:   writer(cfg.DeadLetterTopic),
		in: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alumini_enricher_events_in_total", Help: "Raw hits read from Kafka.",
		}),
		out: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alumini_enricher_events_out_total", Help: "Enriched events acknowledged by Kafka.",
		}),
		deadLetter: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alumini_enricher_dead_letters_total", Help: "Hits sent to the dead-letter topic, by reason.",
		}, []string{"reason"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alumini_enricher_write_retries_total", Help: "Batch writes to Kafka that failed and were retried.",
		}),
		commitFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alumini_enricher_commit_failures_total", Help: "Offset commits that failed after the writes (the batch is replayed).",
		}),
		batchTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "alumini_enricher_batch_duration_seconds", Help: "Time to enrich, write and commit one batch.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 10),
		}),
	}
	reg.MustRegister(p.in, p.out, p.deadLetter, p.retries, p.batchTime, p.commitFailures)
	return p
}

// Run processes batches until ctx ends, then finishes the batch in hand.
func (p *Pipeline) Run(ctx context.Context) error {
	for {
		batch, err := p.fetch(ctx)
		if len(batch) > 0 {
			// The batch is finished even when ctx ended meanwhile: its hits
			// are read, and committing them now saves a replay.
			if perr := p.process(batch); perr != nil {
				return perr
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("reading %s: %w", p.cfg.RawTopic, err)
		}
	}
}

// fetch blocks for the first message, then gathers more for up to MaxWait.
func (p *Pipeline) fetch(ctx context.Context) ([]kafka.Message, error) {
	first, err := p.reader.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	batch := []kafka.Message{first}
	wait, cancel := context.WithTimeout(ctx, p.cfg.MaxWait)
	defer cancel()
	for len(batch) < p.cfg.MaxBatch {
		m, err := p.reader.FetchMessage(wait)
		if err != nil {
			if ctx.Err() != nil {
				return batch, ctx.Err()
			}
			return batch, nil // MaxWait passed
		}
		batch = append(batch, m)
	}
	return batch, nil
}

func (p *Pipeline) process(batch []kafka.Message) error {
	start := time.Now()
	p.in.Add(float64(len(batch)))
	events := make([]kafka.Message, 0, len(batch))
	var dead []kafka.Message
	for _, m := range batch {
		out, err := p.enrichOne(m)
		if err != nil {
			reason := "decode_error"
			if errors.Is(err, enrich.ErrUnknownClient) {
				reason = "unknown_client"
			}
			dl, derr := deadLetter(m, reason, err)
			if derr != nil {
				return derr
			}
			p.deadLetter.WithLabelValues(reason).Inc()
			dead = append(dead, dl)
			continue
		}
		events = append(events, out)
	}
	if err := p.write(p.events, events); err != nil {
		return err
	}
	if err := p.write(p.dead, dead); err != nil {
		return err
	}
	p.out.Add(float64(len(events)))
	p.commit(batch)
	p.batchTime.Observe(time.Since(start).Seconds())
	return nil
}

func (p *Pipeline) enrichOne(m kafka.Message) (kafka.Message, error) {
	var hit aluminiv1.RawHit
	if err := proto.Unmarshal(m.Value, &hit); err != nil {
		return kafka.Message{}, fmt.Errorf("decoding raw hit: %w", err)
	}
	ev, err := p.enricher.Enrich(&hit)
	if err != nil {
		return kafka.Message{}, err
	}
	value, err := proto.Marshal(ev)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encoding event: %w", err)
	}
	key := ev.ClientId + ":" + strconv.FormatUint(ev.VisitorId, 16)
	return kafka.Message{Key: []byte(key), Value: value}, nil
}

// deadLetter wraps a record that cannot be enriched. A raw hit that still
// decodes loses its IP address first: the dead-letter topic is kept longer
// and read by people.
func deadLetter(m kafka.Message, reason string, cause error) (kafka.Message, error) {
	original := m.Value
	var hit aluminiv1.RawHit
	if proto.Unmarshal(m.Value, &hit) == nil && len(hit.Ip) > 0 {
		hit.Ip = nil
		b, err := proto.Marshal(&hit)
		if err != nil {
			return kafka.Message{}, fmt.Errorf("encoding dead letter: %w", err)
		}
		original = b
	}
	dl := &aluminiv1.DeadLetter{
		Reason: reason, Error: cause.Error(), Stage: "enricher",
		SourceTopic: m.Topic, SourcePartition: int32(m.Partition), SourceOffset: m.Offset,
		Original: original, FailedAtMs: time.Now().UnixMilli(),
	}
	b, err := proto.Marshal(dl)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encoding dead letter: %w", err)
	}
	return kafka.Message{Key: m.Key, Value: b}, nil
}

// write retries until Kafka takes msgs. It does not give up on its own:
// skipping would lose hits, and the consumer group moves the partitions to
// another instance if this one is stopped.
func (p *Pipeline) write(w *kafka.Writer, msgs []kafka.Message) error {
	backoff := 100 * time.Millisecond
	for attempt := 0; len(msgs) > 0; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := w.WriteMessages(ctx, msgs...)
		cancel()
		if err == nil {
			return nil
		}
		p.retries.Inc()
		p.log.Warn("writing to kafka failed; retrying", zap.String("topic", w.Topic), zap.Int("records", len(msgs)), zap.Int("attempt", attempt+1), zap.Error(err))
		time.Sleep(backoff)
		backoff = min(backoff*2, 5*time.Second)
	}
	return nil
}

func (p *Pipeline) commit(batch []kafka.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.reader.CommitMessages(ctx, batch...); err != nil {
		// The writes are done; a failed commit (a rebalance took the
		// partition away, say) only means a replay, which keeps event ids,
		// so storage deduplicates it. Not a reason to stop.
		p.log.Warn("committing offsets failed; the batch will be replayed", zap.Int("records", len(batch)), zap.Error(err))
		p.commitFailures.Inc()
	}
}

// Close leaves the consumer group and flushes the writers.
func (p *Pipeline) Close() error {
	return errors.Join(p.reader.Close(), p.events.Close(), p.dead.Close())
}

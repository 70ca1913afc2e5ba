// Package pipeline moves hits through the enricher: it reads the raw topic
// in a consumer group, enriches each hit, writes events (and dead letters)
// and commits the read offsets only after Kafka acknowledged every write.
package pipeline

import (
	"bytes"
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
	"github.com/aluminiapp/pipeline/enricher/internal/session"
	"github.com/aluminiapp/pipeline/lib/kafkaconf"
	"github.com/aluminiapp/pipeline/lib/outage"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
	"github.com/aluminiapp/pipeline/proto/redact"
)

// Config tunes the loop.
type Config struct {
	Brokers []string
	// Transport and Dialer carry TLS and SASL (kafkaconf); nil: plaintext.
	Transport       kafka.RoundTripper
	Dialer          *kafka.Dialer
	GroupID         string
	RawTopic        string
	EnrichedTopic   string
	DeadLetterTopic string
	// MaxBatch bounds how many hits are read before they are written out.
	MaxBatch int
	// MaxWait bounds how long a partial batch waits for more hits.
	MaxWait time.Duration
	// SessionTimeout is how long the group waits for a silent member
	// before moving its partitions (see kafkaconf.GroupTimings). Default 10s.
	SessionTimeout time.Duration
	// Kafka tracks outages (one log line per change, metrics, readiness);
	// nil: a tracker of its own, unregistered.
	Kafka *outage.Dependency
	// Ping asks a broker whether Kafka answers: after a read failed, an
	// idle topic gives no record to show that Kafka is back. Nil: only a
	// record does.
	Ping func(context.Context) error
}

// Pipeline is one enricher's consume-enrich-produce loop.
type Pipeline struct {
	cfg      Config
	enricher *enrich.Enricher
	sessions *session.Tracker
	log      *zap.Logger
	reader   *kafka.Reader
	events   *kafka.Writer
	dead     *kafka.Writer

	in         prometheus.Counter
	out        prometheus.Counter
	dropped    *prometheus.CounterVec
	deadLetter *prometheus.CounterVec
	retries    prometheus.Counter
	batchTime  prometheus.Histogram
	stageTime  *prometheus.HistogramVec
	lag        *prometheus.GaugeVec

	commitFailures prometheus.Counter
}

// Stages whose time is measured, in order.
const (
	stageDecode  = "decode"
	stageEnrich  = "enrich"
	stageSession = "session"
	stageEncode  = "encode"
	stageWrite   = "write"
	stageCommit  = "commit"
)

// Reasons of the dropped and dead-letter counters.
const (
	dropBot             = "bot"
	reasonDecode        = "decode_error"
	reasonUnknownClient = "unknown_client"
	reasonEnrich        = "enrich_error"
)

// New connects a pipeline; metrics are registered on reg.
func New(cfg Config, e *enrich.Enricher, sessions *session.Tracker, log *zap.Logger, reg prometheus.Registerer) *Pipeline {
	writer := func(topic string) *kafka.Writer {
		return &kafka.Writer{
			Addr:      kafka.TCP(cfg.Brokers...),
			Transport: cfg.Transport,
			Topic:     topic,
			Balancer:  &kafka.Murmur2Balancer{},
			// Offsets are committed after these writes, so they must be
			// on every in-sync replica first.
			RequiredAcks: kafka.RequireAll,
			// Whole batches are written at once: do not wait for more.
			BatchSize:    cfg.MaxBatch,
			BatchTimeout: time.Millisecond,
			Compression:  kafka.Lz4,
		}
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 10 * time.Second
	}
	if cfg.Kafka == nil {
		cfg.Kafka = outage.NewMonitor(log, prometheus.NewRegistry()).Dependency("kafka")
	}
	heartbeat, rebalance, joinBackoff := kafkaconf.GroupTimings(cfg.SessionTimeout)
	p := &Pipeline{
		cfg:      cfg,
		enricher: e,
		sessions: sessions,
		log:      log,
		reader: kafka.NewReader(kafka.ReaderConfig{
			Brokers: cfg.Brokers,
			Dialer:  cfg.Dialer,
			GroupID: cfg.GroupID,
			Topic:   cfg.RawTopic,
			// A new group starts at the oldest hit: nothing accepted is skipped.
			StartOffset: kafka.FirstOffset,
			// Commits are explicit and synchronous, after the writes.
			CommitInterval: 0,
			MaxWait:        250 * time.Millisecond,
			// See kafkaconf.GroupTimings: a crashed member's partitions move within
			// the session timeout, a stopped one's at once (Close leaves
			// the group).
			SessionTimeout:    cfg.SessionTimeout,
			HeartbeatInterval: heartbeat,
			RebalanceTimeout:  rebalance,
			JoinGroupBackoff:  joinBackoff,
			// Outages are logged once by Run; kafka-go's own lines, one per
			// try, go to debug.
			ErrorLogger: kafka.LoggerFunc(log.Sugar().Named("kafka-reader").Debugf),
		}),
		events: writer(cfg.EnrichedTopic),
		dead:   writer(cfg.DeadLetterTopic),
		in: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alumini_enricher_events_in_total", Help: "Raw hits read from Kafka.",
		}),
		out: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alumini_enricher_events_out_total", Help: "Enriched events acknowledged by Kafka.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alumini_enricher_dropped_total", Help: "Hits dropped on purpose, by reason (bot: the client drops bot traffic).",
		}, []string{"reason"}),
		stageTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "alumini_enricher_stage_duration_seconds", Help: "Time one batch spent in each stage (decode, enrich, session, encode, write, commit).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 3, 10),
		}, []string{"stage"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "alumini_enricher_consumer_lag_records", Help: "Raw hits behind the end of each partition, as of the last batch read from it.",
		}, []string{"partition"}),
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
	// Every known label exists at zero from the start: an alert on
	// increase() or a dashboard rate cannot see the first increment of a
	// series that appears with it.
	p.dropped.WithLabelValues(dropBot)
	for _, r := range []string{reasonDecode, reasonUnknownClient, reasonEnrich} {
		p.deadLetter.WithLabelValues(r)
	}
	for _, s := range []string{stageDecode, stageEnrich, stageSession, stageEncode, stageWrite, stageCommit} {
		p.stageTime.WithLabelValues(s)
	}
	uaHits := func() float64 { h, _ := e.UACacheStats(); return float64(h) }
	uaMisses := func() float64 { _, m := e.UACacheStats(); return float64(m) }
	reg.MustRegister(p.in, p.out, p.dropped, p.deadLetter, p.retries, p.batchTime, p.stageTime, p.lag, p.commitFailures,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "alumini_enricher_ua_cache_hits_total", Help: "User-agent parses answered by the cache.",
		}, uaHits),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "alumini_enricher_ua_cache_misses_total", Help: "User-agent parses that ran the parser.",
		}, uaMisses),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "alumini_enricher_ua_cache_hit_ratio", Help: "Share of user-agent parses answered by the cache since start.",
		}, func() float64 {
			h, m := uaHits(), uaMisses()
			if h+m == 0 {
				return 0
			}
			return h / (h + m)
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "alumini_enricher_late_hits_total", Help: "Hits that arrived after their day's salt was destroyed and got a visitor id under the current day's salt.",
		}, func() float64 { return float64(e.Late()) }),
	)
	return p
}

// Run processes batches until ctx ends, then finishes the batch in hand.
// Kafka being unreachable is waited out: kafka-go's reader reconnects by
// itself, and Run keeps asking it, with backoff, until hits come again.
func (p *Pipeline) Run(ctx context.Context) error {
	var backoff outage.Backoff
	down := false
	for {
		fetchCtx, cancel := ctx, context.CancelFunc(func() {})
		if down {
			fetchCtx, cancel = context.WithTimeout(ctx, downRecheck)
		}
		batch, err := p.fetch(fetchCtx)
		cancel()
		if len(batch) > 0 {
			// The batch is finished even when ctx ended meanwhile: its hits
			// are read, and committing them now saves a replay.
			if perr := p.process(batch); perr != nil {
				return perr
			}
		}
		switch {
		case err == nil || (down && fetchCtx.Err() != nil && p.cfg.Ping != nil && p.cfg.Ping(ctx) == nil):
			// Records came, or none did and a broker answers.
			p.cfg.Kafka.Succeeded()
			backoff.Reset()
			down = false
		case ctx.Err() != nil:
			return nil
		case down && fetchCtx.Err() != nil:
			// Quiet, and no broker answers yet: look again.
		default:
			down = true
			p.cfg.Kafka.Failed("reading "+p.cfg.RawTopic, err)
			if !backoff.Wait(ctx) {
				return nil
			}
		}
	}
}

// downRecheck is how often Run looks whether Kafka is back while no
// record comes.
const downRecheck = 2 * time.Second

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

// stageClock adds up the time of each stage over a batch.
type stageClock struct {
	last  time.Time
	spent map[string]time.Duration
}

func (c *stageClock) mark(stage string) {
	now := time.Now()
	c.spent[stage] += now.Sub(c.last)
	c.last = now
}

func (p *Pipeline) process(batch []kafka.Message) error {
	start := time.Now()
	clock := &stageClock{last: start, spent: map[string]time.Duration{}}
	p.in.Add(float64(len(batch)))
	events := make([]kafka.Message, 0, len(batch))
	var dead []kafka.Message
	for _, m := range batch {
		out, err := p.enrichOne(m, clock)
		switch {
		case errors.Is(err, enrich.ErrBot):
			p.dropped.WithLabelValues(dropBot).Inc()
			p.sessions.Skip(int32(m.Partition), m.Offset)
			continue
		case errors.Is(err, errSessionState):
			// Kafka is unreachable for the state: stop, so that the
			// batch is replayed rather than sessions guessed.
			return err
		case err != nil:
			reason := reasonEnrich
			switch {
			case errors.Is(err, errDecode):
				reason = reasonDecode
			case errors.Is(err, enrich.ErrUnknownClient):
				reason = reasonUnknownClient
			}
			dl, derr := deadLetter(m, reason, err)
			if derr != nil {
				return derr
			}
			p.deadLetter.WithLabelValues(reason).Inc()
			p.sessions.Skip(int32(m.Partition), m.Offset)
			dead = append(dead, dl)
			continue
		}
		events = append(events, out)
	}
	clock.mark(stageEncode)
	if err := p.write(p.events, events); err != nil {
		return err
	}
	if err := p.write(p.dead, dead); err != nil {
		return err
	}
	if err := p.flushSessions(); err != nil {
		return err
	}
	clock.mark(stageWrite)
	p.out.Add(float64(len(events)))
	p.commit(batch)
	clock.mark(stageCommit)
	for stage, d := range clock.spent {
		p.stageTime.WithLabelValues(stage).Observe(d.Seconds())
	}
	for _, m := range batch {
		if m.HighWaterMark > 0 {
			p.lag.WithLabelValues(strconv.Itoa(m.Partition)).Set(float64(max(m.HighWaterMark-m.Offset-1, 0)))
		}
	}
	p.batchTime.Observe(time.Since(start).Seconds())
	return nil
}

var (
	errDecode       = errors.New("decoding raw hit")
	errSessionState = errors.New("session state")
)

func (p *Pipeline) enrichOne(m kafka.Message, clock *stageClock) (kafka.Message, error) {
	var hit aluminiv1.RawHit
	if err := proto.Unmarshal(m.Value, &hit); err != nil {
		return kafka.Message{}, fmt.Errorf("%w: %w", errDecode, err)
	}
	clock.mark(stageDecode)
	ev, err := p.enricher.Enrich(&hit)
	clock.mark(stageEnrich)
	if err != nil {
		return kafka.Message{}, err
	}
	key := ev.ClientId + ":" + strconv.FormatUint(ev.VisitorId, 16)
	partition := int32(m.Partition)
	if enrich.CountsOnly(ev) {
		// A child-directed client's event is its own visit: no state is
		// kept about anyone.
		p.sessions.Skip(partition, m.Offset)
	} else {
		// Loading a partition's state needs Kafka; it is waited for like the
		// writes, so sessions are never guessed.
		if err := p.cfg.Kafka.Retry(context.Background(), "loading session state", func(ctx context.Context) error {
			return p.sessions.Prepare(ctx, partition, m.Offset)
		}); err != nil {
			return kafka.Message{}, fmt.Errorf("%w: %w", errSessionState, err)
		}
		s := p.sessions.Apply(partition, m.Offset, key, ev.EventId, ev.TimestampMs, enrich.SessionSource(ev))
		ev.SessionId, ev.IsNewVisitor, ev.PreviousVisitMs = s.SessionID, s.NewVisitor, s.PreviousVisitMs
	}
	clock.mark(stageSession)
	value, err := proto.Marshal(ev)
	clock.mark(stageEncode)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encoding event: %w", err)
	}
	// Keyed by client and event id: every copy of an event, whichever
	// visitor it was given, reaches the one partition where the sinker
	// keeps the first (sinker/internal/copies).
	return kafka.Message{Key: []byte(ev.ClientId + ":" + ev.EventId), Value: value}, nil
}

// flushSessions retries like write: the state must be in Kafka before the
// offsets move past the hits that changed it.
func (p *Pipeline) flushSessions() error {
	return p.cfg.Kafka.Retry(context.Background(), "writing session state", func(context.Context) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := p.sessions.Flush(ctx)
		if err != nil {
			p.retries.Inc()
		}
		return err
	})
}

// deadLetter wraps a record that cannot be enriched. The raw hit loses its
// IP address first, whether or not it decodes (the wire format is edited,
// not the message): the dead-letter topic is kept longer and read by
// people. Its key keeps only the client: the rest of a raw key is a hash
// of IP and user agent, and the user agent is in the hit.
func deadLetter(m kafka.Message, reason string, cause error) (kafka.Message, error) {
	original, _ := redact.Without(m.Value, rawHitIPField)
	dl := &aluminiv1.DeadLetter{
		Reason: reason, Error: cause.Error(), Stage: "enricher",
		SourceTopic: m.Topic, SourcePartition: int32(m.Partition), SourceOffset: m.Offset,
		Original: original, FailedAtMs: time.Now().UnixMilli(),
	}
	b, err := proto.Marshal(dl)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encoding dead letter: %w", err)
	}
	key, _, _ := bytes.Cut(m.Key, []byte(":"))
	return kafka.Message{Key: key, Value: b}, nil
}

// rawHitIPField is RawHit.ip's field number.
var rawHitIPField = (&aluminiv1.RawHit{}).ProtoReflect().Descriptor().Fields().ByName("ip").Number()

// write retries until Kafka takes msgs. It does not give up on its own:
// skipping would lose hits, and the consumer group moves the partitions to
// another instance if this one is stopped.
func (p *Pipeline) write(w *kafka.Writer, msgs []kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	return p.cfg.Kafka.Retry(context.Background(), "writing to "+w.Topic, func(context.Context) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := w.WriteMessages(ctx, msgs...)
		if err != nil {
			p.retries.Inc()
		}
		return err
	})
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

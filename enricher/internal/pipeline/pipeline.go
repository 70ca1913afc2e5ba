// Package pipeline moves hits through the enricher: it reads the raw topic
// in a consumer group, enriches each hit, writes events (and dead letters)
// and commits the read offsets only after Kafka acknowledged every write
// and the session state the hits changed.
//
// The stages overlap: the partitions are fetched in parallel, a whole
// fetch at a time (lib/kafkagroup); Workers goroutines enrich, each for
// its own share of the partitions, so that a partition's hits are
// enriched in order; each worker's batch is written while the worker
// enriches the next one; and offsets are committed on a goroutine of
// their own while the next batches are written.
package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/enricher/internal/enrich"
	"github.com/aluminiapp/pipeline/enricher/internal/session"
	"github.com/aluminiapp/pipeline/lib/kafkagroup"
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
	// Workers is how many goroutines enrich, each for the partitions p
	// with p % Workers its number, each with a batch being written
	// behind the one it fills. Default GOMAXPROCS.
	Workers int
	// FetchMaxBytes bounds the record bytes of one fetch of one
	// partition (lib/kafkagroup; default 1 MiB).
	FetchMaxBytes int
	// Kafka tracks outages (one log line per change, metrics, readiness);
	// nil: a tracker of its own, unregistered.
	Kafka *outage.Dependency
}

// Pipeline is one enricher's consume-enrich-produce loop.
type Pipeline struct {
	cfg      Config
	enricher *enrich.Enricher
	sessions *session.Tracker
	log      *zap.Logger
	reader   *kafkagroup.Reader
	events   *producer
	dead     *producer
	// transport carries the producers' connections, closed by Close.
	transport kafka.RoundTripper
	lagGauges *kafkagroup.Lag // used by Run's fetching loop only

	in         prometheus.Counter
	out        prometheus.Counter
	dropped    *prometheus.CounterVec
	deadLetter *prometheus.CounterVec
	retries    prometheus.Counter
	batchTime  prometheus.Histogram
	stageTime  *prometheus.HistogramVec
	stageObs   [stages]prometheus.Observer
	lag        *prometheus.GaugeVec

	commitFailures prometheus.Counter
}

// Stages whose time is measured, in order.
const (
	stageDecode = iota
	stageEnrich
	stageSession
	stageEncode
	stageWrite
	stageCommit
	stages
)

// stageNames are the stage label values.
var stageNames = [stages]string{"decode", "enrich", "session", "encode", "write", "commit"}

// Reasons of the dropped and dead-letter counters.
const (
	dropBot             = "bot"
	reasonDecode        = "decode_error"
	reasonUnknownClient = "unknown_client"
	reasonEnrich        = "enrich_error"
)

// New joins the consumer group; metrics are registered on reg.
func New(cfg Config, e *enrich.Enricher, sessions *session.Tracker, log *zap.Logger, reg prometheus.Registerer) (*Pipeline, error) {
	transport := cfg.Transport
	if transport == nil {
		// As main sets it: metadata read every second, so a write refused
		// by a partition's former leader finds the new one within about
		// a second.
		transport = &kafka.Transport{MetadataTTL: time.Second}
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 10 * time.Second
	}
	if cfg.Kafka == nil {
		cfg.Kafka = outage.NewMonitor(log, prometheus.NewRegistry()).Dependency("kafka")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	// A new group starts at the oldest hit: nothing accepted is skipped.
	// A crashed member's partitions move within the session timeout, a
	// stopped one's at once (Close leaves the group); see
	// kafkaconf.GroupTimings. Fetch errors are retried inside, and
	// reported (once per outage) through cfg.Kafka.
	reader, err := kafkagroup.New(kafkagroup.Config{
		Brokers: cfg.Brokers, Topic: cfg.RawTopic, GroupID: cfg.GroupID, Dialer: cfg.Dialer, ClientID: "alumini-enricher",
		SessionTimeout: cfg.SessionTimeout, FetchMaxBytes: cfg.FetchMaxBytes,
		// An idle partition's fetch is answered within this; shorter
		// only costs idle round trips.
		FetchMaxWait: 250 * time.Millisecond, Kafka: cfg.Kafka,
		// A fetch of LZ4-compressed hits holds thousands of them, several
		// batches' worth: a short queue keeps the workers fed, and a long
		// one only holds memory.
		QueuedFetches: 4,
	}, log)
	if err != nil {
		return nil, err
	}
	p := &Pipeline{
		cfg:      cfg,
		enricher: e,
		sessions: sessions,
		log:      log,
		reader:   reader,
		// Offsets are committed after these writes, so they are on every
		// in-sync replica first (acks=all).
		events:    newProducer(kafka.TCP(cfg.Brokers...), transport, cfg.EnrichedTopic),
		dead:      newProducer(kafka.TCP(cfg.Brokers...), transport, cfg.DeadLetterTopic),
		transport: transport,
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
			Name: "alumini_enricher_batch_duration_seconds", Help: "Time to enrich and write one batch (its commit follows apart: stage commit).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 10),
		}),
	}
	// Every known label exists at zero from the start: an alert on
	// increase() or a dashboard rate cannot see the first increment of a
	// series that appears with it.
	p.lagGauges = kafkagroup.NewLag(p.lag)
	p.dropped.WithLabelValues(dropBot)
	for _, r := range []string{reasonDecode, reasonUnknownClient, reasonEnrich} {
		p.deadLetter.WithLabelValues(r)
	}
	for i, s := range stageNames {
		p.stageObs[i] = p.stageTime.WithLabelValues(s)
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
	return p, nil
}

// Run processes hits until ctx ends, then finishes the batches in hand:
// their writes complete and their offsets are committed before it
// returns. Kafka being unreachable is waited out: the reader reconnects
// by itself and the writes retry, both reporting the outage through
// cfg.Kafka. Run returns an error only when the pipeline cannot go on
// without guessing (the session state cannot be read).
func (p *Pipeline) Run(ctx context.Context) error {
	// Commits outlive ctx: the batches in hand are committed at shutdown.
	commits := kafkagroup.NewCommitter(context.WithoutCancel(ctx), p.commitOffsets, func(err error, partitions int) {
		// The writes are done; a failed commit (a rebalance took the
		// partition away, say) only means a replay, which keeps event ids,
		// so storage deduplicates it. Not a reason to stop.
		p.log.Warn("committing offsets failed; the hits will be replayed", zap.Int("partitions", partitions), zap.Error(err))
		p.commitFailures.Inc()
	})
	fetchCtx, stopFetching := context.WithCancel(ctx)
	defer stopFetching()
	var (
		failOnce sync.Once
		failErr  error
	)
	workers := make([]chan []kafka.Message, p.cfg.Workers)
	var wg sync.WaitGroup
	for w := range workers {
		// Room for a fetch beside the one the worker enriches.
		workers[w] = make(chan []kafka.Message, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.work(workers[w], commits); err != nil {
				failOnce.Do(func() { failErr = err })
				stopFetching()
			}
		}()
	}
	for {
		msgs, err := p.reader.FetchBatch(fetchCtx)
		if err != nil {
			break // ctx ended, a worker failed, or the reader was closed
		}
		p.lagGauges.Set(msgs)
		// The reader reuses msgs at its next fetch; the worker keeps them.
		// A fetch not handed over at shutdown is replayed by the next owner.
		select {
		case workers[msgs[0].Partition%len(workers)] <- slices.Clone(msgs):
		case <-fetchCtx.Done():
		}
	}
	for _, in := range workers {
		close(in)
	}
	wg.Wait()
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	commits.Stop(stopCtx)
	return failErr
}

// batch is what one worker enriched and hands to its writer.
type batch struct {
	start  time.Time
	hits   int
	events []kafka.Message
	dead   []kafka.Message
	next   map[int]int64 // partition → offset after its last hit here: what the batch commits
	clock  stageClock
}

// partitions are the raw partitions of b's hits.
func (b *batch) partitions() []int32 {
	ps := make([]int32, 0, len(b.next))
	for p := range b.next {
		ps = append(ps, int32(p))
	}
	return ps
}

// work enriches the fetches sent on in, in batches of up to MaxBatch hits
// gathered for up to MaxWait, and hands each batch to a writer of its own
// while it enriches the next one. It returns once in is closed and every
// batch is written, or on an error that must stop the pipeline.
func (p *Pipeline) work(in <-chan []kafka.Message, commits *kafkagroup.Committer) error {
	out := make(chan *batch) // unbuffered: one batch is written while the next fills
	written := make(chan error, 1)
	go func() { written <- p.writeAll(out, commits) }()
	err := p.fill(in, out)
	close(out)
	return errors.Join(err, <-written)
}

// fill enriches what comes on in into batches and sends them on out.
func (p *Pipeline) fill(in <-chan []kafka.Message, out chan<- *batch) error {
	var rest []kafka.Message // hits of the last fetch not enriched yet
	open := true
	for open || len(rest) > 0 {
		if len(rest) == 0 {
			if rest, open = <-in; !open {
				return nil
			}
		}
		b := &batch{start: time.Now(), next: map[int]int64{}}
		timeUp := time.NewTimer(p.cfg.MaxWait)
		for {
			n := min(len(rest), p.cfg.MaxBatch-b.hits)
			if err := p.process(b, rest[:n]); err != nil {
				timeUp.Stop()
				return err
			}
			rest = rest[n:]
			if b.hits >= p.cfg.MaxBatch || !open {
				break
			}
			var more []kafka.Message
			select {
			case more, open = <-in:
			case <-timeUp.C:
			}
			if more == nil {
				break // MaxWait passed, or nothing more comes
			}
			rest = more
		}
		timeUp.Stop()
		out <- b
	}
	return nil
}

// writeAll writes each batch from out (its events and dead letters, then
// the session state its hits changed) and hands its offsets to commits.
// Writes are retried until Kafka takes them; after an error that is not
// retried, later batches are neither written nor committed.
func (p *Pipeline) writeAll(out <-chan *batch, commits *kafkagroup.Committer) error {
	var failed error
	for b := range out {
		if failed != nil {
			continue // replayed by the next owner
		}
		start := time.Now()
		if err := errors.Join(p.write(p.events, b.events), p.write(p.dead, b.dead)); err != nil {
			failed = err
			continue
		}
		if err := p.flushSessions(b.partitions()); err != nil {
			failed = err
			continue
		}
		b.clock.spent[stageWrite] += time.Since(start)
		p.out.Add(float64(len(b.events)))
		commits.Add(b.next)
		for stage, d := range b.clock.spent[:stageCommit] {
			p.stageObs[stage].Observe(d.Seconds())
		}
		p.batchTime.Observe(time.Since(b.start).Seconds())
	}
	return failed
}

// commitOffsets commits through the reader, timed as the commit stage.
func (p *Pipeline) commitOffsets(ctx context.Context, next map[int]int64) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := p.reader.CommitOffsets(ctx, next)
	p.stageObs[stageCommit].Observe(time.Since(start).Seconds())
	return err
}

// stageClock adds up the time of each stage over a batch.
type stageClock struct {
	last  time.Time
	spent [stages]time.Duration
}

func (c *stageClock) mark(stage int) {
	now := time.Now()
	c.spent[stage] += now.Sub(c.last)
	c.last = now
}

// process enriches msgs, hits of one partition in order, into b.
func (p *Pipeline) process(b *batch, msgs []kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	b.clock.last = time.Now()
	p.in.Add(float64(len(msgs)))
	b.hits += len(msgs)
	for _, m := range msgs {
		b.next[m.Partition] = m.Offset + 1
		out, err := p.enrichOne(m, &b.clock)
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
			b.dead = append(b.dead, dl)
			continue
		}
		b.events = append(b.events, out)
	}
	b.clock.mark(stageEncode)
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
	// One allocation, the string itself (the concatenation of a
	// formatted number took two).
	var buf [96]byte
	key := string(strconv.AppendUint(append(append(buf[:0], ev.ClientId...), ':'), ev.VisitorId, 16))
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
	msgKey := make([]byte, 0, len(ev.ClientId)+1+len(ev.EventId))
	msgKey = append(append(append(msgKey, ev.ClientId...), ':'), ev.EventId...)
	return kafka.Message{Key: msgKey, Value: value}, nil
}

// flushSessions retries like write: the state of partitions must be in
// Kafka before their offsets move past the hits that changed it.
func (p *Pipeline) flushSessions(partitions []int32) error {
	return p.cfg.Kafka.Retry(context.Background(), "writing session state", func(context.Context) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := p.sessions.FlushPartitions(ctx, partitions)
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
// A retry writes again only the partitions that failed.
func (p *Pipeline) write(w *producer, msgs []kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	return p.cfg.Kafka.Retry(context.Background(), "writing to "+w.topic, func(context.Context) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		if msgs, err = w.write(ctx, msgs); err != nil {
			p.retries.Inc()
		}
		return err
	})
}

// Close leaves the consumer group and closes the producers' idle
// connections (Run has written everything by then).
func (p *Pipeline) Close() error {
	err := p.reader.Close()
	if t, ok := p.transport.(*kafka.Transport); ok {
		t.CloseIdleConnections()
	}
	return err
}

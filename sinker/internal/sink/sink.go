// Package sink moves enriched events from Kafka into ClickHouse in batches,
// committing Kafka offsets only after ClickHouse accepted the rows.
//
// Delivery is at least once, and storage makes it count once. A batch's
// offsets are committed after its insert succeeded, so a crash, a rebalance
// or a failed commit between the two replays records that are already
// stored. Every event carries an event_id that stays the same across
// retries and replays, and the events table is a ReplacingMergeTree keyed on
// (client_id, toDate(timestamp), event_id): replayed rows collapse into one
// when parts merge, and until then queries count uniqExact(event_id) (or
// read with FINAL), so a replay never doubles a count.
//
// Insert deduplication tokens were considered and left out: a token only
// helps if a replay rebuilds the very same block, which needs batch
// boundaries stored outside Kafka (records from several partitions arrive
// interleaved, and a replay starts wherever the last commit left off), and
// 18.16 has no tokens. Idempotent storage is correct on every server
// version without them; see docs/sinker.md.
//
// A batch that ClickHouse rejects because of its data is split in halves,
// recursively, until the rows it refuses are found; they go to the
// dead-letter topic (reason rejected_by_storage) and the rest is stored.
//
// Memory stays bounded: a batch is capped by rows, bytes and time, and
// while ClickHouse refuses a batch the sink retries it with capped
// exponential backoff while at most one more batch fills.
//
// A record that cannot be stored (it does not decode, or lacks the ids that
// deduplication needs) goes to the dead-letter topic as a DeadLetter and is
// committed with its batch, so its partition keeps moving.
//
// The events of erased visitors (Config.Erased) are dropped before the
// insert, with their offsets committed like the rest: a Kafka replay must
// not store again what an erasure deleted. So are later copies of an event
// (Config.Copies): copies can differ in visitor and visit, and only the
// first one may reach the table.
package sink

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/chschema"
	"github.com/aluminiapp/pipeline/lib/kafkagroup"
	"github.com/aluminiapp/pipeline/lib/outage"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
	"github.com/aluminiapp/pipeline/sinker/internal/faultpoint"
	"github.com/aluminiapp/pipeline/sinker/internal/store"
)

// Stage names the sinker in dead letters.
const Stage = "sinker"

// DropErased is the reason label of events dropped because their visitor
// was erased.
const DropErased = "erased"

// DropCopy is the reason label of events dropped because an earlier
// record of their partition holds the same client and event id.
const DropCopy = "copy"

// Dead-letter reasons.
const (
	ReasonDecodeError  = "decode_error"        // the value is not a proto Event
	ReasonInvalidEvent = "invalid_event"       // no client_id or event_id to store and deduplicate it by, or a time the table cannot hold
	ReasonRejected     = "rejected_by_storage" // ClickHouse refused the row for its data
)

// ErrNotReady is what the readiness check wraps while inserts fail.
var ErrNotReady = errors.New("clickhouse is refusing inserts")

// Reader is the consumer-group side: GroupReader.
type Reader interface {
	// FetchBatch returns the next records of one partition (at least
	// one), in offset order; the slice is valid until the next call.
	FetchBatch(ctx context.Context) ([]kafka.Message, error)
	// CommitOffsets commits the offset of the next record to read, by
	// partition.
	CommitOffsets(ctx context.Context, next map[int]int64) error
}

// Writer is the producer side of a kafka.Writer, for dead letters.
type Writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Store takes a batch of events all or nothing.
type Store interface {
	Insert(ctx context.Context, events []*aluminiv1.Event) error
}

// ErasedSet says which visitors were erased.
type ErasedSet interface {
	Contains(clientID string, visitorID uint64) bool
}

// Config bounds batches and retries, and names the visitors whose events
// are dropped.
type Config struct {
	// A batch is flushed when it holds MaxRows records or MaxBytes of
	// record values, or MaxWait after its first record arrived.
	MaxRows  int
	MaxBytes int
	MaxWait  time.Duration
	// FlushTimeout bounds flushing the last batch at shutdown.
	FlushTimeout time.Duration
	// Retry backoff starts at BackoffMin and doubles up to BackoffMax.
	BackoffMin time.Duration
	BackoffMax time.Duration
	// AttemptTimeout bounds one insert or dead-letter write, so a hung
	// connection turns into a retry.
	AttemptTimeout time.Duration
	// Erased, when not nil, is asked about every decoded event; the events
	// of erased visitors are neither stored nor dead-lettered, but their
	// offsets are committed with the batch.
	Erased ErasedSet
	// Copies, when not nil, is asked about every storable event: a copy
	// of an event that an earlier record of the partition holds is
	// dropped (committed, not stored), so the first copy's fields are the
	// ones stored and counted.
	Copies CopyFilter
	// ClickHouse and Kafka track outages of inserts and dead-letter
	// writes: one log line when one goes down and one when it is back,
	// not one per retry. Nil: trackers of their own, unregistered.
	ClickHouse, Kafka *outage.Dependency
}

// CopyFilter tells the first copy of an event from later ones (see
// package copies).
type CopyFilter interface {
	First(ctx context.Context, partition int, offset int64, clientID, eventID string) (bool, error)
	Skip(ctx context.Context, partition int, offset int64) error
}

// WithDefaults fills the zero retry settings.
func (c Config) WithDefaults() Config {
	if c.FlushTimeout <= 0 {
		c.FlushTimeout = 20 * time.Second
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = 100 * time.Millisecond
	}
	if c.BackoffMax <= 0 {
		// As outage.MaxBackoff: ClickHouse back means inserting (and
		// ready) again within seconds.
		c.BackoffMax = outage.MaxBackoff
	}
	if c.AttemptTimeout <= 0 {
		c.AttemptTimeout = time.Minute
	}
	return c
}

// Sink is the fetch → insert → commit loop of one consumer-group member.
type Sink struct {
	cfg    Config
	reader Reader
	dlq    Writer
	store  Store
	log    *zap.Logger
	m      *metrics

	mu        sync.Mutex
	insertErr error // the last insert failure, nil once an insert succeeded

	// Used only by the goroutine that fills batches.
	sizeHint int             // records in the last batch: the next one's capacity
	lag      *kafkagroup.Lag // consumer lag gauges by partition
	rest     []kafka.Message // records of the last fetch that the last batch had no room for

	// commit hands the offsets of a stored batch to Run's committer.
	commit func(next map[int]int64)
}

// New returns a Sink whose metrics are registered on reg. Dead letters are
// written through dlq.
func New(cfg Config, reader Reader, dlq Writer, store Store, log *zap.Logger, reg prometheus.Registerer) *Sink {
	if cfg.ClickHouse == nil || cfg.Kafka == nil {
		m := outage.NewMonitor(log, prometheus.NewRegistry())
		if cfg.ClickHouse == nil {
			cfg.ClickHouse = m.Dependency("clickhouse")
		}
		if cfg.Kafka == nil {
			cfg.Kafka = m.Dependency("kafka")
		}
	}
	m := newMetrics(reg)
	return &Sink{cfg: cfg.WithDefaults(), reader: reader, dlq: dlq, store: store, log: log, m: m, lag: kafkagroup.NewLag(m.lag)}
}

// Ready is a readiness check: it fails while the last insert failed.
func (s *Sink) Ready(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.insertErr != nil {
		return fmt.Errorf("%w: %w", ErrNotReady, s.insertErr)
	}
	return nil
}

func (s *Sink) setInsertErr(err error) {
	s.mu.Lock()
	s.insertErr = err
	s.mu.Unlock()
}

// batch is what one flush stores and commits.
type batch struct {
	msgs         []kafka.Message // every record fetched, committed together
	bytes        int             // value bytes of msgs
	events       []*aluminiv1.Event
	slab         []aluminiv1.Event // where events live, eventSlab at a time
	eventRecs    []int32           // the index in msgs of each event's record, for dead letters
	eventBytes   int
	dead         []kafka.Message // dead letters to produce
	deadReasons  []string
	deadWritten  bool
	inserted     bool
	firstFetched time.Time
	next         map[int]int64 // partition → offset after its last record in msgs: what the batch commits
}

// Run consumes until ctx is cancelled or fetching fails. Three stages
// overlap: one batch is inserted while the next one fills, and the offsets
// of the batches already stored are committed meanwhile (commits run
// apart, merging what piled up behind a slow commit into one); memory
// holds at most two batches, because the filled batch waits for the
// flusher before the next one starts. On cancellation Run stops fetching,
// flushes the batch the flusher had in hand and then the one being
// filled, within FlushTimeout, commits, and returns nil if that worked. The caller closes the reader, the
// dead-letter writer and the store after Run returned.
func (s *Sink) Run(ctx context.Context) error {
	// flushCtx ends FlushTimeout after ctx, or at once when fetching failed
	// for good (then the flusher's batch is abandoned uncommitted and
	// replayed elsewhere). Not with ctx itself: an insert cancelled half
	// way may still complete on the server after the sinker inserted the
	// batch again, which doubled rows on every shutdown that caught one.
	flushCtx, stopFlusher := context.WithCancel(context.WithoutCancel(ctx))
	defer stopFlusher()
	// (A timer left running when Run returns cancels flushCtx again: harmless.)
	defer context.AfterFunc(ctx, func() { time.AfterFunc(s.cfg.FlushTimeout, stopFlusher) })()
	c := kafkagroup.NewCommitter(flushCtx, s.reader.CommitOffsets, func(err error, partitions int) {
		// The rows are stored; the records come back after a restart or
		// rebalance and are deduplicated then, and the next commit on the
		// same partitions covers these offsets too. Not worth stopping for.
		s.m.commitFailures.Inc()
		s.log.Warn("committing offsets failed; the records will be replayed and deduplicated",
			zap.Int("partitions", partitions), zap.Error(err))
	})
	// The last commit is made after the last flush, before Run returns
	// (the caller then closes the reader), within the flush deadline.
	defer c.Stop(flushCtx)
	s.commit = c.Add
	handoff := make(chan *batch) // unbuffered: the flusher takes one batch at a time
	unfinished := make(chan *batch, 1)
	go func() {
		for b := range handoff {
			// flush retries until it succeeds, so it fails only on cancellation.
			if err := s.flush(flushCtx, b); err != nil {
				unfinished <- b
				return
			}
		}
		unfinished <- nil
	}()

	var (
		last    *batch
		fillErr error
	)
	for fillErr == nil {
		var b *batch
		b, fillErr = s.fill(ctx)
		if fillErr != nil {
			last = b
			break
		}
		select {
		case handoff <- b:
		case <-ctx.Done():
			last, fillErr = b, ctx.Err()
		}
	}
	close(handoff)
	if ctx.Err() == nil {
		// A fatal fetch error: the records in hand are not committed and
		// come back to whichever sinker takes the partitions over.
		stopFlusher()
		<-unfinished
		// The batches stored before are committed still.
		commitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		c.Stop(commitCtx)
		return fillErr
	}
	pending := <-unfinished
	// Shutdown: the flusher finished its batch, or gave it back when
	// FlushTimeout passed; what is left goes within the same deadline.
	// Order matters: the flusher's batch holds earlier offsets than the one
	// being filled.
	flushed := 0
	for _, b := range []*batch{pending, last} {
		if b == nil {
			continue
		}
		if err := s.flush(flushCtx, b); err != nil {
			return fmt.Errorf("flushing the last batches (%d records, replayed on restart): %w", len(b.msgs), err)
		}
		flushed += len(b.msgs)
	}
	s.log.Info("sink stopped", zap.Int("flushed_records", flushed))
	return nil
}

// fill fetches records until the batch is full by rows or bytes, its time
// limit passed, or ctx was cancelled (then it returns ctx's error with the
// records fetched so far).
func (s *Sink) fill(ctx context.Context) (*batch, error) {
	// Sized like the last batch, so a steady stream fills batches without
	// growing (and copying) their slices.
	n := min(s.sizeHint, s.cfg.MaxRows)
	b := &batch{msgs: make([]kafka.Message, 0, n), events: make([]*aluminiv1.Event, 0, n), eventRecs: make([]int32, 0, n)}
	defer func() { s.sizeHint = len(b.msgs) }()
	// fetchCtx is cancelled MaxWait after the first record arrived.
	fetchCtx, timeUp := context.WithCancel(ctx)
	defer timeUp()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for len(b.msgs) < s.cfg.MaxRows && b.bytes < s.cfg.MaxBytes {
		if len(s.rest) == 0 {
			msgs, err := s.reader.FetchBatch(fetchCtx)
			if err != nil {
				if ctx.Err() != nil {
					return b, ctx.Err()
				}
				if fetchCtx.Err() != nil {
					return b, nil // MaxWait passed since the first record.
				}
				return b, fmt.Errorf("fetching from kafka: %w", err)
			}
			s.rest = msgs
			s.lag.Set(msgs)
		}
		if len(b.msgs) == 0 {
			b.firstFetched = time.Now()
			timer = time.AfterFunc(s.cfg.MaxWait, timeUp)
		}
		for len(s.rest) > 0 && len(b.msgs) < s.cfg.MaxRows && b.bytes < s.cfg.MaxBytes {
			m := s.rest[0]
			s.rest = s.rest[1:]
			if err := s.add(ctx, b, m); err != nil {
				return b, err
			}
		}
	}
	return b, nil
}

func (s *Sink) add(ctx context.Context, b *batch, m kafka.Message) error {
	b.msgs = append(b.msgs, m)
	b.bytes += len(m.Value)
	if b.next == nil {
		b.next = map[int]int64{}
	}
	b.next[m.Partition] = max(b.next[m.Partition], m.Offset+1)
	ev := b.newEvent()
	// The decoded strings alias m.Value (the unsafe decoder allocates no
	// string): m stays in the batch, unmodified, as long as ev does, and
	// the driver copies the strings into its own buffers on insert. Half
	// the sinker's decoding time was protobuf-go allocating each string.
	if err := ev.UnmarshalVTUnsafe(m.Value); err != nil {
		b.dropEvent(ev)
		if err := s.skipCopy(ctx, m); err != nil {
			return err
		}
		return s.deadLetter(b, m, ReasonDecodeError, err)
	}
	hasIDs := ev.ClientId != "" && ev.EventId != ""
	var checkErr error
	if hasIDs {
		checkErr = chschema.Check(ev)
	}
	// First, as copies.KafkaLoader counts records when it rebuilds: every
	// storable one, an erased visitor's too.
	if s.cfg.Copies != nil {
		if !hasIDs || checkErr != nil {
			if err := s.cfg.Copies.Skip(ctx, m.Partition, m.Offset); err != nil {
				return fmt.Errorf("deduplicating copies: %w", err)
			}
		} else if first, err := s.cfg.Copies.First(ctx, m.Partition, m.Offset, ev.ClientId, ev.EventId); err != nil {
			return fmt.Errorf("deduplicating copies: %w", err)
		} else if !first {
			b.dropEvent(ev)
			s.m.droppedCopy.Inc()
			return nil
		}
	}
	// Before the validity checks: an erased visitor's invalid event must
	// not reach the dead-letter topic either.
	if s.cfg.Erased != nil && s.cfg.Erased.Contains(ev.ClientId, ev.VisitorId) {
		b.dropEvent(ev)
		s.m.droppedErased.Inc()
		s.log.Debug("dropping an event of an erased visitor", zap.String("client_id", ev.ClientId),
			zap.String("topic", m.Topic), zap.Int("partition", m.Partition), zap.Int64("offset", m.Offset))
		return nil
	}
	if !hasIDs {
		b.dropEvent(ev)
		return s.deadLetter(b, m, ReasonInvalidEvent, errors.New("event has no client_id or no event_id"))
	}
	if err := checkErr; err != nil {
		b.dropEvent(ev)
		if errors.Is(err, chschema.ErrInvalidUTF8) {
			// What proto.Unmarshal refuses; the unsafe decoder leaves it to Check.
			return s.deadLetter(b, m, ReasonDecodeError, err)
		}
		return s.deadLetter(b, m, ReasonInvalidEvent, err)
	}
	b.events = append(b.events, ev)
	b.eventRecs = append(b.eventRecs, int32(len(b.msgs)-1))
	b.eventBytes += len(m.Value)
	return nil
}

// skipCopy moves the copy filter past a record that is no storable event.
func (s *Sink) skipCopy(ctx context.Context, m kafka.Message) error {
	if s.cfg.Copies == nil {
		return nil
	}
	if err := s.cfg.Copies.Skip(ctx, m.Partition, m.Offset); err != nil {
		return fmt.Errorf("deduplicating copies: %w", err)
	}
	return nil
}

// eventSlab is how many events are allocated at once: one allocation
// instead of one per record, and never grown (which would copy events).
const eventSlab = 1024

// newEvent returns a zero event that lives as long as the batch.
func (b *batch) newEvent() *aluminiv1.Event {
	if len(b.slab) == cap(b.slab) {
		b.slab = make([]aluminiv1.Event, 0, eventSlab)
	}
	b.slab = b.slab[:len(b.slab)+1]
	return &b.slab[len(b.slab)-1]
}

// dropEvent gives back the event newEvent returned last, not kept.
func (b *batch) dropEvent(ev *aluminiv1.Event) {
	if n := len(b.slab); n > 0 && &b.slab[n-1] == ev {
		ev.Reset()
		b.slab = b.slab[:n-1]
	}
}

// flush writes the dead letters, inserts the events and commits every
// record of the batch, in that order: offsets are committed only once both
// destinations hold what the records became. A step that already succeeded
// is not repeated when flush is called again after a cancellation.
func (s *Sink) flush(ctx context.Context, b *batch) error {
	if len(b.msgs) == 0 {
		return nil
	}
	if len(b.dead) > 0 && !b.deadWritten {
		err := s.retry(ctx, "dead-letter write", s.cfg.Kafka, s.m.deadLetterRetries, func(ctx context.Context) error {
			return s.dlq.WriteMessages(ctx, b.dead...)
		})
		if err != nil {
			return err
		}
		b.deadWritten = true
		for _, r := range b.deadReasons {
			s.m.deadLetters.WithLabelValues(r).Inc()
		}
	}
	if len(b.events) > 0 && !b.inserted {
		faultpoint.Hit(faultpoint.BeforeInsert)
		if err := s.insertSplitting(ctx, b, b.events, b.eventRecs); err != nil {
			return err
		}
		b.inserted = true
		s.log.Debug("batch inserted", zap.Int("rows", len(b.events)), zap.Int("bytes", b.eventBytes),
			zap.Duration("age", time.Since(b.firstFetched)))
		faultpoint.Hit(faultpoint.AfterInsert)
	}
	s.commit(b.next)
	return nil
}

// insertSplitting inserts events, retrying while ClickHouse is unavailable.
// When ClickHouse rejects them for their data it inserts each half on its
// own, recursively, and dead-letters the single rows it still rejects: a
// batch with k bad rows among n costs about 2k·log2(n) extra inserts, and
// good rows are never held back by bad ones. b.msgs[recs[i]] is the
// record of events[i].
func (s *Sink) insertSplitting(ctx context.Context, b *batch, events []*aluminiv1.Event, recs []int32) error {
	err := s.retry(ctx, "insert", s.cfg.ClickHouse, s.m.insertRetries, func(ctx context.Context) error {
		faultpoint.Arm(faultpoint.DuringInsert)
		start := time.Now()
		err := s.store.Insert(ctx, events)
		s.m.insertDuration.Observe(time.Since(start).Seconds())
		if errors.Is(err, store.ErrRejected) {
			// The server is fine; the data is not. Readiness stays true.
			s.setInsertErr(nil)
			return outage.Permanent(err)
		}
		s.setInsertErr(err)
		return err
	})
	if err == nil {
		s.m.inserts.Inc()
		s.m.rowsInserted.Add(float64(len(events)))
		bytes := 0
		for _, i := range recs {
			bytes += len(b.msgs[i].Value)
		}
		s.m.bytesInserted.Add(float64(bytes))
		s.m.batchRows.Observe(float64(len(events)))
		s.m.lastInsert.SetToCurrentTime()
		return nil
	}
	if !errors.Is(err, store.ErrRejected) {
		return err
	}
	if len(events) == 1 {
		return s.deadLetterNow(ctx, b.msgs[recs[0]], err)
	}
	s.log.Warn("clickhouse rejected a batch for its data; splitting it", zap.Int("rows", len(events)), zap.Error(err))
	s.m.splits.Inc()
	half := len(events) / 2
	if err := s.insertSplitting(ctx, b, events[:half], recs[:half]); err != nil {
		return err
	}
	return s.insertSplitting(ctx, b, events[half:], recs[half:])
}

// retry runs op until it succeeds or ctx ends, waiting BackoffMin, twice
// that, ... up to BackoffMax between attempts. Meanwhile Run fills at most
// one more batch and then waits, which keeps memory bounded while a
// destination is down.
func (s *Sink) retry(ctx context.Context, what string, dep *outage.Dependency, retries prometheus.Counter, op func(context.Context) error) error {
	wait := s.cfg.BackoffMin
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, s.cfg.AttemptTimeout)
		err := op(actx)
		cancel()
		if err == nil {
			dep.Succeeded()
			return nil
		}
		if outage.IsPermanent(err) {
			return errors.Unwrap(err) // the error outage.Permanent marked
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w (gave up: %w)", what, err, ctx.Err())
		}
		retries.Inc()
		dep.Failed(what, err)
		s.log.Debug(what+" failed; retrying", zap.Error(err), zap.Int("attempt", attempt), zap.Duration("backoff", wait))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w (gave up: %w)", what, err, ctx.Err())
		}
		wait = min(2*wait, s.cfg.BackoffMax)
	}
}

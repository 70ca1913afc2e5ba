// Package kafkagroup consumes a topic as a member of a kafka-go consumer
// group a whole fetch at a time, one connection per assigned partition,
// and commits offsets apart from the work on the records (Committer).
package kafkagroup

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/kafkaconf"
	"github.com/aluminiapp/pipeline/lib/outage"
)

// Config configures a Reader.
type Config struct {
	Brokers []string
	Topic   string
	GroupID string
	// Dialer connects to the brokers (TLS, SASL); nil for plain TCP.
	Dialer *kafka.Dialer
	// SessionTimeout is how long the group waits for a silent member before
	// giving its partitions to others: after a crash, that member's records
	// wait this long.
	SessionTimeout time.Duration
	// ClientID names the member to the brokers when Dialer has none.
	// Default "alumini".
	ClientID string
	// FetchMaxBytes is the most record bytes one fetch of one partition
	// returns. Default 1 MiB, Kafka's own default
	// (max.partition.fetch.bytes); larger was slower in the sinker's bench
	// (docs/bench/sinker.md).
	FetchMaxBytes int
	// FetchMinBytes is how many record bytes the broker waits for (up to
	// FetchMaxWait) before it answers a fetch. Fewer, larger fetches cost
	// less CPU per record (each fetch is a request, a response and a hand
	// over); the price is up to FetchMaxWait of latency while traffic is
	// light. Default 1: answer as soon as there is a record.
	FetchMinBytes int
	// FetchMaxWait is how long the broker holds a fetch of a partition
	// that has fewer than FetchMinBytes of new records. Default 500ms: short keeps shutdown quick
	// and costs idle round trips only.
	FetchMaxWait time.Duration
	// Kafka tracks outages: one log line when the brokers go away and one
	// when they are back. Nil: a tracker of its own, unregistered.
	Kafka *outage.Dependency
	// QueuedFetches is how many fetch results (up to FetchMaxBytes each)
	// may wait for FetchBatch across all partitions, on top of the one
	// each partition holds while it waits to hand it over. Default 16.
	// It bounds the reader's memory.
	QueuedFetches int
}

func (c Config) withDefaults() Config {
	if c.Dialer == nil {
		c.Dialer = &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true}
	}
	if c.Dialer.ClientID == "" {
		d := *c.Dialer
		d.ClientID = cmp.Or(c.ClientID, "alumini")
		c.Dialer = &d
	}
	if c.FetchMaxBytes <= 0 {
		c.FetchMaxBytes = 1 << 20
	}
	if c.FetchMinBytes <= 0 {
		c.FetchMinBytes = 1
	}
	if c.FetchMaxWait <= 0 {
		c.FetchMaxWait = 500 * time.Millisecond
	}
	if c.QueuedFetches <= 0 {
		c.QueuedFetches = 16
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = 10 * time.Second
	}
	return c
}

// ErrClosed is what FetchBatch returns after Close.
var ErrClosed = errors.New("kafka reader closed")

// errNoGeneration is what CommitOffsets returns while the reader is not a
// member of a generation: the records are replayed by their next owner.
var errNoGeneration = errors.New("not in a consumer-group generation")

// Reader consumes a topic as a member of a consumer group. It reads
// every assigned partition through its own connection, a whole fetch at a
// time, and hands each fetch's records over in one piece, so the cost per
// record is decoding it, not a channel operation: the partitions are
// fetched in parallel, and each one's records come in order.
//
// kafka-go's Reader does the same over the same connections but passes
// records one by one through a channel; the reader here keeps kafka-go's
// group protocol (kafka.ConsumerGroup) and its connections, and only
// changes how records reach the consumer. Offsets are committed only by
// CommitOffsets.
type Reader struct {
	cfg    Config
	log    *zap.Logger
	group  *kafka.ConsumerGroup
	dialer *kafka.Dialer

	fetches chan []kafka.Message
	// free holds fetch slices FetchBatch handed out and got back, for the
	// partition readers to fill again: a fetch costs no allocation of its
	// record slice once the reader runs.
	free chan []kafka.Message
	last []kafka.Message // the fetch FetchBatch returned last, free at its next call

	gen    atomic.Pointer[kafka.Generation]
	stop   context.CancelFunc
	stopCh <-chan struct{}
	done   chan struct{}

	stats readerStats
}

type readerStats struct {
	fetches, records atomic.Int64
	fetchWait        atomic.Int64 // nanoseconds from sending a fetch to its first bytes
}

// Stats are counters of a Reader since it was created.
type Stats struct {
	Fetches   int64         // fetch responses that held records
	Records   int64         // records read
	FetchWait time.Duration // sum of the time from each fetch request to its response
}

// New joins the consumer group and starts reading its partitions.
func New(cfg Config, log *zap.Logger) (*Reader, error) {
	cfg = cfg.withDefaults()
	if cfg.Kafka == nil {
		cfg.Kafka = outage.NewMonitor(log, prometheus.NewRegistry()).Dependency("kafka")
	}
	// Outages are logged once through cfg.Kafka; kafka-go's own lines,
	// one per try, go to debug.
	errLog := kafka.LoggerFunc(log.Sugar().Named("kafka-group").Debugf)
	heartbeat, rebalance, joinBackoff := kafkaconf.GroupTimings(cfg.SessionTimeout)
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:      cfg.GroupID,
		Brokers: cfg.Brokers,
		Dialer:  cfg.Dialer,
		Topics:  []string{cfg.Topic},
		// See kafkaconf.GroupTimings.
		SessionTimeout:    cfg.SessionTimeout,
		HeartbeatInterval: heartbeat,
		RebalanceTimeout:  rebalance,
		JoinGroupBackoff:  joinBackoff,
		// A new group starts at the oldest record, so records written
		// before the group's first member ever ran are read too.
		StartOffset: kafka.FirstOffset,
		// kafka-go logs routine rebalances as errors; they are warnings here.
		ErrorLogger: errLog,
	})
	if err != nil {
		return nil, fmt.Errorf("joining consumer group %s: %w", cfg.GroupID, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Reader{
		cfg:     cfg,
		log:     log.Named("kafka-reader"),
		group:   group,
		dialer:  cfg.Dialer,
		fetches: make(chan []kafka.Message, cfg.QueuedFetches),
		free:    make(chan []kafka.Message, cfg.QueuedFetches+1),
		stop:    cancel,
		stopCh:  ctx.Done(),
		done:    make(chan struct{}),
	}
	go r.run(ctx)
	return r, nil
}

// run takes each generation of the group and starts one partition reader
// per assigned partition in it. kafka-go ends the generation (cancelling
// the readers' context and waiting for them) before it joins the next.
func (r *Reader) run(ctx context.Context) {
	defer close(r.done)
	for {
		gen, err := r.group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				return
			}
			// kafka-go backs off and rejoins by itself. A rebalance is
			// routine; anything else means the coordinator is out of reach.
			if errors.Is(err, kafka.RebalanceInProgress) {
				r.log.Info("consumer group rebalancing; rejoining", zap.Error(err))
			} else {
				r.cfg.Kafka.Failed("joining consumer group "+r.cfg.GroupID, err)
			}
			continue
		}
		r.cfg.Kafka.Succeeded()
		r.gen.Store(gen)
		assigned := gen.Assignments[r.cfg.Topic]
		ids := make([]int, len(assigned))
		for i, a := range assigned {
			ids[i] = a.ID
		}
		r.log.Info("partitions assigned", zap.Int32("generation", gen.ID), zap.Ints("partitions", ids))
		for _, a := range assigned {
			gen.Start(func(gctx context.Context) {
				// Stop with the generation or with Close, whichever first.
				pctx, cancel := context.WithCancel(gctx)
				defer cancel()
				defer context.AfterFunc(ctx, cancel)()
				r.readPartition(pctx, a.ID, a.Offset)
			})
		}
	}
}

// readPartition fetches one partition from offset until ctx ends. Errors
// are retried (with a new connection) rather than returned: a partition
// reader that returns ends the whole generation.
func (r *Reader) readPartition(ctx context.Context, partition int, offset int64) {
	log := r.log.With(zap.Int("partition", partition))
	backoff := 100 * time.Millisecond
	for attempt := 0; ctx.Err() == nil; attempt++ {
		next, err := r.readConn(ctx, partition, offset, r.cfg.Brokers[attempt%len(r.cfg.Brokers)])
		if next != offset {
			offset, backoff = next, 100*time.Millisecond
		}
		if ctx.Err() != nil {
			return
		}
		r.cfg.Kafka.Failed("reading partition "+strconv.Itoa(partition), err)
		log.Debug("reading partition failed; reconnecting", zap.Error(err), zap.Int64("offset", offset), zap.Duration("backoff", backoff))
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// readConn reads partition from offset over one connection until ctx ends
// or the connection fails, and returns the offset to go on from.
func (r *Reader) readConn(ctx context.Context, partition int, offset int64, broker string) (int64, error) {
	conn, err := r.dialer.DialLeader(ctx, "tcp", broker, r.cfg.Topic, partition)
	if err != nil {
		return offset, fmt.Errorf("connecting to the leader of partition %d: %w", partition, err)
	}
	// Closing the connection unblocks a fetch in flight when ctx ends.
	defer context.AfterFunc(ctx, func() { conn.Close() })()
	defer conn.Close()
	if offset, err = r.seek(conn, offset); err != nil {
		return offset, err
	}
	r.cfg.Kafka.Succeeded()
	for ctx.Err() == nil {
		// The deadline covers the broker's wait and reading the response.
		if err := conn.SetReadDeadline(time.Now().Add(r.cfg.FetchMaxWait + 30*time.Second)); err != nil {
			return offset, err
		}
		t0 := time.Now()
		batch := conn.ReadBatchWith(kafka.ReadBatchConfig{MinBytes: r.cfg.FetchMinBytes, MaxBytes: r.cfg.FetchMaxBytes, MaxWait: r.cfg.FetchMaxWait})
		wait := time.Since(t0)
		var msgs []kafka.Message
		select {
		case msgs = <-r.free:
		default:
		}
		for {
			m, err := batch.ReadMessage()
			if err != nil {
				break // batch.Close reports it, unless it is the end of the batch
			}
			msgs = append(msgs, m)
		}
		err := batch.Close()
		if errors.Is(err, kafka.OffsetOutOfRange) {
			// Retention deleted the records before they were stored: start
			// again at the oldest one left, as a new group would.
			r.log.Warn("offset out of range; resuming at the oldest record", zap.Int("partition", partition), zap.Int64("offset", offset))
			if offset, err = r.seek(conn, kafka.FirstOffset); err != nil {
				return offset, err
			}
			continue
		}
		if len(msgs) == 0 && msgs != nil {
			r.recycle(msgs)
		}
		if len(msgs) > 0 {
			offset = msgs[len(msgs)-1].Offset + 1
			r.stats.fetches.Add(1)
			r.stats.records.Add(int64(len(msgs)))
			r.stats.fetchWait.Add(int64(wait))
			select {
			case r.fetches <- msgs:
			case <-ctx.Done():
				return offset, ctx.Err()
			}
		}
		if errors.Is(err, kafka.RequestTimedOut) {
			// No new records within FetchMaxWait: fetch again on the same
			// connection, as kafka-go's Reader does.
			continue
		}
		if err != nil {
			// The connection may hold the rest of a response; start afresh.
			return offset, err
		}
	}
	return offset, ctx.Err()
}

// seek positions conn at offset, or at the oldest (kafka.FirstOffset) or
// next (kafka.LastOffset) record, and returns the absolute offset.
func (r *Reader) seek(conn *kafka.Conn, offset int64) (int64, error) {
	var err error
	switch offset {
	case kafka.FirstOffset:
		offset, err = conn.Seek(0, kafka.SeekStart)
	case kafka.LastOffset:
		offset, err = conn.Seek(0, kafka.SeekEnd)
	default:
		// An offset out of range shows in the first fetch.
		offset, err = conn.Seek(offset, kafka.SeekAbsolute|kafka.SeekDontCheck)
	}
	if err != nil {
		return offset, fmt.Errorf("seeking: %w", err)
	}
	return offset, nil
}

// FetchBatch returns the records of the next fetch of any assigned
// partition, in offset order; the fetches of one partition come in order.
// The slice is valid until the next call, which reuses it (the records'
// keys and values are not reused). One goroutine calls it at a time.
func (r *Reader) FetchBatch(ctx context.Context) ([]kafka.Message, error) {
	if r.last != nil {
		r.recycle(r.last)
		r.last = nil
	}
	select {
	case r.last = <-r.fetches:
		return r.last, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-r.stopCh:
		return nil, ErrClosed
	}
}

// recycle gives a fetch slice back for another fetch, without the records
// it held: the batch that copied them keeps them alive as long as it needs.
func (r *Reader) recycle(msgs []kafka.Message) {
	clear(msgs)
	select {
	case r.free <- msgs[:0]:
	default:
	}
}

// CommitOffsets commits, for every partition of next that the current
// generation assigns to this member, the offset of the next record to
// read. Offsets of partitions that moved to another member are left to
// it: their records come back there and are deduplicated by storage.
func (r *Reader) CommitOffsets(ctx context.Context, next map[int]int64) error {
	gen := r.gen.Load()
	if gen == nil {
		return errNoGeneration
	}
	owned := make(map[int]int64, len(next))
	for _, a := range gen.Assignments[r.cfg.Topic] {
		if o, ok := next[a.ID]; ok {
			owned[a.ID] = o
		}
	}
	if len(owned) == 0 {
		return nil
	}
	offsets := map[string]map[int]int64{r.cfg.Topic: owned}
	// CommitOffsets takes no context; the coordinator connection's own
	// timeout bounds it.
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		errc := make(chan error, 1)
		go func() { errc <- gen.CommitOffsets(offsets) }()
		select {
		case err = <-errc:
		case <-ctx.Done():
			return ctx.Err()
		}
		if err == nil || errors.Is(err, kafka.RebalanceInProgress) || errors.Is(err, kafka.IllegalGeneration) ||
			errors.Is(err, kafka.UnknownMemberId) {
			// A generation that ended cannot commit again.
			return err
		}
		if attempt < 3 {
			select {
			case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return err
}

// Assigned is the partitions the current generation assigns to this
// member, in order; none before the first generation.
func (r *Reader) Assigned() []int {
	gen := r.gen.Load()
	if gen == nil {
		return nil
	}
	var ids []int
	for _, a := range gen.Assignments[r.cfg.Topic] {
		ids = append(ids, a.ID)
	}
	slices.Sort(ids)
	return ids
}

// Stats returns the reader's counters.
func (r *Reader) Stats() Stats {
	return Stats{
		Fetches:   r.stats.fetches.Load(),
		Records:   r.stats.records.Load(),
		FetchWait: time.Duration(r.stats.fetchWait.Load()),
	}
}

// Close stops the partition readers and leaves the group, so its
// partitions move to the other members at once. Records fetched and not
// committed are replayed by their next owner.
func (r *Reader) Close() error {
	r.stop()
	err := r.group.Close()
	<-r.done
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("leaving consumer group: %w", err)
	}
	return nil
}

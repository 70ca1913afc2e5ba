// Package publish writes raw hits to Kafka and reports success only once
// the brokers acknowledged them.
package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
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
	// Linger is how long a partition that has no produce request in flight
	// waits for more events before sending. Zero sends at once: while a
	// request is in flight, the events arriving meanwhile form the next
	// batch anyway, so batches grow with the load and a quiet collector
	// answers without waiting.
	Linger time.Duration
	// AckTimeout bounds how long one request waits for the broker.
	AckTimeout time.Duration
}

// maxBatchBytes keeps one produce request under the brokers' default
// message.max.bytes (1 MiB; kafka-go's Writer uses the same bound).
const maxBatchBytes = 1 << 20

// Publisher produces to one topic with acks from all in-sync replicas.
//
// It batches itself instead of using kafka-go's Writer: the Writer holds
// every batch for its BatchTimeout, then queues it behind the partition's
// request in flight, so an event waited for the timer and for whatever
// was queued before it (13–16 ms p99 at half the collector's maximum
// rate). Here each partition has one goroutine sending one request at a
// time; events that arrive while it is in flight go together in the next
// one. Requests still go through kafka-go's Client and Transport, which
// route them to the partition's leader and carry TLS and SASL.
type Publisher struct {
	// client routes requests by its transport's cached metadata; on a
	// retriable error it is replaced by one with fresh metadata (refresh).
	client     atomic.Pointer[kafka.Client]
	addr       net.Addr
	template   *kafka.Transport // nil: kafka-go's defaults
	refreshMu  sync.Mutex
	refreshed  time.Time
	topic      string
	linger     time.Duration
	ackTimeout time.Duration
	window     atomic.Pointer[ackWindow]

	mu      sync.Mutex
	lanes   atomic.Pointer[laneSet]
	closed  bool
	running sync.WaitGroup

	// backlog is the bytes of events waiting in the lanes for a produce
	// request; see Admit.
	backlog      atomic.Int64
	stalledAfter time.Duration // the constants below, but for tests
	admitRecheck time.Duration
	admitMu      sync.Mutex
	admitted     chan struct{} // closed when the backlog is under maxBacklog; nil when no one waits
	waiting      atomic.Bool   // admitted is set

	latency    prometheus.Histogram
	roundTrips prometheus.Histogram
	failures   prometheus.Counter
	batches    prometheus.Histogram
	retries    prometheus.Counter
	held       prometheus.Counter
	refreshes  prometheus.Counter
}

// queued counts the events waiting in every lane; read at scrape time.
func (p *Publisher) queued() float64 {
	s := p.lanes.Load()
	if s == nil {
		return 0
	}
	n := 0
	for _, l := range s.lanes {
		l.mu.Lock()
		n += len(l.pending)
		l.mu.Unlock()
	}
	return float64(n)
}

// newTransport is a transport with the settings of t (TLS, SASL, dialer),
// an empty connection pool and no cached metadata. The metadata it asks for
// is that of topic alone: cheap to fetch again on every refresh.
func newTransport(t *kafka.Transport, topic string) *kafka.Transport {
	n := &kafka.Transport{MetadataTopics: []string{topic}}
	if t != nil {
		n.Dial, n.DialTimeout, n.IdleTimeout, n.MetadataTTL = t.Dial, t.DialTimeout, t.IdleTimeout, t.MetadataTTL
		n.ClientID, n.TLS, n.SASL, n.Resolver, n.Context = t.ClientID, t.TLS, t.SASL, t.Resolver, t.Context
	}
	return n
}

// minRefreshInterval spaces metadata refreshes while a broker stays away:
// lanes back off to 500 ms, so an outage costs a few refreshes a second.
const minRefreshInterval = 10 * time.Millisecond

// refresh replaces failed, the client whose request got a retriable error,
// by one whose metadata is fetched afresh. kafka-go's transport refreshes
// its cached metadata only on a timer (a random 0-6 s) and has no call to
// force it: produce requests kept going to a leader that had moved, and
// a leader move cost 0.6-4.7 s and sometimes a 503. A new transport asks
// for metadata before its first request, which then goes to the new
// leader. Lanes that failed on the same client share one refresh.
func (p *Publisher) refresh(failed *kafka.Client) {
	p.refreshMu.Lock()
	defer p.refreshMu.Unlock()
	if p.client.Load() != failed || time.Since(p.refreshed) < minRefreshInterval {
		return // another lane refreshed it already
	}
	p.client.Store(&kafka.Client{Addr: p.addr, Transport: newTransport(p.template, p.topic)})
	p.refreshed = time.Now()
	p.refreshes.Inc()
	// Requests in flight keep their connections until they are answered.
	if t, ok := failed.Transport.(*kafka.Transport); ok {
		t.CloseIdleConnections()
	}
}

// New returns a Publisher whose metrics are registered on reg.
func New(cfg Config, reg prometheus.Registerer) *Publisher {
	p := &Publisher{
		addr:         cfg.Addr,
		template:     cfg.Transport,
		topic:        cfg.Topic,
		linger:       cfg.Linger,
		ackTimeout:   cfg.AckTimeout,
		stalledAfter: stalledAfter,
		admitRecheck: admitRecheck,
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "alumini_collector_produce_duration_seconds",
			Help:    "Time from handing an event to the producer until Kafka acknowledged it.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		roundTrips: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "alumini_collector_produce_request_duration_seconds",
			Help:    "Time one produce request took, each attempt: encoding, sending, the broker's answer and reading it. Next to produce_duration_seconds it tells a slow broker from a busy collector.",
			Buckets: []float64{.00025, .0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alumini_collector_produce_failures_total",
			Help: "Events Kafka did not acknowledge in time (answered 503).",
		}),
		batches: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "alumini_collector_produce_batch_events",
			Help:    "Events per produce request sent to Kafka.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}),
	}
	p.retries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "alumini_collector_produce_retries_total",
		Help: "Produce requests sent again after the broker refused or dropped the connection, or answered with a retriable error.",
	})
	p.client.Store(&kafka.Client{Addr: cfg.Addr, Transport: newTransport(cfg.Transport, cfg.Topic)})
	p.refreshes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "alumini_collector_metadata_refreshes_total",
		Help: "Times the producer fetched the cluster's metadata afresh after a retriable error (a leader moved, a broker went away).",
	})
	p.held = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "alumini_collector_admission_held_total",
		Help: "Requests held back before decoding because a full produce request of events was already waiting for Kafka.",
	})
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "alumini_collector_produce_queued_events",
		Help: "Events waiting for their partition's next produce request (not those in a request in flight).",
	}, p.queued)
	reg.MustRegister(p.latency, p.roundTrips, p.failures, p.batches, p.retries, p.held, p.refreshes, queued)
	return p
}

// call is one Publish waiting for its events' acknowledgements.
type call struct {
	remaining atomic.Int32 // events not yet answered
	failed    atomic.Pointer[error]
	state     atomic.Int32  // callWaiting, callWoken or callAbandoned
	done      chan struct{} // receives once, after state became callWoken
	// Set by the lane before waking c: the calls to wake after it, and
	// the channel that tells the lane the chain has been walked.
	next *call
	end  chan struct{}
}

const (
	callWaiting int32 = iota
	callWoken
	callAbandoned // its Publish returned at the ack timeout
)

var calls = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

// settle records the outcome of n of c's events and reports whether they
// were the last ones.
func (c *call) settle(n int, err error) bool {
	if err != nil {
		// A copy, so that only a failure allocates: taking err's own
		// address moved it to the heap on every call.
		failed := err
		c.failed.CompareAndSwap(nil, &failed)
	}
	return c.remaining.Add(-int32(n)) == 0
}

// wakeChain wakes the first call from c on that still waits; that call
// wakes the next when it runs, and so on, and the end of the chain is
// signalled on end. Waking them all from the lane put every caller but
// the last at the back of the Go scheduler's run queue, behind every
// request that arrived meanwhile: on one core that was 10 ms (p99) from
// Kafka's answer to the HTTP answer for batch requests. A goroutine woken
// by the one running is run next, so the chain answers the callers one
// after the other before anything else.
func wakeChain(c *call, end chan struct{}) {
	for ; c != nil; c = c.next {
		if c.state.CompareAndSwap(callWaiting, callWoken) {
			c.done <- struct{}{}
			return
		}
	}
	end <- struct{}{}
}

// maxBacklog is how many bytes of events may wait in the lanes before
// Admit holds new requests back: one full produce request.
const maxBacklog = maxBatchBytes

// stalledAfter is how long a produce request may be in flight before its
// lane counts as stalled (a broker down or slow), not as short of CPU;
// admitRecheck is how often a held request looks again.
const (
	stalledAfter = 250 * time.Millisecond
	admitRecheck = 50 * time.Millisecond
)

// Admit returns once the lanes that are moving hold less than one produce
// request's worth of events, or with ErrUnavailable when that did not
// happen within the ack timeout. The collector calls it before decoding a
// request.
//
// Why: on one core, a lane's goroutine waits for the CPU behind every
// request goroutine that is ready to run each time Kafka answers. When a
// stall (a long garbage collection, a slow broker) let a few hundred
// requests pile up, each produce round trip waited for all of them to be
// decoded, and carried at most one full request of events: the lanes then
// drained barely faster than events came in, and latency stayed at
// 150-450 ms for seconds after the stall. Requests held here take no CPU,
// so the lanes catch up at once. A lane whose request has been in flight
// for p.stalledAfter is left out: holding requests does not bring a broker
// back, and would turn an outage of some partitions into one of all.
func (p *Publisher) Admit() error {
	if p.backlog.Load() < maxBacklog || p.liveBacklog() < maxBacklog {
		return nil
	}
	p.held.Inc()
	ctx := p.ackContext(time.Now())
	recheck := time.NewTimer(p.admitRecheck)
	defer recheck.Stop()
	for {
		p.admitMu.Lock()
		if p.admitted == nil {
			p.admitted = make(chan struct{})
		}
		p.waiting.Store(true)
		// Read after waiting is set: a lane that took events out without
		// seeing it did so before, and its share is gone from the count.
		if p.liveBacklog() < maxBacklog {
			p.admitMu.Unlock()
			return nil
		}
		ch := p.admitted
		p.admitMu.Unlock()
		select {
		case <-ch:
		case <-recheck.C: // a lane may have stalled since
			recheck.Reset(p.admitRecheck)
		case <-ctx.Done():
			return fmt.Errorf("%w: %d bytes of events wait for kafka: %w", ErrUnavailable, p.backlog.Load(), ctx.Err())
		}
	}
}

// liveBacklog is the bytes waiting in lanes that are not stalled.
func (p *Publisher) liveBacklog() int64 {
	s := p.lanes.Load()
	if s == nil {
		return 0
	}
	now := time.Now().UnixNano()
	var n int64
	for _, l := range s.lanes {
		if since := l.sendingSince.Load(); since != 0 && now-since > int64(p.stalledAfter) {
			continue
		}
		n += l.pendingBytes.Load()
	}
	return n
}

// queuedBytes counts n bytes of events into or (negative) out of the
// lanes, and lets held requests go once the backlog is small again.
func (p *Publisher) queuedBytes(n int) {
	if p.backlog.Add(int64(n)) < maxBacklog && n < 0 && p.waiting.Load() {
		p.admitMu.Lock()
		if p.admitted != nil && p.backlog.Load() < maxBacklog {
			close(p.admitted)
			p.admitted = nil
			p.waiting.Store(false)
		}
		p.admitMu.Unlock()
	}
}

// Publish blocks until Kafka acknowledged msgs or the ack timeout passed.
// On success the producer holds no reference to the messages' bytes.
func (p *Publisher) Publish(ctx context.Context, msgs ...kafka.Message) error {
	start := time.Now()
	// A caller that already gave up gets its own reason, and nothing is
	// written for it.
	if err := ctx.Err(); err != nil {
		p.failures.Add(float64(len(msgs)))
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if len(msgs) == 0 {
		return nil
	}
	if ctx.Done() == nil {
		ctx = p.ackContext(start)
	} else {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.ackTimeout)
		defer cancel()
	}
	err := p.publish(ctx, start, msgs)
	p.latency.Observe(time.Since(start).Seconds())
	if err != nil {
		p.failures.Add(float64(len(msgs)))
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

func (p *Publisher) publish(ctx context.Context, now time.Time, msgs []kafka.Message) error {
	lanes, err := p.lanesFor(ctx, now)
	if err != nil {
		return err
	}
	c := calls.Get().(*call)
	c.failed.Store(nil)
	c.state.Store(callWaiting)
	c.remaining.Store(int32(len(msgs)))
	// Most requests carry one visitor's events: one partition, one lane.
	var used [4]*lane
	touched := used[:0]
	refused := 0
	for i := range msgs {
		l := lanes[murmur2Partition(msgs[i].Key, len(lanes))]
		if !l.add(entry{key: msgs[i].Key, value: msgs[i].Value, time: now, call: c}) {
			refused++
			continue
		}
		if !slices.Contains(touched, l) {
			touched = append(touched, l)
		}
	}
	if refused > 0 && c.settle(refused, errClosed) {
		// The lanes answered the rest already; none of them wakes c.
		return *c.failed.Load()
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		if c.state.CompareAndSwap(callWaiting, callAbandoned) {
			// Events not yet sent are taken back so that a broker that is
			// down does not make the queue grow; ones in a request in
			// flight may still reach Kafka, which a 503 allows (the sender
			// retries with the same event id). c is left to the garbage
			// collector: a lane may still settle it.
			for _, l := range touched {
				l.withdraw(c)
			}
			return ctx.Err()
		}
		<-c.done // woken as the deadline passed: the answer is here
	}
	wakeChain(c.next, c.end)
	failed := c.failed.Load()
	c.next, c.end = nil, nil
	calls.Put(c) // every lane is done with c
	if failed != nil {
		return *failed
	}
	return nil
}

var errClosed = errors.New("producer closed")

// laneSet is one lane per partition of the topic, trusted until expires.
type laneSet struct {
	lanes   []*lane
	expires time.Time
}

// partitionsTTL is how long the partition count is reused. Counts change
// only when an operator adds partitions; asking the transport on every
// request costs a filtered copy of the cluster's metadata each time.
const partitionsTTL = time.Second

// lanesFor returns one lane per partition of the topic, starting lanes
// for partitions it has not seen yet.
func (p *Publisher) lanesFor(ctx context.Context, now time.Time) ([]*lane, error) {
	if s := p.lanes.Load(); s != nil && now.Before(s.expires) {
		return s.lanes, nil
	}
	n, err := p.partitions(ctx)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errClosed
	}
	var lanes []*lane
	if s := p.lanes.Load(); s != nil {
		lanes = s.lanes
	}
	// Partitions are only ever added: a shorter answer is a stale one.
	for i := len(lanes); i < n; i++ {
		l := &lane{partition: i, chainEnd: make(chan struct{}, 1), backlog: p.queuedBytes}
		l.wake = sync.NewCond(&l.mu)
		lanes = append(lanes, l)
		p.running.Add(1)
		go p.send(l)
	}
	p.lanes.Store(&laneSet{lanes: lanes, expires: now.Add(partitionsTTL)})
	return lanes, nil
}

func (p *Publisher) partitions(ctx context.Context) (int, error) {
	client := p.client.Load()
	r, err := client.Transport.RoundTrip(ctx, client.Addr, &metadata.Request{TopicNames: []string{p.topic}})
	if err != nil {
		if retriable(err) {
			p.refresh(client)
		}
		return 0, err
	}
	for _, t := range r.(*metadata.Response).Topics {
		if t.Name == p.topic {
			if t.ErrorCode != 0 {
				// The topic being created or a leader election: the next
				// call asks again rather than the cache.
				p.refresh(client)
				return 0, kafka.Error(t.ErrorCode)
			}
			if len(t.Partitions) == 0 {
				break
			}
			return len(t.Partitions), nil
		}
	}
	p.refresh(client)
	return 0, kafka.UnknownTopicOrPartition
}

// murmur2Partition is the Java client's partitioner, which kafka-go's
// Murmur2Balancer also follows: the same key lands on the same partition
// whichever producer wrote it.
func murmur2Partition(key []byte, partitions int) int {
	return int(murmur2(key)&0x7fffffff) % partitions
}

// murmur2 is Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2).
func murmur2(data []byte) uint32 {
	const (
		seed = uint32(0x9747b28c)
		m    = uint32(0x5bd1e995)
		r    = 24
	)
	h := seed ^ uint32(len(data))
	n := len(data) / 4
	for i := range n {
		k := uint32(data[i*4]) | uint32(data[i*4+1])<<8 | uint32(data[i*4+2])<<16 | uint32(data[i*4+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := data[n*4:]
	switch len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}

// entry is one event waiting in a lane.
type entry struct {
	key, value []byte
	time       time.Time
	call       *call
}

// lane queues one partition's events and sends them, one produce request
// at a time.
type lane struct {
	partition int
	mu        sync.Mutex
	wake      *sync.Cond
	pending   []entry
	spare     []entry // the slice sent last, reused for the next batch
	idle      bool    // the sender waits on wake
	closed    bool
	chainEnd  chan struct{} // see wakeChain
	// For Admit: the bytes in pending, counted by add, next and withdraw
	// (and passed on to the publisher's backlog), and when the request in
	// flight was sent (Unix ns; 0 when none is).
	pendingBytes atomic.Int64
	backlog      func(n int)
	sendingSince atomic.Int64
}

// queued counts n bytes into or (negative) out of pending, with l.mu held:
// the lane's count first, then the publisher's, whose drop wakes held
// requests (see Admit).
func (l *lane) queued(n int) {
	l.pendingBytes.Add(int64(n))
	l.backlog(n)
}

func (l *lane) add(e entry) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.pending = append(l.pending, e)
	l.queued(len(e.key) + len(e.value))
	if l.idle {
		l.wake.Signal()
	}
	return true
}

// withdraw removes c's events that are still waiting.
func (l *lane) withdraw(c *call) {
	l.mu.Lock()
	defer l.mu.Unlock()
	kept := l.pending[:0]
	size := 0
	for _, e := range l.pending {
		if e.call != c {
			kept = append(kept, e)
		} else {
			size += len(e.key) + len(e.value)
		}
	}
	clear(l.pending[len(kept):]) // drop references to withdrawn bytes
	l.pending = kept
	l.queued(-size)
}

// next waits for events and takes at most maxBatchBytes of them (at least
// one); nil once the lane is closed and empty.
func (l *lane) next(linger time.Duration) []entry {
	l.mu.Lock()
	for len(l.pending) == 0 && !l.closed {
		l.idle = true
		l.wake.Wait()
		l.idle = false
		if linger > 0 && !l.closed {
			l.mu.Unlock()
			time.Sleep(linger)
			l.mu.Lock()
		}
	}
	defer l.mu.Unlock()
	if len(l.pending) == 0 {
		return nil
	}
	n, size := 0, 0
	for n < len(l.pending) && (n == 0 || size+len(l.pending[n].key)+len(l.pending[n].value) <= maxBatchBytes) {
		size += len(l.pending[n].key) + len(l.pending[n].value)
		n++
	}
	l.queued(-size)
	if n == len(l.pending) {
		batch := l.pending
		l.pending, l.spare = l.spare[:0], nil
		return batch
	}
	batch := slices.Clone(l.pending[:n])
	l.pending = slices.Delete(l.pending, 0, n)
	return batch
}

// recycle hands a sent batch's slice back for reuse, cleared so that it
// holds no event's bytes.
func (l *lane) recycle(batch []entry) {
	clear(batch)
	l.mu.Lock()
	if l.spare == nil && cap(batch) <= 4096 {
		l.spare = batch[:0]
	}
	l.mu.Unlock()
}

// send is a lane's goroutine: it produces batch after batch until the lane
// is closed and drained.
func (p *Publisher) send(l *lane) {
	defer p.running.Done()
	records := &batchRecords{}
	var ready []*call
	for {
		batch := l.next(p.linger)
		if batch == nil {
			return
		}
		l.sendingSince.Store(time.Now().UnixNano())
		err := p.produce(l.partition, batch, records)
		l.sendingSince.Store(0)
		p.batches.Observe(float64(len(batch)))
		// Settled per call, not per event: a batch request's events are
		// mostly side by side.
		ready = ready[:0]
		for i := 0; i < len(batch); {
			j := i + 1
			for j < len(batch) && batch[j].call == batch[i].call {
				j++
			}
			if c := batch[i].call; c.settle(j-i, err) {
				ready = append(ready, c)
			}
			i = j
		}
		l.recycle(batch)
		if len(ready) > 0 {
			for i, c := range ready {
				c.next, c.end = nil, l.chainEnd
				if i+1 < len(ready) {
					c.next = ready[i+1]
				}
			}
			// Sending the next batch waits until the callers have run:
			// the lane, too, is woken next by the last of them.
			wakeChain(ready[0], l.chainEnd)
			<-l.chainEnd
		}
	}
}

// produce sends one batch, retrying what kafka-go calls temporary (leader
// moved, broker restarting, connection refused or reset) until the ack
// timeout. Each retriable error refreshes the metadata first, so the retry
// goes to the partition's new leader.
func (p *Publisher) produce(partition int, batch []entry, records *batchRecords) error {
	ctx, cancel := context.WithTimeout(context.Background(), p.ackTimeout)
	defer cancel()
	backoff := 10 * time.Millisecond
	for {
		records.reset(batch)
		start := time.Now()
		client := p.client.Load()
		res, err := client.Produce(ctx, &kafka.ProduceRequest{
			Topic:        p.topic,
			Partition:    partition,
			RequiredAcks: kafka.RequireAll,
			Compression:  kafka.Lz4,
			Records:      records,
		})
		p.roundTrips.Observe(time.Since(start).Seconds())
		if err == nil && res != nil {
			err = res.Error
		}
		if err == nil || !retriable(err) {
			return err
		}
		p.refresh(client)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-time.After(backoff):
		}
		p.retries.Inc()
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

func retriable(err error) bool {
	var temp interface{ Temporary() bool }
	if errors.As(err, &temp) && temp.Temporary() {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE)
}

// batchRecords reads a batch as kafka-go records, reusing one record and
// two readers for all of them (kafka-go encodes each record before asking
// for the next).
type batchRecords struct {
	batch      []entry
	i          int
	record     kafka.Record
	key, value bytesReader
}

type bytesReader struct{ bytes.Reader }

func (*bytesReader) Close() error { return nil }

func (r *batchRecords) reset(batch []entry) { r.batch, r.i = batch, 0 }

func (r *batchRecords) ReadRecord() (*kafka.Record, error) {
	if r.i >= len(r.batch) {
		return nil, io.EOF
	}
	e := &r.batch[r.i]
	r.i++
	r.record = kafka.Record{Time: e.time}
	if e.key != nil {
		r.key.Reset(e.key)
		r.record.Key = &r.key
	}
	r.value.Reset(e.value)
	r.record.Value = &r.value
	return &r.record, nil
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

// Close sends what the lanes still hold, waits for the answers, and
// refuses further events.
func (p *Publisher) Close() error {
	p.mu.Lock()
	p.closed = true
	if s := p.lanes.Load(); s != nil {
		for _, l := range s.lanes {
			l.mu.Lock()
			l.closed = true
			l.wake.Signal()
			l.mu.Unlock()
		}
	}
	p.mu.Unlock()
	p.running.Wait()
	if t, ok := p.client.Load().Transport.(*kafka.Transport); ok {
		t.CloseIdleConnections()
	}
	return nil
}

package sink_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/lib/chschema"
	"github.com/aluminiapp/pipeline/lib/chtest"
	"github.com/aluminiapp/pipeline/lib/eventually"
	"github.com/aluminiapp/pipeline/lib/kafkaconf"
	"github.com/aluminiapp/pipeline/lib/kafkatest"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
	"github.com/aluminiapp/pipeline/sinker/internal/erased"
	"github.com/aluminiapp/pipeline/sinker/internal/erased/erasedtest"
	"github.com/aluminiapp/pipeline/sinker/internal/sink"
	"github.com/aluminiapp/pipeline/sinker/internal/store"
)

const group = "alumini-sinker-test"

// env is a kfake broker with the pipeline's topics and a migrated
// ClickHouse database.
type env struct {
	kafka kafkaconf.Config
	conn  driver.Conn
	store *store.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	_, addr := kafkatest.Start(t)
	e := &env{kafka: kafkaconf.Config{
		Brokers: addr, RawTopic: "alumini.raw", EnrichedTopic: "alumini.enriched", DeadLetterTopic: "alumini.dead-letter",
		Partitions: 3, ReplicationFactor: 1,
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.kafka.EnsureTopics(ctx, e.kafka.EnrichedTopic, e.kafka.DeadLetterTopic); err != nil {
		t.Fatal(err)
	}
	_, e.conn = chtest.Database(t)
	if err := chschema.Apply(ctx, e.conn, zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	e.store = store.New(e.conn)
	return e
}

// start runs a sink in the consumer group and returns the function that
// stops it the way the service does: cancel, wait for Run, close clients.
func (e *env) start(t *testing.T, cfg sink.Config) (stop func()) {
	t.Helper()
	_, stop = e.startSink(t, cfg, e.store, prometheus.NewRegistry(), nil)
	return stop
}

// startSink is start with the store, the metrics registry and a wrapper
// around the Kafka reader (nil for none) chosen by the test.
func (e *env) startSink(t *testing.T, cfg sink.Config, st sink.Store, reg prometheus.Registerer, wrap func(sink.Reader) sink.Reader) (*sink.Sink, func()) {
	t.Helper()
	log := zaptest.NewLogger(t)
	reader, err := sink.NewReader(sink.ReaderConfig{
		Brokers: e.kafka.BrokerList(), Topic: e.kafka.EnrichedTopic, GroupID: group, SessionTimeout: 6 * time.Second,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	dlq := sink.NewDeadLetterWriter(e.kafka.Addr(), nil, e.kafka.DeadLetterTopic, log)
	var r sink.Reader = reader
	if wrap != nil {
		r = wrap(reader)
	}
	s := sink.New(cfg, r, dlq, st, log, reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop := func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v; want nil after cancel", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return within 30s of cancel")
		}
		if err := dlq.Close(); err != nil {
			t.Errorf("closing dead-letter writer: %v", err)
		}
		if err := reader.Close(); err != nil {
			t.Errorf("closing reader: %v", err)
		}
	}
	t.Cleanup(stop)
	return s, stop
}

var testCfg = sink.Config{MaxRows: 40, MaxBytes: 1 << 20, MaxWait: 100 * time.Millisecond}

func event(i int) *aluminiv1.Event {
	ts := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
	return &aluminiv1.Event{
		ClientId: "shop", EventId: fmt.Sprintf("e%04d", i), Type: aluminiv1.EventType_EVENT_TYPE_PAGEVIEW,
		TimestampMs: ts.UnixMilli(), ReceivedAtMs: ts.UnixMilli(), Path: fmt.Sprintf("/p/%d", i),
		VisitorId: uint64(i % 7),
	}
}

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// produce writes msgs to the enriched topic, partitioned by key.
func (e *env) produce(t *testing.T, msgs ...kafka.Message) {
	t.Helper()
	w := &kafka.Writer{Addr: e.kafka.Addr(), Topic: e.kafka.EnrichedTopic, Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("producing %d records: %v", len(msgs), err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("closing writer: %v", err)
	}
}

func eventMessages(t *testing.T, from, to int) []kafka.Message {
	t.Helper()
	var msgs []kafka.Message
	for i := from; i < to; i++ {
		ev := event(i)
		msgs = append(msgs, kafka.Message{Key: []byte(ev.EventId), Value: marshal(t, ev)})
	}
	return msgs
}

// counts is uniqExact(event_id) and count() of the events table.
func (e *env) counts(t *testing.T) (uniq, rows uint64) {
	t.Helper()
	if err := e.conn.QueryRow(context.Background(), "SELECT uniqExact(event_id), count() FROM events").Scan(&uniq, &rows); err != nil {
		t.Fatalf("counting events: %v", err)
	}
	return uniq, rows
}

// waitUniq waits until the table holds want distinct events and returns the row count.
func (e *env) waitUniq(t *testing.T, want uint64) uint64 {
	t.Helper()
	var uniq, rows uint64
	if !eventually.Within(30*time.Second, func() bool {
		uniq, rows = e.counts(t)
		if uniq > want {
			t.Fatalf("uniqExact(event_id) = %d; want %d", uniq, want)
		}
		return uniq == want
	}) {
		t.Fatalf("after 30s uniqExact(event_id) = %d; want %d", uniq, want)
	}
	return rows
}

func (e *env) waitCommitted(t *testing.T, want int64) {
	t.Helper()
	var got int64
	if !eventually.Within(30*time.Second, func() bool {
		got = kafkatest.Committed(t, e.kafka.Brokers, group, e.kafka.EnrichedTopic)
		if got > want {
			t.Fatalf("committed offsets sum to %d; want %d", got, want)
		}
		return got == want
	}) {
		t.Fatalf("committed offsets sum to %d; want %d", got, want)
	}
}

func TestStoresEventsAndCommitsOffsets(t *testing.T) {
	e := newEnv(t)
	const n, more = 300, 50
	// A plain MergeTree copy of every inserted row: background merges of the
	// ReplacingMergeTree would hide what was inserted twice.
	for _, stmt := range []string{
		// The columns of SELECT *, so MATERIALIZED columns of events
		// (computed there, not inserted) do not become expected inputs.
		"CREATE TABLE events_nodedup ENGINE = MergeTree ORDER BY event_id AS SELECT * FROM events WHERE 0",
		"CREATE MATERIALIZED VIEW events_nodedup_mv TO events_nodedup AS SELECT * FROM events",
	} {
		if err := e.conn.Exec(context.Background(), stmt); err != nil {
			t.Fatal(err)
		}
	}
	e.produce(t, eventMessages(t, 0, n)...)

	stop := e.start(t, testCfg)
	e.waitUniq(t, n)
	stop()
	if got, end := kafkatest.Committed(t, e.kafka.Brokers, group, e.kafka.EnrichedTopic), kafkatest.Count(t, e.kafka.Brokers, e.kafka.EnrichedTopic); got != n || end != n {
		t.Fatalf("committed offsets sum to %d, topic end offsets to %d; want both %d", got, end, n)
	}
	// kafka-go may deliver a record twice within one run (its partition
	// readers restart from the committed offset when the group settles), so
	// the row count is only bounded here; storage deduplicates the rest.
	oldRows := e.rowsBelow(t, n)
	if oldRows < n || oldRows > 2*n {
		t.Errorf("rows of the first %d events = %d; want %d to %d", n, oldRows, n, 2*n)
	}

	// A sinker restarted in the same group resumes after the commits: none
	// of the first n is inserted again.
	e.produce(t, eventMessages(t, n, n+more)...)
	stop = e.start(t, testCfg)
	e.waitUniq(t, n+more)
	stop()
	if got := e.rowsBelow(t, n); got != oldRows {
		t.Errorf("rows of the first %d events after restart = %d; want %d (nothing re-inserted)", n, got, oldRows)
	}
	if got := kafkatest.Committed(t, e.kafka.Brokers, group, e.kafka.EnrichedTopic); got != n+more {
		t.Errorf("committed offsets after restart sum to %d; want %d", got, n+more)
	}

	var path string
	if err := e.conn.QueryRow(context.Background(), "SELECT path FROM events WHERE event_id = 'e0123' AND timestamp = toDateTime('2026-11-03 12:03:00', 'UTC')").Scan(&path); err != nil || path != "/p/123" {
		t.Errorf("path of e0123 = %q, %v; want /p/123", path, err)
	}
}

func TestReplayedEventsAreCountedOnce(t *testing.T) {
	e := newEnv(t)
	const n = 120
	// The same events twice, as after an enricher replay.
	e.produce(t, eventMessages(t, 0, n)...)
	e.produce(t, eventMessages(t, 0, n)...)

	e.start(t, testCfg)
	e.waitCommitted(t, 2*n)
	uniq, rows := e.counts(t)
	if uniq != n || rows < n || rows > 2*n {
		t.Errorf("uniqExact(event_id), count() = %d, %d; want %d and %d..%d", uniq, rows, n, n, 2*n)
	}
	var final uint64
	if err := e.conn.QueryRow(context.Background(), "SELECT count() FROM events FINAL").Scan(&final); err != nil {
		t.Fatal(err)
	}
	if final != n {
		t.Errorf("count() FROM events FINAL = %d; want %d: the table key must collapse replays", final, n)
	}
}

func TestUndecodableRecordGoesToDeadLetterTopic(t *testing.T) {
	e := newEnv(t)
	garbage := []byte{0xff, 0xff, 0xff, 0x01}
	// One key: all four records on one partition, at offsets 0..3.
	key := []byte("shop")
	e.produce(t,
		kafka.Message{Key: key, Value: marshal(t, event(1))},
		kafka.Message{Key: key, Value: garbage},
		kafka.Message{Key: key, Value: marshal(t, event(2))},
		kafka.Message{Key: key, Value: marshal(t, &aluminiv1.Event{ClientId: "shop"})},
	)
	source := kafkatest.ReadAll(t, e.kafka.Brokers, e.kafka.EnrichedTopic, 4, 10*time.Second)
	if len(source) != 4 {
		t.Fatalf("read %d records back from the enriched topic; want 4", len(source))
	}
	partition := source[0].Partition

	e.start(t, testCfg)
	e.waitCommitted(t, 4)
	if uniq, rows := e.counts(t); uniq != 2 || rows != 2 {
		t.Errorf("uniqExact(event_id), count() = %d, %d; want 2, 2 (the good records only)", uniq, rows)
	}

	dead := kafkatest.ReadAll(t, e.kafka.Brokers, e.kafka.DeadLetterTopic, 2, 10*time.Second)
	if len(dead) != 2 {
		t.Fatalf("dead-letter topic holds %d records; want 2", len(dead))
	}
	want := map[string]struct {
		offset   int64
		original []byte
	}{
		// Not even the wire format holds: no byte of it can be told from a
		// truncated IP, so none is kept (the record stays in its topic).
		sink.ReasonDecodeError:  {1, nil},
		sink.ReasonInvalidEvent: {3, marshal(t, &aluminiv1.Event{ClientId: "shop"})},
	}
	for _, m := range dead {
		var dl aluminiv1.DeadLetter
		if err := proto.Unmarshal(m.Value, &dl); err != nil {
			t.Fatalf("dead letter does not decode: %v", err)
		}
		w, ok := want[dl.Reason]
		if !ok {
			t.Errorf("dead letter reason %q; want one of %v", dl.Reason, want)
			continue
		}
		delete(want, dl.Reason)
		if dl.Stage != sink.Stage || dl.SourceTopic != e.kafka.EnrichedTopic || int(dl.SourcePartition) != partition || dl.SourceOffset != w.offset || string(dl.Original) != string(w.original) {
			t.Errorf("dead letter = %v; want stage %s, source %s/%d@%d, original %x", &dl, sink.Stage, e.kafka.EnrichedTopic, partition, w.offset, w.original)
		}
		var header string
		for _, h := range m.Headers {
			if h.Key == "reason" {
				header = string(h.Value)
			}
		}
		if header != dl.Reason {
			t.Errorf("reason header = %q; want %q", header, dl.Reason)
		}
	}
}

// rowsBelow counts the rows inserted for events 0..n-1 (event ids e0000..)
// in the events_nodedup copy.
func (e *env) rowsBelow(t *testing.T, n int) uint64 {
	t.Helper()
	var rows uint64
	if err := e.conn.QueryRow(context.Background(), "SELECT count() FROM events_nodedup WHERE event_id < ?", fmt.Sprintf("e%04d", n)).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestErasedVisitorsStayErased replays a topic holding an erased visitor's
// events (a new consumer group reads it from the oldest record): none of
// them reaches events, nor the dead-letter topic, while the other visitors'
// events are stored, and every offset is committed.
func TestErasedVisitorsStayErased(t *testing.T) {
	e := newEnv(t)
	const n, erasedVisitor = 140, 3
	erasedtest.Record(t, e.conn, "shop", erasedVisitor)
	erasedtest.Record(t, e.conn, "news", 4) // another client's visitor 4 is not shop's
	set := erased.New(e.conn, zaptest.NewLogger(t), prometheus.NewRegistry())
	if err := set.Load(context.Background()); err != nil {
		t.Fatal(err)
	}

	msgs := eventMessages(t, 0, n)
	// An event of the erased visitor that would be invalid: it must not
	// reach the dead-letter topic either.
	msgs = append(msgs, kafka.Message{Key: []byte("x"), Value: marshal(t, &aluminiv1.Event{ClientId: "shop", VisitorId: erasedVisitor})})
	e.produce(t, msgs...)
	want := 0 // events of other visitors
	for i := range n {
		if event(i).VisitorId != erasedVisitor {
			want++
		}
	}

	cfg := testCfg
	cfg.Erased = set
	reg := prometheus.NewRegistry()
	e.startSink(t, cfg, e.store, reg, nil)
	e.waitCommitted(t, n+1)

	var erasedRows, visitor4 uint64
	if err := e.conn.QueryRow(context.Background(), "SELECT countIf(visitor_id = ?), countIf(visitor_id = 4) FROM events WHERE client_id = 'shop'", uint64(erasedVisitor)).Scan(&erasedRows, &visitor4); err != nil {
		t.Fatal(err)
	}
	if erasedRows != 0 || visitor4 == 0 {
		t.Errorf("rows of shop's visitors %d and 4 = %d, %d; want 0 and more than 0", erasedVisitor, erasedRows, visitor4)
	}
	if uniq, _ := e.counts(t); uniq != uint64(want) {
		t.Errorf("uniqExact(event_id) = %d; want %d (every other visitor's event)", uniq, want)
	}
	if got := kafkatest.Count(t, e.kafka.Brokers, e.kafka.DeadLetterTopic); got != 0 {
		t.Errorf("dead-letter topic holds %d records; want 0", got)
	}
	// kafka-go may hand a record over twice in one run, so at least.
	dropped := droppedErased(t, reg)
	if dropped < float64(n-want+1) {
		t.Errorf("alumini_sinker_dropped_total{reason=erased} = %v; want at least %d", dropped, n-want+1)
	}
}

// droppedErased is the erased series of alumini_sinker_dropped_total in reg.
func droppedErased(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "alumini_sinker_dropped_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == sink.DropErased {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatal("alumini_sinker_dropped_total{reason=erased} not registered")
	return 0
}

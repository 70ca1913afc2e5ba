package sink_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/lib/chtest"
	"github.com/aluminiapp/pipeline/lib/kafkaconf"
	"github.com/aluminiapp/pipeline/lib/kafkatest"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
	"github.com/aluminiapp/pipeline/sinker/internal/sink"
	"github.com/aluminiapp/pipeline/sinker/internal/store"
	"github.com/aluminiapp/pipeline/sinker/schema"
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
	if err := schema.Apply(ctx, e.conn, zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	e.store = store.New(e.conn)
	return e
}

// start runs a sink in the consumer group and returns the function that
// stops it the way the service does: cancel, wait for Run, close clients.
func (e *env) start(t *testing.T, cfg sink.Config) (stop func()) {
	t.Helper()
	log := zaptest.NewLogger(t)
	reader := sink.NewReader(e.kafka.BrokerList(), e.kafka.EnrichedTopic, group, log)
	dlq := sink.NewDeadLetterWriter(e.kafka.Addr(), e.kafka.DeadLetterTopic, log)
	s := sink.New(cfg, reader, dlq, e.store, log, prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop = func() {
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
	return stop
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
	deadline := time.Now().Add(30 * time.Second)
	for {
		uniq, rows := e.counts(t)
		if uniq >= want {
			if uniq > want {
				t.Fatalf("uniqExact(event_id) = %d; want %d", uniq, want)
			}
			return rows
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s uniqExact(event_id) = %d; want %d", uniq, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// committed is the sum over the enriched topic's partitions of the group's
// committed offsets (a partition without a commit counts 0).
func (e *env) committed(t *testing.T) int64 {
	t.Helper()
	client := &kafka.Client{Addr: e.kafka.Addr(), Timeout: 10 * time.Second}
	parts := []int{0, 1, 2}
	resp, err := client.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{e.kafka.EnrichedTopic: parts}})
	if err != nil {
		t.Fatalf("OffsetFetch: %v", err)
	}
	if errors.Is(resp.Error, kafka.GroupIdNotFound) {
		return 0 // the group has not joined yet
	}
	if resp.Error != nil {
		t.Fatalf("OffsetFetch: %v", resp.Error)
	}
	var sum int64
	for _, p := range resp.Topics[e.kafka.EnrichedTopic] {
		if p.Error != nil {
			t.Fatalf("OffsetFetch partition %d: %v", p.Partition, p.Error)
		}
		if p.CommittedOffset > 0 {
			sum += p.CommittedOffset
		}
	}
	return sum
}

func (e *env) waitCommitted(t *testing.T, want int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := e.committed(t)
		if got == want {
			return
		}
		if got > want || time.Now().After(deadline) {
			t.Fatalf("committed offsets sum to %d; want %d", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStoresEventsAndCommitsOffsets(t *testing.T) {
	e := newEnv(t)
	const n, more = 300, 50
	e.produce(t, eventMessages(t, 0, n)...)

	stop := e.start(t, testCfg)
	if rows := e.waitUniq(t, n); rows != n {
		t.Errorf("count() = %d; want %d", rows, n)
	}
	stop()
	if got, end := e.committed(t), kafkatest.Count(t, e.kafka.Brokers, e.kafka.EnrichedTopic); got != n || end != n {
		t.Fatalf("committed offsets sum to %d, topic end offsets to %d; want both %d", got, end, n)
	}

	// A sinker restarted in the same group resumes after the commits: the
	// first n are not inserted again.
	e.produce(t, eventMessages(t, n, n+more)...)
	stop = e.start(t, testCfg)
	if rows := e.waitUniq(t, n+more); rows != n+more {
		t.Errorf("count() after restart = %d; want %d (nothing re-inserted)", rows, n+more)
	}
	stop()
	if got := e.committed(t); got != n+more {
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
		sink.ReasonDecodeError:  {1, garbage},
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

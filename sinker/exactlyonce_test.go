package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/lib/chtest"
	"github.com/aluminiapp/pipeline/lib/eventually"
	"github.com/aluminiapp/pipeline/lib/kafkaconf"
	"github.com/aluminiapp/pipeline/lib/kafkatest"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
	"github.com/aluminiapp/pipeline/sinker/internal/faultpoint"
)

// binDir holds the binary the process tests build; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		if err := os.RemoveAll(binDir); err != nil {
			fmt.Fprintln(os.Stderr, "removing the test binary:", err)
		}
	}
	os.Exit(code)
}

// buildSinker builds this module's binary once per test run.
var buildSinker = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "alumini-sinker-bin-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "sinker")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// syncBuffer collects a process's output for the failure message.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// sinkerProc is one running sinker process.
type sinkerProc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// crashRig is what the exactly-once test runs sinker processes against.
type crashRig struct {
	t        *testing.T
	bin      string
	kafka    kafkaconf.Config
	database string
	conn     driver.Conn
	next     int // the next event number to produce
}

func (r *crashRig) start(name, fault string, args ...string) *sinkerProc {
	r.t.Helper()
	all := append([]string{
		"--kafka-brokers", r.kafka.Brokers, "--kafka-partitions", "3",
		"--clickhouse-addr", chtest.Addr(), "--clickhouse-database", r.database,
		"--group-id", "exactly-once", "--admin-addr", "127.0.0.1:0",
		"--batch-max-rows", "200", "--batch-max-wait", "150ms",
		// The shortest session the broker allows: a killed member's
		// partitions move after a second instead of thirty.
		"--kafka-session-timeout", "1s", "--shutdown-timeout", "15s", "--log-format", "console",
	}, args...)
	cmd := exec.Command(r.bin, all...)
	cmd.Env = os.Environ()
	if fault != "" {
		cmd.Env = append(cmd.Env, faultpoint.EnvVar+"="+fault)
	}
	p := &sinkerProc{name: name, cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("starting sinker %s: %v", name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	r.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill() // the test failed midway; the process must not outlive it
			<-p.done
		}
		if r.t.Failed() {
			r.t.Logf("output of sinker %s:\n%s", name, p.out.String())
		}
	})
	return p
}

// waitKilled waits until the process killed itself at its fault point.
func (r *crashRig) waitKilled(p *sinkerProc, produceWhileWaiting bool) {
	r.t.Helper()
	deadline := time.After(60 * time.Second)
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			var ee *exec.ExitError
			if !errors.As(p.err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				r.t.Fatalf("sinker %s ended with %v; want death by SIGKILL at its fault point\n%s", p.name, p.err, p.out.String())
			}
			return
		case <-tick.C:
			if produceWhileWaiting {
				r.produceNew(60)
			}
		case <-deadline:
			r.t.Fatalf("sinker %s did not reach its fault point within 60s\n%s", p.name, p.out.String())
		}
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (r *crashRig) stop(p *sinkerProc) {
	r.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		r.t.Fatal(err)
	}
	select {
	case <-p.done:
		if p.err != nil {
			r.t.Fatalf("sinker %s ended with %v after SIGTERM; want a clean exit\n%s", p.name, p.err, p.out.String())
		}
	case <-time.After(30 * time.Second):
		r.t.Fatalf("sinker %s did not stop within 30s of SIGTERM", p.name)
	}
}

// crashEvent is event number i; every fourth is a custom event, the rest
// page views, from 97 visitors over a few days.
func crashEvent(i int) *aluminiv1.Event {
	ts := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * 37 * time.Second)
	typ := aluminiv1.EventType_EVENT_TYPE_PAGEVIEW
	if i%4 == 0 {
		typ = aluminiv1.EventType_EVENT_TYPE_CUSTOM
	}
	return &aluminiv1.Event{
		ClientId: "shop", EventId: fmt.Sprintf("ev-%06d", i), Type: typ,
		TimestampMs: ts.UnixMilli(), ReceivedAtMs: ts.UnixMilli(), Path: fmt.Sprintf("/p/%d", i%13),
		VisitorId: uint64(1 + i%97), SessionId: uint64(1 + i%301),
	}
}

func (r *crashRig) produce(from, to int) {
	r.t.Helper()
	msgs := make([]kafka.Message, 0, to-from)
	for i := from; i < to; i++ {
		v, err := proto.Marshal(crashEvent(i))
		if err != nil {
			r.t.Fatal(err)
		}
		msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "visitor-%d", i%97), Value: v})
	}
	w := &kafka.Writer{Addr: r.kafka.Addr(), Topic: r.kafka.EnrichedTopic, Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		r.t.Fatalf("producing: %v", err)
	}
	if err := w.Close(); err != nil {
		r.t.Fatal(err)
	}
}

func (r *crashRig) produceNew(n int) {
	r.t.Helper()
	r.produce(r.next, r.next+n)
	r.next += n
}

func (r *crashRig) waitAllCommitted() {
	r.t.Helper()
	end := int64(kafkatest.Count(r.t, r.kafka.Brokers, r.kafka.EnrichedTopic))
	var committed int64
	if !eventually.Within(60*time.Second, func() bool {
		committed = kafkatest.Committed(r.t, r.kafka.Brokers, "exactly-once", r.kafka.EnrichedTopic)
		return committed == end
	}) {
		r.t.Fatalf("after 60s the group committed %d of %d records", committed, end)
	}
}

func (r *crashRig) query(sql string, args ...any) []uint64 {
	r.t.Helper()
	rows, err := r.conn.Query(context.Background(), sql, args...)
	if err != nil {
		r.t.Fatalf("%v\n%s", err, sql)
	}
	defer rows.Close()
	if !rows.Next() {
		r.t.Fatalf("no row from %s", sql)
	}
	vals := make([]uint64, len(rows.ColumnTypes()))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		r.t.Fatal(err)
	}
	return vals
}

// reporterAggregateSQL counts as the reporter does (reporter/internal/query,
// builders.go: event counts from events FINAL, visitors as a distinct
// count); written out here because internal packages of another module
// cannot be imported.
const reporterAggregateSQL = `SELECT
    countIf(type = 'pageview') AS pageviews,
    uniqExact(visitor_id) AS visitors,
    count() AS events
FROM %s FINAL
WHERE client_id = ?
  AND timestamp >= toDateTime(?) AND timestamp < toDateTime(?)
  AND is_bot = 0`

// TestExactlyOnceAcrossCrashesAndRebalances runs the real sinker binary and
// SIGKILLs it before an insert, during one, between an insert and its
// commit, and kills a second sinker that joined the group mid-stream; a
// third joins and leaves cleanly. Afterwards the reporter's counts equal the
// accepted events exactly, while a table without deduplication fed the
// same inserts shows the duplicates the crashes caused (the negative
// control: without idempotent storage this test would fail).
func TestExactlyOnceAcrossCrashesAndRebalances(t *testing.T) {
	bin, err := buildSinker()
	if err != nil {
		t.Fatal(err)
	}
	_, brokers := kafkatest.Start(t, kfake.GroupMinSessionTimeout(time.Second))
	database, conn := chtest.Database(t)
	r := &crashRig{t: t, bin: bin, database: database, conn: conn, kafka: kafkaconf.Config{
		Brokers: brokers, EnrichedTopic: "alumini.enriched", DeadLetterTopic: "alumini.dead-letter", Partitions: 3, ReplicationFactor: 1,
	}}
	ctx := context.Background()
	if err := r.kafka.EnsureTopics(ctx, r.kafka.EnrichedTopic, r.kafka.DeadLetterTopic); err != nil {
		t.Fatal(err)
	}

	// `sinker migrate`, then the negative control: a plain MergeTree copy of
	// every row the sinkers insert, which no merge deduplicates.
	if out, err := exec.Command(bin, "migrate", "--clickhouse-addr", chtest.Addr(), "--clickhouse-database", database).CombinedOutput(); err != nil {
		t.Fatalf("sinker migrate: %v\n%s", err, out)
	}
	for _, stmt := range []string{
		// The columns of SELECT *, so MATERIALIZED columns of events
		// (computed there, not inserted) do not become expected inputs.
		"CREATE TABLE events_nodedup ENGINE = MergeTree PARTITION BY toYYYYMM(timestamp) ORDER BY (client_id, event_id) AS SELECT * FROM events WHERE 0",
		"CREATE MATERIALIZED VIEW events_nodedup_mv TO events_nodedup AS SELECT * FROM events",
	} {
		if err := conn.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}

	for _, fault := range []string{
		faultpoint.BeforeInsert + ":2",
		faultpoint.DuringInsert + ":2",
		faultpoint.AfterInsert + ":2",
	} {
		r.produceNew(700)
		r.waitKilled(r.start(fault, fault), false)
	}

	// Rebalances: A runs; B joins and is killed after inserting its first
	// batch, before committing it; C joins and leaves cleanly.
	a := r.start("A", "")
	r.produce(0, 500) // the enricher replays events it already sent
	r.produceNew(300)
	b := r.start("B", faultpoint.AfterInsert+":1")
	r.waitKilled(b, true) // keeps producing until B owns a partition and dies
	// C logs its inserts (a debug line), so that the test keeps events
	// coming until C has owned a partition and stored a batch, and only
	// then lets it leave.
	c := r.start("C", "", "--log-level", "debug")
	eventually.True(t, 60*time.Second, "sinker C to insert a batch while events flow", func() bool {
		r.produceNew(60)
		return strings.Contains(c.out.String(), "batch inserted")
	})
	r.stop(c)
	r.produceNew(400)
	r.waitAllCommitted()
	r.stop(a)

	// What was accepted: events 0..next-1, each once.
	var pageviews uint64
	visitors := map[uint64]bool{}
	for i := 0; i < r.next; i++ {
		ev := crashEvent(i)
		if ev.Type == aluminiv1.EventType_EVENT_TYPE_PAGEVIEW {
			pageviews++
		}
		visitors[ev.VisitorId] = true
	}
	distinct := uint64(r.next)
	from, to := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Unix(), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).Unix()

	got := r.query(fmt.Sprintf(reporterAggregateSQL, "events"), "shop", from, to)
	if want := []uint64{pageviews, uint64(len(visitors)), distinct}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("reporter totals (pageviews, visitors, events) = %v; want %v", got, want)
	}
	if got := r.query("SELECT uniqExact(event_id), count() FROM events FINAL"); got[0] != distinct || got[1] != distinct {
		t.Errorf("uniqExact(event_id), count() FROM events FINAL = %v; want %d each", got, distinct)
	}

	// The negative control: the same inserts without deduplication.
	rows := r.query("SELECT count(), countIf(type = 'pageview') FROM events_nodedup")
	t.Logf("accepted %d distinct events (%d page views); the sinkers inserted %d rows", distinct, pageviews, rows[0])
	if rows[0] <= distinct || rows[1] <= pageviews {
		t.Errorf("events_nodedup holds %d rows, %d page views; want more than %d and %d: the crashes must have replayed rows, or this test proves nothing", rows[0], rows[1], distinct, pageviews)
	}
}

package sink_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/lib/chconf"
	"github.com/aluminiapp/pipeline/lib/chtest"
	"github.com/aluminiapp/pipeline/lib/eventually"
	"github.com/aluminiapp/pipeline/lib/kafkatest"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
	"github.com/aluminiapp/pipeline/sinker/internal/sink"
	"github.com/aluminiapp/pipeline/sinker/internal/store"
)

// TestPoisonRowsAreSplitOutAndDeadLettered makes ClickHouse itself refuse
// some rows for their data (a MATERIALIZED column computing throwIf, which
// fails the whole block before anything is written) and checks that the
// sinker stores every other row and dead-letters exactly the refused ones.
func TestPoisonRowsAreSplitOutAndDeadLettered(t *testing.T) {
	e := newEnv(t)
	if err := e.conn.Exec(context.Background(), "ALTER TABLE events ADD COLUMN poison UInt8 MATERIALIZED throwIf(path IN ('/p/17', '/p/90', '/p/91'))"); err != nil {
		t.Fatal(err)
	}
	const n = 200
	key := []byte("one-partition") // offsets 0..n-1 = event numbers
	var msgs []kafka.Message
	for i := range n {
		msgs = append(msgs, kafka.Message{Key: key, Value: marshal(t, event(i))})
	}
	e.produce(t, msgs...)

	reg := prometheus.NewRegistry()
	e.startSink(t, sink.Config{MaxRows: 500, MaxBytes: 1 << 20, MaxWait: 500 * time.Millisecond}, e.store, reg, nil)
	e.waitCommitted(t, n)
	if uniq, rows := e.counts(t); uniq != n-3 || rows != n-3 {
		t.Errorf("uniqExact(event_id), count() = %d, %d; want %d, %d (all but the three refused)", uniq, rows, n-3, n-3)
	}
	dead := kafkatest.ReadAll(t, e.kafka.Brokers, e.kafka.DeadLetterTopic, 3, 10*time.Second)
	offsets := map[int64]bool{}
	for _, m := range dead {
		var dl aluminiv1.DeadLetter
		if err := proto.Unmarshal(m.Value, &dl); err != nil {
			t.Fatal(err)
		}
		if dl.Reason != sink.ReasonRejected || dl.Error == "" || string(dl.Original) != string(marshal(t, event(int(dl.SourceOffset)))) {
			t.Errorf("dead letter = reason %q, error %q, offset %d; want %s with the error and the original record", dl.Reason, dl.Error, dl.SourceOffset, sink.ReasonRejected)
		}
		offsets[dl.SourceOffset] = true
	}
	if len(dead) != 3 || !offsets[17] || !offsets[90] || !offsets[91] {
		t.Errorf("dead-lettered offsets %v; want 17, 90 and 91", offsets)
	}
	if got := testutil.ToFloat64(mustCounterVec(t, reg, "alumini_sinker_dead_letters_total", sink.ReasonRejected)); got != 3 {
		t.Errorf("dead_letters_total{reason=%s} = %v; want 3", sink.ReasonRejected, got)
	}
}

func mustCounterVec(t *testing.T, reg *prometheus.Registry, name, label string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == label {
					c := prometheus.NewCounter(prometheus.CounterOpts{Name: "copy"})
					c.Add(m.GetCounter().GetValue())
					return c
				}
			}
		}
	}
	t.Fatalf("metric %s{%s} not found", name, label)
	return nil
}

// countingReader counts the records the sink fetched, handing them out
// countingChunk at most at a time, so that the count is close to what the
// sink took into batches.
type countingReader struct {
	sink.Reader
	fetched atomic.Int64
	rest    []kafka.Message // of the inner reader's last fetch, valid until its next
}

const countingChunk = 10

func (r *countingReader) FetchBatch(ctx context.Context) ([]kafka.Message, error) {
	if len(r.rest) == 0 {
		msgs, err := r.Reader.FetchBatch(ctx)
		if err != nil {
			return nil, err
		}
		r.rest = msgs
	}
	n := min(len(r.rest), countingChunk)
	msgs := r.rest[:n]
	r.rest = r.rest[n:]
	r.fetched.Add(int64(n))
	return msgs, nil
}

// TestClickHouseOutage cuts the sinker's TCP path to ClickHouse (a proxy the
// test owns; the shared server keeps running) while records keep arriving:
// readiness must turn false, nothing may be committed, fetching must stop
// after the batch in retry and one more, and once the path is back the sinker must catch up by itself.
func TestClickHouseOutage(t *testing.T) {
	e := newEnv(t)
	px := startProxy(t, chtest.Addr())
	name := currentDatabase(t, e)
	cfg := chconf.Config{Addr: px.addr, Database: name}
	conn, err := cfg.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Logf("closing proxied connection: %v", err)
		}
	})
	reg := prometheus.NewRegistry()
	counter := &countingReader{}
	const batchRows = 40
	s, _ := e.startSink(t, sink.Config{MaxRows: batchRows, MaxBytes: 1 << 20, MaxWait: 100 * time.Millisecond,
		BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond, AttemptTimeout: 2 * time.Second},
		store.New(conn), reg, func(r sink.Reader) sink.Reader { counter.Reader = r; return counter })

	e.produce(t, eventMessages(t, 0, 100)...)
	e.waitUniq(t, 100)
	e.waitCommitted(t, 100)

	px.cut()
	e.produce(t, eventMessages(t, 100, 400)...)
	waitFor(t, "readiness to turn false", func() bool { return errors.Is(s.Ready(context.Background()), sink.ErrNotReady) })
	// The batch in retry and the next one fill; whatever the first held,
	// the second's rows take the count past one batch beyond the 100.
	waitFor(t, "the next batch to fill while the first is retried", func() bool { return counter.fetched.Load() > 100+batchRows })
	fetchedAtCut := counter.fetched.Load()
	// Several retries later nothing more may have been fetched.
	retriesAtCut := testutil.ToFloat64(mustGauge(t, reg, "alumini_sinker_insert_retries_total"))
	waitFor(t, "three more insert retries", func() bool {
		return testutil.ToFloat64(mustGauge(t, reg, "alumini_sinker_insert_retries_total")) >= retriesAtCut+3
	})
	if got := kafkatest.Committed(t, e.kafka.Brokers, group, e.kafka.EnrichedTopic); got != 100 {
		t.Errorf("committed offsets during the outage sum to %d; want 100 (nothing new stored)", got)
	}
	if got := counter.fetched.Load(); got > 100+2*batchRows+countingChunk || got != fetchedAtCut {
		t.Errorf("records fetched during the outage: %d, then %d; want at most two batches and a fetch (%d) beyond the 100 stored, and no more while retrying", fetchedAtCut, got, 2*batchRows+countingChunk)
	}
	if got := testutil.ToFloat64(mustGauge(t, reg, "alumini_sinker_insert_retries_total")); got < 2 {
		t.Errorf("insert_retries_total = %v during the outage; want several", got)
	}

	px.restore(t)
	e.waitUniq(t, 400)
	e.waitCommitted(t, 400)
	waitFor(t, "readiness to turn true", func() bool { return s.Ready(context.Background()) == nil })
}

func mustGauge(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "copy"})
			m := mf.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				g.Set(c.GetValue())
			} else {
				g.Set(m.GetGauge().GetValue())
			}
			return g
		}
	}
	t.Fatalf("metric %s not found", name)
	return nil
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	eventually.True(t, 20*time.Second, what, ok)
}

func currentDatabase(t *testing.T, e *env) string {
	t.Helper()
	var name string
	if err := e.conn.QueryRow(context.Background(), "SELECT currentDatabase()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

// proxy forwards TCP connections to target until cut, which closes the
// listener and every forwarded connection, as a network partition would.
type proxy struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        []net.Conn
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	p := &proxy{addr: "127.0.0.1:0", target: target}
	p.restore(t)
	p.addr = p.ln.Addr().String()
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) restore(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("proxy listening on %s: %v", p.addr, err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // cut
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				_ = c.Close() // the test sees the failure through the client
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go pipe(c, up)
			go pipe(up, c)
		}
	}()
}

func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src) // ends when either side is closed; cut closes both
	_ = dst.Close()
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close() // a closed listener's error says nothing new
		p.ln = nil
	}
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

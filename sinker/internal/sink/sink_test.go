package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/lib/eventually"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// journal records what the fakes were asked to do, in order.
type journal struct {
	mu      sync.Mutex
	entries []string
	batches []int // sizes of accepted inserts
	fetched int
	commits []map[int]int64
}

func (j *journal) add(e string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.entries = append(j.entries, e)
}

func (j *journal) snapshot() (entries []string, batches []int, fetched int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.entries), slices.Clone(j.batches), j.fetched
}

// fakeReader hands out the messages sent on ch, one partition, offsets in
// order, up to chunk (at least 1) per fetch.
type fakeReader struct {
	ch    chan kafka.Message
	chunk int
	j     *journal
}

func (r *fakeReader) FetchBatch(ctx context.Context) ([]kafka.Message, error) {
	var msgs []kafka.Message
	select {
	case m := <-r.ch:
		msgs = append(msgs, m)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for len(msgs) < r.chunk {
		select {
		case m := <-r.ch:
			msgs = append(msgs, m)
			continue
		default:
		}
		break
	}
	r.j.mu.Lock()
	r.j.fetched += len(msgs)
	r.j.mu.Unlock()
	return msgs, nil
}

// CommitOffsets journals "commit N", N the next offset of partition 0:
// the records committed so far, as the tests send offsets from 0.
func (r *fakeReader) CommitOffsets(_ context.Context, next map[int]int64) error {
	r.j.mu.Lock()
	defer r.j.mu.Unlock()
	r.j.entries = append(r.j.entries, fmt.Sprintf("commit %d", next[0]))
	r.j.commits = append(r.j.commits, maps.Clone(next))
	return nil
}

// checkCommits checks that entries commit only records inserted before,
// in growing offsets, and at last all total of them; it returns entries
// without the commits.
func checkCommits(t *testing.T, entries []string, total int) []string {
	t.Helper()
	var rest []string
	inserted, committed := 0, 0
	for _, e := range entries {
		var n int
		if _, err := fmt.Sscanf(e, "commit %d", &n); err == nil {
			if n > inserted || n <= committed {
				t.Errorf("journal %q commits up to %d after %d records were inserted and %d committed; want more than committed, at most inserted", entries, n, inserted, committed)
			}
			committed = n
			continue
		}
		if _, err := fmt.Sscanf(e, "insert %d", &n); err == nil {
			inserted += n
		}
		rest = append(rest, e)
	}
	if committed != total {
		t.Errorf("journal %q commits %d records at last; want %d", entries, committed, total)
	}
	return rest
}

// fakeStore fails its first failures inserts and calls onInsert before each.
type fakeStore struct {
	j        *journal
	failures int
	calls    int
	onInsert func(call int)
}

func (s *fakeStore) Insert(_ context.Context, events []*aluminiv1.Event) error {
	s.calls++
	if s.onInsert != nil {
		s.onInsert(s.calls)
	}
	if s.calls <= s.failures {
		s.j.add("insert failed")
		return errors.New("clickhouse is down")
	}
	s.j.mu.Lock()
	defer s.j.mu.Unlock()
	s.j.entries = append(s.j.entries, fmt.Sprintf("insert %d", len(events)))
	s.j.batches = append(s.j.batches, len(events))
	return nil
}

type fakeWriter struct{ j *journal }

func (w *fakeWriter) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	w.j.add(fmt.Sprintf("dead-letter %d", len(msgs)))
	return nil
}

func eventMessage(t *testing.T, offset int64) kafka.Message {
	t.Helper()
	v, err := proto.Marshal(&aluminiv1.Event{ClientId: "shop", EventId: fmt.Sprintf("e%d", offset)})
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Message{Topic: "enriched", Partition: 0, Offset: offset, Value: v}
}

// running is a Sink running in the background on fakes.
type running struct {
	sink   *Sink
	reader *fakeReader
	store  *fakeStore
	j      *journal
	cancel context.CancelFunc
	done   chan error
}

func startFake(t *testing.T, cfg Config, store *fakeStore) *running {
	t.Helper()
	j := &journal{}
	if store == nil {
		store = &fakeStore{}
	}
	store.j = j
	r := &running{reader: &fakeReader{ch: make(chan kafka.Message, 1000), chunk: 1, j: j}, store: store, j: j, done: make(chan error, 1)}
	r.sink = New(cfg, r.reader, &fakeWriter{j: j}, store, zap.NewNop(), prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.sink.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

func (r *running) send(t *testing.T, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		r.reader.ch <- eventMessage(t, int64(i))
	}
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run after cancel = %v; want nil", err)
		}
		r.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of cancel")
	}
}

// waitBatches waits until the store accepted want batches and returns their sizes.
func waitBatches(t *testing.T, j *journal, want int, timeout time.Duration) []int {
	t.Helper()
	var batches []int
	if !eventually.Within(timeout, func() bool { _, batches, _ = j.snapshot(); return len(batches) >= want }) {
		t.Fatalf("after %v the store holds batches %v; want %d batches", timeout, batches, want)
	}
	return batches
}

func TestBatchFlushesOnRowsAndTime(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		send    int
		running []int // batches inserted while running
		stopped []int // batches after shutdown flushed the last one
	}{
		{"row count", Config{MaxRows: 10, MaxBytes: 1 << 20, MaxWait: time.Hour}, 25, []int{10, 10}, []int{10, 10, 5}},
		{"time", Config{MaxRows: 1000, MaxBytes: 1 << 20, MaxWait: 100 * time.Millisecond}, 7, []int{7}, []int{7}},
		// Each event record is about 10 bytes: the fourth passes 35 bytes.
		{"bytes", Config{MaxRows: 1000, MaxBytes: 35, MaxWait: time.Hour}, 6, []int{4}, []int{4, 2}},
	}
	for _, tt := range tests {
		// In a bubble: the sink's timers run on the fake clock, and
		// synctest.Wait tells when the sink has handled all it was sent.
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := startFake(t, tt.cfg, nil)
				// Fetches of up to 3 records, so batches end inside a fetch.
				// (Set before the first send, which the fake's first fetch
				// receives: no race.)
				r.reader.chunk = 3
				start := time.Now()
				r.send(t, 0, tt.send)
				waitBatches(t, r.j, len(tt.running), 5*time.Second)
				elapsed := time.Since(start)
				// Every record handled and the sink idle, then 50ms more on
				// the fake clock (not synchronisation: a window for a timer
				// that flushed the remainder early to fire in).
				synctest.Wait()
				if _, _, fetched := r.j.snapshot(); fetched != tt.send {
					t.Fatalf("the sink fetched %d records; want all %d", fetched, tt.send)
				}
				time.Sleep(50 * time.Millisecond)
				synctest.Wait()
				_, got, _ := r.j.snapshot()
				if !slices.Equal(got, tt.running) {
					t.Errorf("batches while running = %v; want %v", got, tt.running)
				}
				if tt.cfg.MaxWait < time.Hour && elapsed < tt.cfg.MaxWait {
					t.Errorf("time-limited batch inserted after %v; want at least MaxWait %v", elapsed, tt.cfg.MaxWait)
				}
				r.stop(t)
				entries, got, _ := r.j.snapshot()
				if !slices.Equal(got, tt.stopped) {
					t.Errorf("batches after shutdown = %v; want %v", got, tt.stopped)
				}
				// Offsets are committed only once their records are stored,
				// and at last all of them.
				var want []string
				for _, n := range tt.stopped {
					want = append(want, fmt.Sprintf("insert %d", n))
				}
				if got := checkCommits(t, entries, tt.send); !slices.Equal(got, want) {
					t.Errorf("journal without commits = %q; want %q", got, want)
				}
			})
		})
	}
}

func TestInsertFailureIsRetriedBeforeCommit(t *testing.T) {
	var readyWhileFailing error
	var fetchedWhileFailing int
	var r *running
	store := &fakeStore{failures: 3, onInsert: func(call int) {
		if call == 3 {
			readyWhileFailing = r.sink.Ready(context.Background())
			_, _, fetchedWhileFailing = r.j.snapshot()
		}
	}}
	// Start with the store's hook able to see r: the hook first runs after
	// a batch of 5 arrived, which is after the assignment below.
	r = startFake(t, Config{MaxRows: 5, MaxBytes: 1 << 20, MaxWait: time.Hour, BackoffMin: time.Millisecond, BackoffMax: 4 * time.Millisecond}, store)
	r.send(t, 0, 12)
	waitBatches(t, r.j, 1, 5*time.Second)

	if !errors.Is(readyWhileFailing, ErrNotReady) {
		t.Errorf("Ready while inserts fail = %v; want %v", readyWhileFailing, ErrNotReady)
	}
	// The next batch may fill while the first is retried, but no third.
	if fetchedWhileFailing < 5 || fetchedWhileFailing > 10 {
		t.Errorf("records fetched while retrying = %d; want 5 to 10 (at most the batch in retry and the next)", fetchedWhileFailing)
	}
	if err := r.sink.Ready(context.Background()); err != nil {
		t.Errorf("Ready after a successful insert = %v; want nil", err)
	}
	if got := testutil.ToFloat64(r.sink.m.insertRetries); got != 3 {
		t.Errorf("insert retries metric = %v; want 3", got)
	}
	// Stop only once all 12 records were fetched: stopping earlier flushes
	// a shorter last batch (seen under a loaded `make test`), which is
	// right but not what this test is about.
	eventually.True(t, 5*time.Second, "the sink to fetch all 12 records", func() bool { _, _, fetched := r.j.snapshot(); return fetched >= 12 })
	r.stop(t)
	entries, _, _ := r.j.snapshot()
	want := []string{"insert failed", "insert failed", "insert failed", "insert 5", "insert 5", "insert 2"}
	if got := checkCommits(t, entries, 12); !slices.Equal(got, want) {
		t.Errorf("journal without commits = %q; want %q", got, want)
	}
	if got := testutil.ToFloat64(r.sink.m.rowsInserted); got != 12 {
		t.Errorf("rows inserted metric = %v; want 12", got)
	}
}

func TestShutdownGivesUpFlushAfterFlushTimeout(t *testing.T) {
	store := &fakeStore{failures: 1 << 30}
	r := startFake(t, Config{MaxRows: 5, MaxBytes: 1 << 20, MaxWait: time.Hour, FlushTimeout: 50 * time.Millisecond, BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond}, store)
	r.send(t, 0, 2)
	// Shut down with both records in the batch that cannot be stored.
	eventually.True(t, 5*time.Second, "the sink to fetch both records", func() bool { _, _, fetched := r.j.snapshot(); return fetched >= 2 })
	r.cancel()
	select {
	case err := <-r.done:
		if err == nil {
			t.Fatal("Run with ClickHouse down = nil; want the flush error")
		}
		r.done <- err
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not give up within 5s; want FlushTimeout (50ms)")
	}
	entries, _, _ := r.j.snapshot()
	if slices.ContainsFunc(entries, func(e string) bool { return strings.HasPrefix(e, "commit") }) {
		t.Errorf("journal = %q; want no commit of a batch that was not stored", entries)
	}
}

func TestRecordsThatCannotBeStoredAreDeadLettered(t *testing.T) {
	noID, err := proto.Marshal(&aluminiv1.Event{ClientId: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	// A client that keeps truncated IPs: the dead letter still holds none.
	const network = "203.0.113.0"
	withIP, err := proto.Marshal(&aluminiv1.Event{ClientId: "shop", Path: "/p", IpTruncated: network})
	if err != nil {
		t.Fatal(err)
	}
	withIPWant, err := proto.Marshal(&aluminiv1.Event{ClientId: "shop", Path: "/p"})
	if err != nil {
		t.Fatal(err)
	}
	// proto.Marshal refuses strings that are not UTF-8; a foreign producer
	// may still send them, and protobuf-go's decoder refuses them too.
	var notUTF8 []byte
	notUTF8 = protowire.AppendTag(notUTF8, 1, protowire.BytesType) // client_id
	notUTF8 = protowire.AppendString(notUTF8, "shop")
	notUTF8 = protowire.AppendTag(notUTF8, 2, protowire.BytesType) // event_id
	notUTF8 = protowire.AppendString(notUTF8, "e1")
	notUTF8 = protowire.AppendTag(notUTF8, 9, protowire.BytesType) // path
	notUTF8 = protowire.AppendString(notUTF8, "/caf\xe9")
	if proto.Unmarshal(notUTF8, &aluminiv1.Event{}) == nil {
		t.Fatal("the record meant to hold a string that is not UTF-8 decodes with protobuf-go")
	}
	notUTF8WithIP := protowire.AppendTag(slices.Clone(notUTF8), 39, protowire.BytesType) // ip_truncated
	notUTF8WithIP = protowire.AppendString(notUTF8WithIP, network)
	tests := []struct {
		name   string
		value  []byte
		reason string
		// original is what the dead letter keeps; nil: value unchanged.
		original []byte
	}{
		{"not a proto", []byte{0xff, 0xff, 0xff}, ReasonDecodeError, []byte{}},
		{"no event id", noID, ReasonInvalidEvent, nil},
		{"string not UTF-8", notUTF8, ReasonDecodeError, nil},
		{"no event id, truncated IP", withIP, ReasonInvalidEvent, withIPWant},
		{"string not UTF-8, truncated IP", notUTF8WithIP, ReasonDecodeError, notUTF8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &batch{}
			s := New(Config{}, nil, nil, nil, zap.NewNop(), prometheus.NewRegistry())
			m := kafka.Message{Topic: "enriched", Partition: 2, Offset: 41, Key: []byte("k"), Value: tt.value}
			if err := s.add(t.Context(), b, m); err != nil {
				t.Fatalf("add = %v; want nil", err)
			}
			if len(b.events) != 0 || len(b.dead) != 1 || len(b.msgs) != 1 {
				t.Fatalf("batch has %d events, %d dead letters, %d records; want 0, 1, 1", len(b.events), len(b.dead), len(b.msgs))
			}
			var dl aluminiv1.DeadLetter
			if err := proto.Unmarshal(b.dead[0].Value, &dl); err != nil {
				t.Fatalf("dead letter does not decode: %v", err)
			}
			original := tt.original
			if original == nil {
				original = tt.value
			}
			if dl.Reason != tt.reason || dl.Stage != Stage || dl.SourceTopic != "enriched" || dl.SourcePartition != 2 || dl.SourceOffset != 41 || string(dl.Original) != string(original) || dl.Error == "" {
				t.Errorf("dead letter = %v; want reason %s from enriched/2@41 with the original bytes %x and an error", &dl, tt.reason, original)
			}
			if bytes.Contains(b.dead[0].Value, []byte(network)) || strings.Contains(dl.Error, network) {
				t.Errorf("dead letter %x holds the truncated IP %s", b.dead[0].Value, network)
			}
			if string(b.dead[0].Key) != "k" {
				t.Errorf("dead letter key = %q; want the original %q", b.dead[0].Key, "k")
			}
		})
	}
}

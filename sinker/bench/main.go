// Command bench measures the sinker's throughput from Kafka to ClickHouse
// against two ceilings measured in the same run: clickhouse-client
// inserting the same rows in Native format into the same schema, and a
// bare consumer draining the same topic from the same broker.
//
//	go run ./bench -rows 500000 -clickhouse-addr 127.0.0.1:19000
//
// It starts an in-process Kafka-protocol broker (kfake) unless
// -kafka-brokers names one (deploy/devkafka, a real Kafka), produces the
// events, drains them once with one connection per partition (the broker
// alone), runs the sinker's real consume → batch → insert → commit loop
// until every event is stored, then dumps the stored rows with
// clickhouse-client and inserts them again into a fresh database's events
// table (the same migrations; no views fire on insert since schema
// version 7).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/lib/chconf"
	"github.com/aluminiapp/pipeline/lib/chschema"
	"github.com/aluminiapp/pipeline/lib/kafkaconf"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
	"github.com/aluminiapp/pipeline/sinker/internal/sink"
	"github.com/aluminiapp/pipeline/sinker/internal/store"
)

func main() {
	rows := flag.Int("rows", 1_000_000, "events to produce and store")
	batchRows := flag.Int("batch-max-rows", 100_000, "the sinker's batch-max-rows")
	partitions := flag.Int("partitions", 6, "partitions of the enriched topic")
	addr := flag.String("clickhouse-addr", "127.0.0.1:19000", "ClickHouse native address (clickhouse-client uses its host and port)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	brokers := flag.String("kafka-brokers", "", "an external broker to use (e.g. deploy/devkafka at 127.0.0.1:9092); empty starts kfake in this process")
	verbose := flag.Bool("v", false, "log the sink (debug level) to stderr")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*rows, *batchRows, *partitions, *addr, *brokers, *verbose); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func event(i int) *aluminiv1.Event {
	ts := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * 2 * time.Second)
	paths := []string{"/", "/pricing", "/blog/why-clickhouse", "/docs/getting-started", "/signup"}
	browsers := []string{"Firefox", "Chrome", "Safari", "Edge"}
	ev := &aluminiv1.Event{
		ClientId: fmt.Sprintf("client-%d", i%20), EventId: fmt.Sprintf("0193a8c4-%08x-7000-8000-%012x", i, i*7919),
		Type: aluminiv1.EventType_EVENT_TYPE_PAGEVIEW, TimestampMs: ts.UnixMilli(), ReceivedAtMs: ts.UnixMilli() + 40,
		Url: "https://shop.example" + paths[i%5] + "?utm_source=news", Hostname: "shop.example", Path: paths[i%5],
		Title: "Shop — " + paths[i%5], Referrer: "https://www.google.com/",
		Browser: browsers[i%4], BrowserVersion: "120.0", Os: "Linux", OsVersion: "6.1",
		DeviceType: aluminiv1.DeviceType_DEVICE_TYPE_DESKTOP, ReferrerSource: "Google", ReferrerMedium: "search",
		UtmSource: "news", UtmMedium: "email", UtmCampaign: "winter", Country: "DE", Region: "DE-BE", City: "Berlin",
		Language: "de-DE", ScreenWidth: 1920, ScreenHeight: 1080, Timezone: "Europe/Berlin",
		VisitorId: uint64(i%50_000) * 2654435761, SessionId: uint64(i/4) * 40503, IsNewVisitor: i%9 == 0,
	}
	if i%10 == 0 {
		ev.Type, ev.Name = aluminiv1.EventType_EVENT_TYPE_CUSTOM, "signup"
		ev.Properties = map[string]string{"plan": "pro", "source": "footer"}
	}
	return ev
}

func run(n, batchRows, partitions int, addr, brokers string, verbose bool) error {
	ctx := context.Background()
	log := zap.NewNop()
	if verbose {
		var err error
		if log, err = zap.NewDevelopment(); err != nil {
			return err
		}
	}
	stamp := time.Now().Unix()
	topic := fmt.Sprintf("bench.enriched.%d", stamp)
	brokerName := "external broker " + brokers
	if brokers == "" {
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(partitions))
		if err != nil {
			return err
		}
		defer cluster.Close()
		brokers, brokerName = cluster.ListenAddrs()[0], "kfake in this process"
	}
	kc := kafkaconf.Config{Brokers: brokers, Partitions: partitions, ReplicationFactor: 1}
	if err := kc.EnsureTopics(ctx, topic, topic+".dead-letter"); err != nil {
		return err
	}

	// Five databases with the same migrations: the sinker's, the insert
	// path's alone, and clickhouse-client's before and after the sinker
	// and in the sinker's batches.
	base := fmt.Sprintf("bench_sinker_%d", stamp)
	var stores []*store.Store
	defer func() {
		for i, st := range stores {
			db := []string{base, base + "_store", base + "_client", base + "_client2", base + "_client3"}[i]
			if err := st.Conn().Exec(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
				fmt.Fprintln(os.Stderr, "bench: dropping", db, err)
			}
			if err := st.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "bench: closing clickhouse", err)
			}
		}
	}()
	open := func(db string) (*store.Store, error) {
		st, err := store.Open(ctx, chconf.Config{Addr: addr, Database: db})
		if err != nil {
			return nil, err
		}
		stores = append(stores, st)
		if err := chschema.Apply(ctx, st.Conn(), zap.NewNop()); err != nil {
			return nil, err
		}
		return st, nil
	}
	st, err := open(base)
	if err != nil {
		return err
	}
	direct, err := open(base + "_store")
	if err != nil {
		return err
	}
	for _, db := range []string{base + "_client", base + "_client2", base + "_client3"} {
		if _, err := open(db); err != nil {
			return err
		}
	}
	var version string
	if err := st.Conn().QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		return err
	}

	fmt.Printf("producing %d events into %d partitions of %s...\n", n, partitions, brokerName)
	w := &kafka.Writer{Addr: kafka.TCP(brokers), Topic: topic, Balancer: &kafka.Murmur2Balancer{}, BatchSize: 2_000, BatchBytes: 900 << 10, BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireAll}
	var recordBytes int
	const chunk = 50_000
	for from := 0; from < n; from += chunk {
		msgs := make([]kafka.Message, 0, chunk)
		for i := from; i < min(from+chunk, n); i++ {
			v, err := proto.Marshal(event(i))
			if err != nil {
				return err
			}
			recordBytes += len(v)
			msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "v%d", i%50_000), Value: v})
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}

	// The broker alone: every record read once, counted, not decoded.
	drained, err := drain(ctx, brokers, topic, partitions, n, 1<<20)
	if err != nil {
		return fmt.Errorf("draining the topic: %w", err)
	}

	// The insert path alone: the same events, no Kafka, in batches of
	// batchRows, into the events table of a fresh database.
	var storeOnly time.Duration
	settled(ctx, st)
	events := make([]*aluminiv1.Event, 0, batchRows)
	for from := 0; from < n; from += batchRows {
		events = events[:0]
		for i := from; i < min(from+batchRows, n); i++ {
			events = append(events, event(i))
		}
		t0 := time.Now()
		if err := direct.Insert(ctx, events); err != nil {
			return err
		}
		storeOnly += time.Since(t0)
	}

	// The ceiling: clickhouse-client inserting the same rows in Native
	// format into a fresh database's events table, here and again after
	// the sinker's run.
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "alumini-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cols := strings.Join(chschema.Columns, ", ")
	file := filepath.Join(dir, "events.native")
	if err := client(host, port, base+"_store", fmt.Sprintf("SELECT %s FROM events FORMAT Native", cols), nil, file); err != nil {
		return err
	}
	native, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	ceiling := map[string]time.Duration{}
	insertNative := func(db, table string) error {
		settled(ctx, st)
		t0 := time.Now()
		if err := client(host, port, db, fmt.Sprintf("INSERT INTO %s (%s) FORMAT Native", table, cols), native, ""); err != nil {
			return err
		}
		ceiling[db+"."+table] = time.Since(t0)
		return nil
	}
	if err := insertNative(base+"_client", "events"); err != nil {
		return err
	}
	// The same rows as the sinker's batches: one clickhouse-client insert
	// of batchRows rows each: ClickHouse's work grows with the number of
	// inserts (parts), not only with the rows.
	var batches [][]byte
	for from := 0; from < n; from += batchRows {
		f := filepath.Join(dir, fmt.Sprintf("batch-%d.native", from))
		q := fmt.Sprintf("SELECT %s FROM events ORDER BY timestamp, event_id LIMIT %d, %d FORMAT Native", cols, from, batchRows)
		if err := client(host, port, base+"_store", q, nil, f); err != nil {
			return err
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		batches = append(batches, b)
	}
	settled(ctx, st)
	var batched time.Duration
	for _, b := range batches {
		t0 := time.Now()
		if err := client(host, port, base+"_client3", fmt.Sprintf("INSERT INTO events (%s) FORMAT Native", cols), b, ""); err != nil {
			return err
		}
		batched += time.Since(t0)
	}

	// The sinker: its real reader, batching, store and commit loop.
	settled(ctx, st)
	reader, err := sink.NewReader(sink.ReaderConfig{Brokers: kc.BrokerList(), Topic: topic, GroupID: "bench", SessionTimeout: 10 * time.Second}, log)
	if err != nil {
		return err
	}
	dlq := sink.NewDeadLetterWriter(kafka.TCP(brokers), nil, topic+".dead-letter", log)
	reg := prometheus.NewRegistry()
	timed := &firstFetch{Reader: reader}
	s := sink.New(sink.Config{MaxRows: batchRows, MaxBytes: 256 << 20, MaxWait: time.Second}, timed, dlq, st, log, reg)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	launched := time.Now()
	go func() { done <- s.Run(runCtx) }()
	var elapsed time.Duration
	for {
		// Distinct events, so replayed rows cannot finish the run early.
		var stored uint64
		if err := st.Conn().QueryRow(ctx, "SELECT uniqExact(event_id) FROM events").Scan(&stored); err != nil {
			return err
		}
		if stored >= uint64(n) {
			// From the first record fetched: joining the consumer group
			// (the broker's initial rebalance delay) is startup, not throughput.
			elapsed = time.Since(timed.first())
			break
		}
		select {
		case err := <-done:
			return fmt.Errorf("sink stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		return err
	}
	inserts := gathered(reg, "alumini_sinker_inserts_total")
	insertedRows := gathered(reg, "alumini_sinker_rows_inserted_total")
	insertSeconds := gathered(reg, "alumini_sinker_insert_duration_seconds")
	rs := reader.Stats()
	if err := reader.Close(); err != nil {
		return err
	}
	if err := dlq.Close(); err != nil {
		return err
	}
	if err := insertNative(base+"_client2", "events"); err != nil {
		return err
	}

	rate := func(d time.Duration) float64 { return float64(n) / d.Seconds() }
	// The ceiling is the mean of the runs before and after the sinker's.
	ceilingEvents := (ceiling[base+"_client.events"] + ceiling[base+"_client2.events"]) / 2
	sinkRate, top := rate(elapsed), rate(ceilingEvents)
	fmt.Printf("ClickHouse %s, %d columns, %d events (%.0f bytes each as proto), batch-max-rows %d, %d partitions, %s\n",
		version, len(chschema.Columns), n, float64(recordBytes)/float64(n), batchRows, partitions, brokerName)
	fmt.Printf("sinker reader: %d fetches, %.0f records/fetch, fetch wait avg %v; the sink waited %v for records\n",
		rs.Fetches, float64(rs.Records)/float64(max(rs.Fetches, 1)), (rs.FetchWait / time.Duration(max(rs.Fetches, 1))).Round(time.Microsecond),
		timed.waited.Round(time.Millisecond))
	fmt.Printf("consumer group joined after %.2fs (not counted)\n", timed.first().Sub(launched).Seconds())
	fmt.Printf("%-44s %9s %8s %7s\n", "", "rows/s", "seconds", "ratio")
	line := func(what string, d time.Duration) {
		fmt.Printf("%-44s %9.0f %8.2f %6.2fx\n", what, rate(d), d.Seconds(), rate(d)/top)
	}
	line("clickhouse-client Native into events", ceilingEvents)
	line("  before the sinker", ceiling[base+"_client.events"])
	line("  after the sinker", ceiling[base+"_client2.events"])
	line(fmt.Sprintf("  in inserts of %d rows (%d processes)", batchRows, len(batches)), batched)
	line("broker alone (drain, 1 conn/partition)", drained)
	line("store.Insert alone", storeOnly)
	line("sinker Kafka→ClickHouse", elapsed)
	fmt.Printf("sinker: %.0f inserts, %.0f rows/insert, %.2f inserts/s, %.0f rows inserted (replays included), inserting %.2fs of the %.2fs\n",
		inserts, insertedRows/inserts, inserts/elapsed.Seconds(), insertedRows, insertSeconds, elapsed.Seconds())
	fmt.Printf("sinker / clickhouse-client Native into events: %.2fx\n", sinkRate/top)
	return nil
}

// client runs clickhouse-client with query, stdin from in, stdout to file.
func client(host, port, database, query string, in []byte, outFile string) error {
	cmd := exec.Command("clickhouse-client", "--host", host, "--port", port, "--database", database, "--query", query)
	if in != nil {
		cmd.Stdin = bytes.NewReader(in)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if outFile != "" {
		f, err := os.Create(outFile)
		if err != nil {
			return err
		}
		defer f.Close()
		cmd.Stdout = f
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("clickhouse-client %q: %v: %s", query, err, stderr.String())
	}
	return nil
}

// settled waits until ClickHouse runs no merges (at most a minute), so
// the merges one measurement started do not slow the next one down.
func settled(ctx context.Context, st *store.Store) {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var merges uint64
		if err := st.Conn().QueryRow(ctx, "SELECT count() FROM system.merges").Scan(&merges); err != nil || merges == 0 {
			return
		}
	}
}

// gathered is the value of the counter name in reg, or the sum of the
// histogram name.
func gathered(reg *prometheus.Registry, name string) float64 {
	mfs, _ := reg.Gather() // the sink's own metrics always gather
	for _, mf := range mfs {
		if mf.GetName() == name {
			if h := mf.GetMetric()[0].GetHistogram(); h != nil {
				return h.GetSampleSum()
			}
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

// firstFetch records when the sink fetched its first record and how long
// it waited for records in all.
type firstFetch struct {
	sink.Reader
	mu     sync.Mutex
	at     time.Time
	waited time.Duration
}

func (f *firstFetch) FetchMessage(ctx context.Context) (kafka.Message, error) {
	t0 := time.Now()
	m, err := f.Reader.FetchMessage(ctx)
	f.mu.Lock()
	if f.at.IsZero() {
		f.at = time.Now()
	} else {
		f.waited += time.Since(t0)
	}
	f.mu.Unlock()
	return m, err
}

func (f *firstFetch) first() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.at
}

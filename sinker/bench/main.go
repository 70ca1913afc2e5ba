// Command bench measures the sinker's throughput from Kafka to ClickHouse
// against two ceilings measured in the same run: clickhouse-client
// inserting the same rows in Native format into the same schema, and a
// bare consumer draining the same topic from the same broker.
//
//	go run ./bench -rows 500000 -clickhouse-addr 127.0.0.1:19000
//
// It starts a Kafka-protocol broker (kfake) in a child process, which
// also produces the events (-broker in-process: in this one), unless
// -kafka-brokers names one (deploy/devkafka, a real Kafka); drains the
// events once with one connection per partition (the broker alone); runs
// the sinker's real consume → batch → insert → commit loop until every
// event is stored, reading this process's CPU time meanwhile; then dumps
// the stored rows with clickhouse-client and inserts them again into a
// fresh database with the same migrations. With -rate
// the events are produced while the sinker runs, and only the sinker is
// measured.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/chconf"
	"github.com/aluminiapp/pipeline/lib/chschema"
	"github.com/aluminiapp/pipeline/lib/kafkaconf"
	"github.com/aluminiapp/pipeline/lib/kafkatest"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
	"github.com/aluminiapp/pipeline/sinker/internal/copies"
	"github.com/aluminiapp/pipeline/sinker/internal/sink"
	"github.com/aluminiapp/pipeline/sinker/internal/store"
)

func main() {
	kafkatest.ServeProcess(serveProduce)
	rows := flag.Int("rows", 1_000_000, "events to produce and store")
	batchRows := flag.Int("batch-max-rows", 100_000, "the sinker's batch-max-rows")
	partitions := flag.Int("partitions", 6, "partitions of the enriched topic")
	addr := flag.String("clickhouse-addr", "127.0.0.1:19000", "ClickHouse native address (clickhouse-client uses its host and port)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the sinker's run (and the broker's, with -broker in-process) to this file")
	brokers := flag.String("kafka-brokers", "", "an external broker to use (e.g. deploy/devkafka at 127.0.0.1:9092); empty starts kfake in this process")
	verbose := flag.Bool("v", false, "log the sink (debug level) to stderr")
	brokerMode := flag.String("broker", "process", "where kfake runs when -kafka-brokers is empty: process (a child process, so the CPU figures are the sinker's alone) or in-process")
	rate := flag.Int("rate", 0, "produce at this many events/s while the sinker runs, as the enricher feeds it (0: produce everything first, then measure the ceilings and the sinker's drain)")
	fetchMin := flag.Int("fetch-min-bytes", 64<<10, "the sinker's fetch-min-bytes (its default; 1 answers every fetch at once)")
	compression := flag.String("compression", "lz4", "the producer's compression: lz4 (the enricher's) or none")
	flag.Parse()
	o := options{n: *rows, batchRows: *batchRows, partitions: *partitions, addr: *addr, brokers: *brokers,
		cpuProfile: *cpuProfile, verbose: *verbose, fetchMin: *fetchMin, rate: *rate, compress: *compression == "lz4"}
	if *brokers == "" && *brokerMode == "process" {
		b, err := kafkatest.StartProcess(*partitions)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		o.brokers, o.child = b.Addr, b
	}
	err := run(o)
	if o.child != nil {
		err = errors.Join(err, o.child.Stop())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type options struct {
	n, batchRows, partitions int
	addr, brokers            string
	cpuProfile               string
	verbose                  bool
	fetchMin                 int  // the sinker's -fetch-min-bytes
	rate                     int  // events/s produced while the sinker runs; 0: all before
	compress                 bool // LZ4, as the enricher writes
	child                    *kafkatest.Process
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

func run(o options) error {
	n, batchRows, partitions, addr, brokers, verbose := o.n, o.batchRows, o.partitions, o.addr, o.brokers, o.verbose
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
	brokerName := "broker " + brokers + " in another process"
	produceFn := func(topic string, n, rate int, compress bool) (int, error) {
		return produce(brokers, topic, n, rate, compress)
	}
	if o.child != nil {
		produceFn = func(topic string, n, rate int, compress bool) (int, error) {
			answer, err := o.child.Do(produceRequest(topic, n, rate, compress))
			if err != nil {
				return 0, err
			}
			return strconv.Atoi(answer)
		}
	}
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

	if o.rate > 0 {
		return runStreaming(ctx, o, st, kc, topic, brokerName, produceFn, log)
	}
	fmt.Printf("producing %d events into %d partitions of %s...\n", n, partitions, brokerName)
	recordBytes, err := produceFn(topic, n, 0, o.compress)
	if err != nil {
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
	// inserts (parts to write and merge), not only with the rows.
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
	r, err := runSinker(ctx, o, st, kc, topic, log, nil)
	if err != nil {
		return err
	}
	elapsed, rs, timed := r.elapsed, r.reader, r.timed
	inserts, insertedRows, insertSeconds := r.inserts, r.insertedRows, r.insertSeconds
	launched, sinkCPU, sinkWall := r.launched, r.cpu, r.wall
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
	fmt.Printf("sinker CPU (this process, from joining the group to stopping; the broker's too with -broker in-process): %.2fs = %.2f µs per row, %.2f cores busy\n",
		sinkCPU.Seconds(), float64(sinkCPU.Microseconds())/float64(n), sinkCPU.Seconds()/sinkWall.Seconds())
	fmt.Printf("sinker / Native ceiling: %.2fx\n", sinkRate/top)
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

func (f *firstFetch) FetchBatch(ctx context.Context) ([]kafka.Message, error) {
	t0 := time.Now()
	msgs, err := f.Reader.FetchBatch(ctx)
	f.mu.Lock()
	if f.at.IsZero() {
		f.at = time.Now()
	} else {
		f.waited += time.Since(t0)
	}
	f.mu.Unlock()
	return msgs, err
}

func (f *firstFetch) first() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.at
}

// sinkerRun is what runSinker measured.
type sinkerRun struct {
	launched                             time.Time
	elapsed                              time.Duration // from the first record fetched until every event was stored
	wall, cpu                            time.Duration // from launch until the sink stopped, and this process's CPU meanwhile
	reader                               sink.ReaderStats
	timed                                *firstFetch
	inserts, insertedRows, insertSeconds float64
}

// runSinker runs the sinker's real reader, batching, copy filter, store
// and commit loop (as sinker/main.go sets them up) until o.n distinct
// events are in the events table, then stops it. started, when not nil, is called
// once the sink runs.
func runSinker(ctx context.Context, o options, st *store.Store, kc kafkaconf.Config, topic string, log *zap.Logger, started func()) (sinkerRun, error) {
	var r sinkerRun
	reader, err := sink.NewReader(sink.ReaderConfig{Brokers: kc.BrokerList(), Topic: topic, GroupID: "bench", SessionTimeout: 10 * time.Second,
		FetchMinBytes: o.fetchMin, FetchMaxWait: 250 * time.Millisecond}, log)
	if err != nil {
		return r, err
	}
	defer func() {
		if err := reader.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: closing the reader:", err)
		}
	}()
	dlq := sink.NewDeadLetterWriter(kafka.TCP(kc.BrokerList()...), nil, topic+".dead-letter", log)
	defer func() {
		if err := dlq.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: closing the dead-letter writer:", err)
		}
	}()
	reg := prometheus.NewRegistry()
	r.timed = &firstFetch{Reader: reader}
	window := copies.New(500_000, copies.KafkaLoader(&kafka.Dialer{Timeout: 10 * time.Second}, kc.BrokerList(), topic))
	s := sink.New(sink.Config{MaxRows: o.batchRows, MaxBytes: 256 << 20, MaxWait: time.Second, Copies: window}, r.timed, dlq, st, log, reg)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return r, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return r, err
		}
		defer pprof.StopCPUProfile()
	}
	done := make(chan error, 1)
	cpu0 := cpuTime()
	r.launched = time.Now()
	go func() { done <- s.Run(runCtx) }()
	if started != nil {
		started()
	}
	for {
		// Distinct events, so replayed rows cannot finish the run early.
		var stored uint64
		if err := st.Conn().QueryRow(ctx, "SELECT uniqExact(event_id) FROM events").Scan(&stored); err != nil {
			return r, err
		}
		if stored >= uint64(o.n) {
			// From the first record fetched: joining the consumer group
			// (the broker's initial rebalance delay) is startup, not throughput.
			r.elapsed = time.Since(r.timed.first())
			break
		}
		select {
		case err := <-done:
			return r, fmt.Errorf("sink stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		return r, err
	}
	r.cpu, r.wall = cpuTime()-cpu0, time.Since(r.launched)
	pprof.StopCPUProfile()
	r.inserts = gathered(reg, "alumini_sinker_inserts_total")
	r.insertedRows = gathered(reg, "alumini_sinker_rows_inserted_total")
	r.insertSeconds = gathered(reg, "alumini_sinker_insert_duration_seconds")
	r.reader = reader.Stats()
	return r, nil
}

// runStreaming produces o.n events at o.rate events/s while the sinker
// consumes them, as in service behind the enricher, and prints the
// sinker's CPU per row: small fetches and many small batches, where the
// drain of a full topic has few large ones.
func runStreaming(ctx context.Context, o options, st *store.Store, kc kafkaconf.Config, topic, brokerName string,
	produceFn func(string, int, int, bool) (int, error), log *zap.Logger) error {
	fmt.Printf("streaming %d events at %d/s into %d partitions of %s while the sinker runs...\n", o.n, o.rate, o.partitions, brokerName)
	var (
		recordBytes int
		produced    = make(chan error, 1)
		producedAt  time.Time
	)
	r, err := runSinker(ctx, o, st, kc, topic, log, func() {
		go func() {
			var err error
			recordBytes, err = produceFn(topic, o.n, o.rate, o.compress)
			producedAt = time.Now()
			produced <- err
		}()
	})
	if err != nil {
		return err
	}
	if err := <-produced; err != nil {
		return err
	}
	fmt.Printf("%d events (%.0f bytes each as proto, %s), batch-max-rows %d\n",
		o.n, float64(recordBytes)/float64(o.n), map[bool]string{true: "LZ4", false: "uncompressed"}[o.compress], o.batchRows)
	fmt.Printf("sinker reader: %d fetches, %.0f records/fetch\n", r.reader.Fetches, float64(r.reader.Records)/float64(max(r.reader.Fetches, 1)))
	fmt.Printf("sinker: %.0f inserts, %.0f rows/insert, %.0f rows inserted (replays included), inserting %.2fs of the %.2fs; all stored %.2fs after the last was produced\n",
		r.inserts, r.insertedRows/max(r.inserts, 1), r.insertedRows, r.insertSeconds, r.elapsed.Seconds(), r.launched.Add(r.wall).Sub(producedAt).Seconds())
	fmt.Printf("sinker CPU (this process, from joining the group to stopping): %.2fs = %.2f µs per row, %.2f cores busy\n",
		r.cpu.Seconds(), float64(r.cpu.Microseconds())/float64(o.n), r.cpu.Seconds()/r.wall.Seconds())
	return nil
}

// Command bench measures the sinker's throughput from Kafka to ClickHouse
// against clickhouse-client inserting the same rows in Native format (the
// ceiling) and in TabSeparated, in one run on one machine.
//
//	go run ./bench -rows 1000000 -clickhouse-addr 127.0.0.1:19000
//
// It starts an in-process Kafka-protocol broker (kfake), produces the
// events, runs the sinker's real consume → batch → insert → commit loop
// until every record is committed, then dumps the stored rows with
// clickhouse-client and inserts them again into an empty copy of the table.
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
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/lib/chconf"
	"github.com/aluminiapp/pipeline/lib/kafkaconf"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
	"github.com/aluminiapp/pipeline/sinker/internal/sink"
	"github.com/aluminiapp/pipeline/sinker/internal/store"
	"github.com/aluminiapp/pipeline/sinker/schema"
)

func main() {
	rows := flag.Int("rows", 1_000_000, "events to produce and store")
	batchRows := flag.Int("batch-max-rows", 100_000, "the sinker's batch-max-rows")
	partitions := flag.Int("partitions", 6, "partitions of the enriched topic")
	addr := flag.String("clickhouse-addr", "127.0.0.1:19000", "ClickHouse native address (clickhouse-client uses its host and port)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
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
	if err := run(*rows, *batchRows, *partitions, *addr); err != nil {
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

func run(n, batchRows, partitions int, addr string) error {
	ctx := context.Background()
	log := zap.NewNop()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(partitions), kfake.SeedTopics(int32(partitions), "alumini.enriched", "alumini.dead-letter"))
	if err != nil {
		return err
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()[0]

	database := fmt.Sprintf("bench_sinker_%d", time.Now().Unix())
	ch := chconf.Config{Addr: addr, Database: database}
	st, err := store.Open(ctx, ch)
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Conn().Exec(ctx, "DROP DATABASE IF EXISTS "+database); err != nil {
			fmt.Fprintln(os.Stderr, "bench: dropping", database, err)
		}
		if err := st.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: closing clickhouse", err)
		}
	}()
	if err := schema.Apply(ctx, st.Conn(), log); err != nil {
		return err
	}
	var version string
	if err := st.Conn().QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		return err
	}

	fmt.Printf("producing %d events into %d partitions...\n", n, partitions)
	w := &kafka.Writer{Addr: kafka.TCP(brokers), Topic: "alumini.enriched", Balancer: &kafka.Murmur2Balancer{}, BatchSize: 2_000, BatchBytes: 900 << 10, BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireAll}
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

	// The sinker: its real reader, batching, store and commit loop.
	kc := kafkaconf.Config{Brokers: brokers}
	reader := sink.NewReader(kc.BrokerList(), "alumini.enriched", "bench", 10*time.Second, log)
	dlq := sink.NewDeadLetterWriter(kafka.TCP(brokers), "alumini.dead-letter", log)
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
		var stored uint64
		if err := st.Conn().QueryRow(ctx, "SELECT count() FROM events").Scan(&stored); err != nil {
			return err
		}
		if stored >= uint64(n) {
			// From the first record fetched: joining the consumer group
			// (the broker's initial rebalance delay) is startup, not throughput.
			elapsed = time.Since(timed.at)
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
	inserts := testutil.ToFloat64(counter(reg, "alumini_sinker_inserts_total"))
	rs := reader.Stats()
	if err := reader.Close(); err != nil {
		return err
	}
	if err := dlq.Close(); err != nil {
		return err
	}

	// The insert path alone: the same events, no Kafka, in batches of
	// batchRows, into an empty copy of the table.
	if err := st.Conn().Exec(ctx, "CREATE TABLE store_only AS events"); err != nil {
		return err
	}
	events := make([]*aluminiv1.Event, 0, batchRows)
	var storeOnly time.Duration
	direct := store.New(st.Conn())
	for from := 0; from < n; from += batchRows {
		events = events[:0]
		for i := from; i < min(from+batchRows, n); i++ {
			events = append(events, event(i))
		}
		t0 := time.Now()
		if err := direct.InsertInto(ctx, "store_only", events); err != nil {
			return err
		}
		storeOnly += time.Since(t0)
	}

	// The ceiling: clickhouse-client inserting the same rows.
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "alumini-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cols := strings.Join(schema.Columns, ", ")
	results := map[string]time.Duration{}
	for _, format := range []string{"Native", "TabSeparated"} {
		file := filepath.Join(dir, "events."+format)
		if err := client(host, port, database, fmt.Sprintf("SELECT %s FROM events FORMAT %s", cols, format), nil, file); err != nil {
			return err
		}
		table := "ceiling_" + strings.ToLower(format)
		if err := st.Conn().Exec(ctx, "CREATE TABLE "+table+" AS events"); err != nil {
			return err
		}
		in, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		t0 := time.Now()
		if err := client(host, port, database, fmt.Sprintf("INSERT INTO %s (%s) FORMAT %s", table, cols, format), in, ""); err != nil {
			return err
		}
		results[format] = time.Since(t0)
	}

	rate := func(d time.Duration) float64 { return float64(n) / d.Seconds() }
	sinkRate, native := rate(elapsed), rate(results["Native"])
	fmt.Printf("ClickHouse %s, %d columns, %d events (%.0f bytes each as proto), batch-max-rows %d, %d partitions\n",
		version, len(schema.Columns), n, float64(recordBytes)/float64(n), batchRows, partitions)
	fmt.Printf("kafka-go reader: %d fetches, %.0f records/fetch, fetch wait avg %v max %v, read time avg %v\n",
		rs.Fetches, float64(rs.Messages)/float64(max(rs.Fetches, 1)), rs.WaitTime.Avg, rs.WaitTime.Max, rs.ReadTime.Avg)
	fmt.Printf("consumer group joined after %.2fs (not counted)\n", timed.at.Sub(launched).Seconds())
	fmt.Printf("sinker Kafka→ClickHouse: %8.0f rows/s  (%.2fs, %.0f inserts, %.0f rows/insert, %.2f inserts/s)\n",
		sinkRate, elapsed.Seconds(), inserts, float64(n)/inserts, inserts/elapsed.Seconds())
	fmt.Printf("store.Insert alone:       %8.0f rows/s  (%.2fs, no Kafka)\n", rate(storeOnly), storeOnly.Seconds())
	fmt.Printf("clickhouse-client Native: %8.0f rows/s  (%.2fs) — the ceiling\n", native, results["Native"].Seconds())
	fmt.Printf("clickhouse-client TSV:    %8.0f rows/s  (%.2fs)\n", rate(results["TabSeparated"]), results["TabSeparated"].Seconds())
	fmt.Printf("sinker / Native ceiling:  %.2fx\n", sinkRate/native)
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

func counter(reg *prometheus.Registry, name string) prometheus.Collector {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "copy"})
	mfs, _ := reg.Gather() // the sink's own metrics always gather
	for _, mf := range mfs {
		if mf.GetName() == name {
			c.Add(mf.GetMetric()[0].GetCounter().GetValue())
		}
	}
	return c
}

// firstFetch records when the sink fetched its first record.
type firstFetch struct {
	sink.Reader
	once sync.Once
	at   time.Time
}

func (f *firstFetch) FetchMessage(ctx context.Context) (kafka.Message, error) {
	m, err := f.Reader.FetchMessage(ctx)
	f.once.Do(func() { f.at = time.Now() })
	return m, err
}

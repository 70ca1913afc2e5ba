// Command bench measures the enricher's CPU per event in service (its
// real consume → enrich → session → produce → commit pipeline, Kafka
// included) against its enrich step alone (decode, enrich, encode) on the
// same hits in the same process:
//
//	go run ./bench -hits 300000
//
// The broker (kfake) runs in a child process, so the process CPU time
// read around each phase is the enricher's alone. Pin the parts to cores
// with taskset (the child inherits the parent's affinity).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/enricher/internal/enrich"
	"github.com/aluminiapp/pipeline/enricher/internal/pipeline"
	"github.com/aluminiapp/pipeline/enricher/internal/referrer"
	"github.com/aluminiapp/pipeline/enricher/internal/session"
	"github.com/aluminiapp/pipeline/enricher/internal/useragent"
	"github.com/aluminiapp/pipeline/enricher/internal/useragent/uamix"
	"github.com/aluminiapp/pipeline/enricher/internal/visitor"
	"github.com/aluminiapp/pipeline/lib/kafkaconf"
	"github.com/aluminiapp/pipeline/lib/kafkatest"
	"github.com/aluminiapp/pipeline/lib/registry"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

func main() {
	kafkatest.ServeProcess(func(string, string) (string, error) { return "", errors.New("no requests") })
	hits := flag.Int("hits", 300_000, "raw hits to produce and enrich")
	partitions := flag.Int("partitions", 6, "partitions of the raw topic")
	visitors := flag.Int("visitors", 50_000, "distinct visitors (addresses) among the hits")
	maxBatch := flag.Int("batch-max-records", 1000, "the enricher's -batch-max-records")
	workers := flag.Int("workers", 0, "the enricher's -workers (0: GOMAXPROCS)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the pipeline's run to this file")
	memProfile := flag.String("memprofile", "", "write an allocation profile of the whole run to this file")
	flag.Parse()
	if *memProfile != "" {
		runtime.MemProfileRate = 64 << 10
	}
	err := run(*hits, *partitions, *visitors, *maxBatch, *workers, *cpuProfile)
	if err == nil && *memProfile != "" {
		err = writeHeapProfile(*memProfile)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// hit is the i-th raw hit of a realistic stream: mainstream browsers and
// a few bots (uamix), direct, search, social and campaign traffic.
func hit(i, visitors int, now time.Time) *aluminiv1.RawHit {
	uas := append(append([]string(nil), uamix.Realistic...), uamix.Bots...)
	refs := []string{"", "", "https://www.google.com/", "https://duckduckgo.com/?q=hiking+boots", "https://l.facebook.com/", "https://shop.example/cart"}
	pages := []string{"https://shop.example/", "https://shop.example/boots?utm_source=news&utm_medium=email&utm_campaign=nov", "https://shop.example/cart"}
	v := i % visitors
	return &aluminiv1.RawHit{
		ClientId: "shop", EventId: fmt.Sprintf("0193a1b2-0001-7000-8000-%012d", i), Type: aluminiv1.EventType_EVENT_TYPE_PAGEVIEW,
		Url: pages[i%len(pages)], Referrer: refs[i%len(refs)], Title: "Boots", UserAgent: uas[v%len(uas)],
		Ip: []byte{81, byte(v >> 16), byte(v >> 8), byte(v)}, Language: "en-GB", ScreenWidth: 1920, ScreenHeight: 1080,
		Timezone: "Europe/London", ReceivedAtMs: now.UnixMilli() + int64(i/1000),
	}
}

func run(n, partitions, visitors, maxBatch, workers int, cpuProfile string) error {
	ctx := context.Background()
	broker, err := kafkatest.StartProcess(partitions)
	if err != nil {
		return err
	}
	defer func() {
		if err := broker.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: broker process:", err)
		}
	}()
	kc := kafkaconf.Config{Brokers: broker.Addr, Partitions: partitions, ReplicationFactor: 1,
		RawTopic: "raw", EnrichedTopic: "enriched", DeadLetterTopic: "dead"}
	if err := kc.EnsureTopics(ctx, kc.RawTopic, kc.EnrichedTopic, kc.DeadLetterTopic); err != nil {
		return err
	}

	now := time.Now()
	raws := make([][]byte, n)
	msgs := make([]kafka.Message, 0, 1000)
	// As the collector writes them: LZ4, keyed by client and visitor.
	w := &kafka.Writer{Addr: kc.Addr(), Topic: kc.RawTopic, Balancer: &kafka.Murmur2Balancer{}, BatchSize: 1000,
		BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll, Compression: kafka.Lz4}
	fmt.Printf("producing %d raw hits of %d visitors into %d partitions (broker in a child process)...\n", n, visitors, partitions)
	for i := range n {
		if raws[i], err = proto.Marshal(hit(i, visitors, now)); err != nil {
			return err
		}
		msgs = append(msgs, kafka.Message{Key: []byte("shop:" + strconv.Itoa(i%visitors)), Value: raws[i]})
		if len(msgs) == cap(msgs) || i == n-1 {
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				return err
			}
			msgs = msgs[:0]
		}
	}
	if err := w.Close(); err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "alumini-enricher-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	clientsFile := filepath.Join(dir, "clients.yaml")
	if err := os.WriteFile(clientsFile, []byte("clients: [{id: shop}]\n"), 0o600); err != nil {
		return err
	}
	clients, err := registry.OpenFile(clientsFile)
	if err != nil {
		return err
	}
	salts, err := visitor.OpenSaltStore(ctx, visitor.SaltConfig{Kafka: kc.FranzOpts(), Topic: "salts", Grace: time.Hour}, zap.NewNop())
	if err != nil {
		return err
	}
	defer salts.Close()
	if err := salts.Rotate(ctx); err != nil {
		return err
	}
	// Each phase gets an enricher of its own, its caches cold, with the
	// service's default cache size.
	newEnricher := func() (*enrich.Enricher, error) {
		uas, err := useragent.New(50_000)
		if err != nil {
			return nil, err
		}
		refs, err := referrer.New()
		if err != nil {
			return nil, err
		}
		return enrich.New(enrich.Config{Clients: clients, Visitors: visitor.New([]byte("0123456789abcdef0123456789abcdef"), salts),
			UserAgents: uas, Referrers: refs}), nil
	}

	// The enrich step alone, as enrich's BenchmarkEnrichStep measures it.
	stepCPU, err := stepCPUTime(newEnricher, raws, nil)
	if err != nil {
		return err
	}
	// The step with the session state the service keeps: applied in
	// memory, and written to Kafka after every batch of hits as the
	// pipeline does.
	memSessions, err := session.Open(ctx, session.Config{Kafka: kc.FranzOpts(), Topic: "sessions-step", Timeout: 30 * time.Minute,
		MaxVisitors: 1_000_000, TTL: 30 * 24 * time.Hour}, int32(partitions), 1, zap.NewNop())
	if err != nil {
		return err
	}
	defer memSessions.Close()
	stepSessionCPU, err := stepCPUTime(newEnricher, raws, func(i int, ev *aluminiv1.Event) error {
		key := ev.ClientId + ":" + strconv.FormatUint(ev.VisitorId, 16)
		o := memSessions.Apply(int32(i%partitions), int64(i/partitions), key, ev.EventId, ev.TimestampMs, enrich.SessionSource(ev))
		ev.SessionId, ev.IsNewVisitor, ev.PreviousVisitMs = o.SessionID, o.NewVisitor, o.PreviousVisitMs
		if (i+1)%maxBatch == 0 || i == len(raws)-1 {
			return memSessions.Flush(ctx)
		}
		return nil
	})
	if err != nil {
		return err
	}

	// The service: the real pipeline, until every hit is accounted for.
	e, err := newEnricher()
	if err != nil {
		return err
	}
	sessions, err := session.Open(ctx, session.Config{Kafka: kc.FranzOpts(), Topic: "sessions", Timeout: 30 * time.Minute,
		MaxVisitors: 1_000_000, TTL: 30 * 24 * time.Hour}, int32(partitions), 1, zap.NewNop())
	if err != nil {
		return err
	}
	defer sessions.Close()
	reg := prometheus.NewRegistry()
	p, err := pipeline.New(pipeline.Config{Brokers: kc.BrokerList(), GroupID: "bench", RawTopic: kc.RawTopic, EnrichedTopic: kc.EnrichedTopic,
		DeadLetterTopic: kc.DeadLetterTopic, MaxBatch: maxBatch, MaxWait: 50 * time.Millisecond, Workers: workers}, e, sessions, zap.NewNop(), reg)
	if err != nil {
		return err
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	cpu0 := cpuTime()
	go func() { done <- p.Run(runCtx) }()
	var first time.Time
	for {
		out, dropped := counter(reg, "alumini_enricher_events_out_total"), counter(reg, "alumini_enricher_dropped_total")
		if first.IsZero() && counter(reg, "alumini_enricher_events_in_total") > 0 {
			first = time.Now()
		}
		if int(out+dropped+counter(reg, "alumini_enricher_dead_letters_total")) >= n {
			break
		}
		select {
		case err := <-done:
			return fmt.Errorf("pipeline stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	elapsed := time.Since(first)
	cancel()
	if err := <-done; err != nil {
		return err
	}
	serviceCPU, wall := cpuTime()-cpu0, time.Since(start)
	pprof.StopCPUProfile()
	if err := p.Close(); err != nil {
		return err
	}
	perEvent := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(n) }
	fmt.Printf("%d hits, %d partitions, batch-max-records %d, workers %d (0: GOMAXPROCS %d); %.0f enriched, %.0f dropped (bots), %.0f dead letters\n",
		n, partitions, maxBatch, workers, runtime.GOMAXPROCS(0), counter(reg, "alumini_enricher_events_out_total"), counter(reg, "alumini_enricher_dropped_total"),
		counter(reg, "alumini_enricher_dead_letters_total"))
	fmt.Printf("%-46s %10s %12s\n", "", "CPU s", "CPU µs/hit")
	fmt.Printf("%-46s %10.2f %12.2f\n", "enrich step alone (decode, enrich, encode)", stepCPU.Seconds(), perEvent(stepCPU))
	fmt.Printf("%-46s %10.2f %12.2f\n", "step and session state (kept, written)", stepSessionCPU.Seconds(), perEvent(stepSessionCPU))
	fmt.Printf("%-46s %10.2f %12.2f\n", "enricher in service (Kafka → Kafka, committed)", serviceCPU.Seconds(), perEvent(serviceCPU))
	fmt.Printf("service / step: %.2fx; service / (step and sessions): %.2fx; service %.0f hits/s from the first hit read, %.2f cores busy\n",
		serviceCPU.Seconds()/stepCPU.Seconds(), serviceCPU.Seconds()/stepSessionCPU.Seconds(), float64(n)/elapsed.Seconds(), serviceCPU.Seconds()/wall.Seconds())
	return nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	return errors.Join(pprof.Lookup("allocs").WriteTo(f, 0), f.Close())
}

// stepCPUTime is the CPU time of decoding, enriching and encoding every
// hit of raws with a new enricher, calling session (when not nil) on each
// event before it is encoded.
func stepCPUTime(newEnricher func() (*enrich.Enricher, error), raws [][]byte, session func(i int, ev *aluminiv1.Event) error) (time.Duration, error) {
	e, err := newEnricher()
	if err != nil {
		return 0, err
	}
	cpu0 := cpuTime()
	for i, raw := range raws {
		var h aluminiv1.RawHit
		if err := proto.Unmarshal(raw, &h); err != nil {
			return 0, err
		}
		ev, err := e.Enrich(&h)
		if errors.Is(err, enrich.ErrBot) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if session != nil {
			if err := session(i, ev); err != nil {
				return 0, err
			}
		}
		if _, err := proto.Marshal(ev); err != nil {
			return 0, err
		}
	}
	return cpuTime() - cpu0, nil
}

// counter sums the series of the counter name in reg.
func counter(reg *prometheus.Registry, name string) float64 {
	mfs, _ := reg.Gather() // the pipeline's own metrics always gather
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// cpuTime is the CPU time (user and system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

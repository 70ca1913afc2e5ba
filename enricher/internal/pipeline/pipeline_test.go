package pipeline

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/enricher/internal/enrich"
	"github.com/aluminiapp/pipeline/enricher/internal/referrer"
	"github.com/aluminiapp/pipeline/enricher/internal/session"
	"github.com/aluminiapp/pipeline/enricher/internal/useragent"
	"github.com/aluminiapp/pipeline/enricher/internal/visitor"
	"github.com/aluminiapp/pipeline/lib/eventually"
	"github.com/aluminiapp/pipeline/lib/kafkaconf"
	"github.com/aluminiapp/pipeline/lib/kafkatest"
	"github.com/aluminiapp/pipeline/lib/outage"
	"github.com/aluminiapp/pipeline/lib/registry"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

func TestEnrichesCommitsAndDeadLetters(t *testing.T) {
	_, addr := kafkatest.Start(t)
	kcfg := kafkaconf.Config{Brokers: addr, RawTopic: "raw", EnrichedTopic: "enriched", DeadLetterTopic: "dead", Partitions: 3, ReplicationFactor: 1}
	if err := kcfg.EnsureTopics(t.Context(), "raw", "enriched", "dead"); err != nil {
		t.Fatal(err)
	}

	const good = 25
	var msgs []kafka.Message
	for i := range good {
		b, err := proto.Marshal(&aluminiv1.RawHit{ClientId: "shop", EventId: "e" + strconv.Itoa(i), Url: "https://shop.example/", Ip: []byte{192, 0, 2, byte(i)}, UserAgent: "UA", ReceivedAtMs: time.Now().UnixMilli()})
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, kafka.Message{Key: []byte("k" + strconv.Itoa(i)), Value: b})
	}
	gone, err := proto.Marshal(&aluminiv1.RawHit{ClientId: "removed", EventId: "x", Ip: []byte{192, 0, 2, 99}})
	if err != nil {
		t.Fatal(err)
	}
	bot, err := proto.Marshal(&aluminiv1.RawHit{ClientId: "quiet", EventId: "b", Url: "https://quiet.example/", UserAgent: "Googlebot/2.1 (+http://www.google.com/bot.html)", ReceivedAtMs: time.Now().UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	// Valid wire format that does not decode (its URL is not UTF-8), with
	// an IP: its dead letter must still lose the IP.
	secretIP := []byte{198, 51, 100, 231}
	var badUTF8 []byte
	badUTF8 = protowire.AppendTag(badUTF8, 1, protowire.BytesType)
	badUTF8 = protowire.AppendString(badUTF8, "shop")
	badUTF8 = protowire.AppendTag(badUTF8, 9, protowire.BytesType)
	badUTF8 = protowire.AppendBytes(badUTF8, secretIP)
	badUTF8 = protowire.AppendTag(badUTF8, 5, protowire.BytesType)
	badUTF8 = protowire.AppendBytes(badUTF8, []byte("https://shop.example/\xff"))
	msgs = append(msgs, kafka.Message{Value: []byte{0xff, 0xff, 0xff}}, kafka.Message{Value: gone}, kafka.Message{Key: []byte("bot"), Value: bot},
		kafka.Message{Key: []byte("shop:c633b2f0d1a5e7f4"), Value: badUTF8})
	w := &kafka.Writer{Addr: kcfg.Addr(), Topic: "raw", RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	if err := w.WriteMessages(t.Context(), msgs...); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	cfg := Config{Brokers: []string{addr}, GroupID: "g", RawTopic: "raw", EnrichedTopic: "enriched", DeadLetterTopic: "dead", MaxBatch: 10, MaxWait: 20 * time.Millisecond}
	e := testEnricher(t, addr, "clients: [{id: shop}, {id: quiet, bots: drop}]\n")
	var reg *prometheus.Registry
	run := func(cond func() bool) { reg = runUntil(t, addr, cfg, e, "sessions", 3, cond) }
	run(func() bool {
		return kafkatest.Count(t, addr, "enriched") >= good && kafkatest.Count(t, addr, "dead") >= 3
	})

	events := kafkatest.ReadAll(t, addr, "enriched", good, 5*time.Second)
	if len(events) != good {
		t.Fatalf("enriched topic holds %d events; want %d", len(events), good)
	}
	seen := map[string]bool{}
	for _, m := range events {
		// Murmur2 as the Java client and kafka-go's Writer place keys, so
		// every copy of an event meets the sinker's copy filter in one
		// partition.
		if want := (kafka.Murmur2Balancer{}).Balance(m, 0, 1, 2); m.Partition != want {
			t.Errorf("event %q in partition %d; want %d (murmur2 of its key)", m.Key, m.Partition, want)
		}
		var ev aluminiv1.Event
		if err := proto.Unmarshal(m.Value, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.VisitorId == 0 || ev.ClientId != "shop" || ev.SessionId == 0 || !ev.IsNewVisitor {
			t.Errorf("event %v: want client shop, a visitor id, a session id and a new visitor", &ev)
		}
		seen[ev.EventId] = true
	}
	if len(seen) != good {
		t.Errorf("%d distinct event ids; want %d", len(seen), good)
	}
	reasons := map[string]int{}
	for _, m := range kafkatest.ReadAll(t, addr, "dead", 3, 5*time.Second) {
		for _, ip := range [][]byte{secretIP, {192, 0, 2, 99}} {
			if bytes.Contains(m.Value, ip) || bytes.Contains(m.Key, ip) {
				t.Errorf("dead letter %x (key %q) holds the IP %v", m.Value, m.Key, ip)
			}
		}
		if len(m.Key) > 0 && string(m.Key) != "shop" {
			t.Errorf("dead letter key = %q; want the client only, without the raw key's hash of IP and user agent", m.Key)
		}
		var dl aluminiv1.DeadLetter
		if err := proto.Unmarshal(m.Value, &dl); err != nil {
			t.Fatal(err)
		}
		reasons[dl.Reason]++
		var hit aluminiv1.RawHit
		if dl.Reason == "unknown_client" {
			if err := proto.Unmarshal(dl.Original, &hit); err != nil || len(hit.Ip) != 0 || hit.EventId != "x" {
				t.Errorf("dead letter original = %v (%v); want the hit without its IP", &hit, err)
			}
		}
		if dl.Reason == "decode_error" && len(dl.Original) > 3 {
			want := slices.Concat(badUTF8[:6], badUTF8[12:]) // the client id, then the URL: the IP field is gone
			if !bytes.Equal(dl.Original, want) {
				t.Errorf("dead letter original = %x; want %x (the hit without field 9)", dl.Original, want)
			}
		}
	}
	if reasons["decode_error"] != 2 || reasons["unknown_client"] != 1 {
		t.Errorf("dead letters by reason = %v; want two decode_error and one unknown_client", reasons)
	}
	for metric, want := range map[string]float64{
		`alumini_enricher_dropped_total{reason="bot"}`:                 1,
		`alumini_enricher_dead_letters_total{reason="decode_error"}`:   2,
		`alumini_enricher_dead_letters_total{reason="enrich_error"}`:   0,
		`alumini_enricher_dead_letters_total{reason="unknown_client"}`: 1,
		`alumini_enricher_events_in_total`:                             good + 4,
		`alumini_enricher_events_out_total`:                            good,
	} {
		if got := metricValue(t, reg, metric); got != want {
			t.Errorf("%s = %v; want %v", metric, got, want)
		}
	}

	// Offsets were committed: a restarted member of the group reads only
	// what came since, one new hit in each partition. It runs until the
	// group's commits reach the end of every partition, so it has read
	// all it was going to.
	var sentinels []kafka.Message
	for i := range 3 {
		b, err := proto.Marshal(&aluminiv1.RawHit{ClientId: "shop", EventId: "after-" + strconv.Itoa(i), Url: "https://shop.example/", UserAgent: "UA", ReceivedAtMs: time.Now().UnixMilli()})
		if err != nil {
			t.Fatal(err)
		}
		sentinels = append(sentinels, kafka.Message{Key: []byte{byte(i)}, Value: b})
	}
	w = &kafka.Writer{Addr: kcfg.Addr(), Topic: "raw", RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond,
		Balancer: kafka.BalancerFunc(func(m kafka.Message, _ ...int) int { return int(m.Key[0]) })}
	if err := w.WriteMessages(t.Context(), sentinels...); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	end := kafkatest.Count(t, addr, "raw")
	run(func() bool { return kafkatest.Committed(t, addr, "g", "raw") == end })
	if n := kafkatest.Count(t, addr, "enriched"); n != good+3 {
		t.Errorf("after a restart the enriched topic holds %d events; want %d, the 3 new ones only (offsets not committed?)", n, good+3)
	}
	if got := metricValue(t, reg, "alumini_enricher_events_in_total"); got != 3 {
		t.Errorf("after a restart the pipeline read %v hits; want 3, the new ones only (offsets not committed?)", got)
	}
}

// runUntil runs a pipeline of cfg, its session state in sessionTopic
// (partitions as the raw topic's), until cond holds, then stops it as
// the service does and returns its metrics.
func runUntil(t *testing.T, addr string, cfg Config, e *enrich.Enricher, sessionTopic string, partitions int32, cond func() bool) *prometheus.Registry {
	t.Helper()
	sessions, err := session.Open(t.Context(), session.Config{Kafka: []kgo.Opt{kgo.SeedBrokers(addr)}, Topic: sessionTopic,
		Timeout: 30 * time.Minute, MaxVisitors: 100, TTL: 30 * 24 * time.Hour}, partitions, 1, zap.NewNop())
	if err != nil {
		t.Fatalf("opening session state: %v", err)
	}
	defer sessions.Close()
	reg := prometheus.NewRegistry()
	p, err := New(cfg, e, sessions, zap.NewNop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	eventually.Within(20*time.Second, cond)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v; want nil after cancel", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	return reg
}

// metricValue reads one series, written as name{label="value"}, from reg.
func metricValue(t *testing.T, reg *prometheus.Registry, series string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			if len(m.GetLabel()) > 0 {
				name += "{"
				for i, l := range m.GetLabel() {
					if i > 0 {
						name += ","
					}
					name += l.GetName() + `="` + l.GetValue() + `"`
				}
				name += "}"
			}
			if name != series {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// TestRunRidesOutAnIdleOutage stops the broker under an idle pipeline:
// Run must not return, must report Kafka down, and must report it back
// once the broker returns even though no record comes to show it.
func TestRunRidesOutAnIdleOutage(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	broker := kafkatest.NewRestartable(t, []string{addr})
	broker.Start()
	kcfg := kafkaconf.Config{Brokers: addr, RawTopic: "raw", EnrichedTopic: "enriched", DeadLetterTopic: "dead", Partitions: 1, ReplicationFactor: 1}
	if err := kcfg.EnsureTopics(t.Context(), "raw", "enriched", "dead"); err != nil {
		t.Fatal(err)
	}
	e := testEnricher(t, addr, "clients: [{id: shop}]\n")
	sessions, err := session.Open(t.Context(), session.Config{Kafka: []kgo.Opt{kgo.SeedBrokers(addr)}, Topic: "sessions", Timeout: 30 * time.Minute, MaxVisitors: 100, TTL: time.Hour}, 1, 1, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sessions.Close)
	dep := outage.NewMonitor(zap.NewNop(), prometheus.NewRegistry()).Dependency("kafka")
	p, err := New(Config{Brokers: []string{addr}, GroupID: "g", RawTopic: "raw", EnrichedTopic: "enriched", DeadLetterTopic: "dead",
		MaxBatch: 10, MaxWait: 20 * time.Millisecond, SessionTimeout: 6 * time.Second, Kafka: dep}, e, sessions, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v; want nil after cancel", err)
		}
		if err := p.Close(); err != nil {
			t.Logf("Close = %v", err)
		}
	}()
	wait := func(what string, cond func() bool) {
		t.Helper()
		if !eventually.Within(60*time.Second, func() bool {
			select {
			case err := <-done:
				done <- err // for the deferred stop
				t.Fatalf("Run returned %v while waiting for %s", err, what)
			default:
			}
			return cond()
		}) {
			t.Fatalf("waited 60s for %s", what)
		}
	}
	// The group is joined and the topic read: idle from here.
	wait("the pipeline reading", func() bool { return dep.Check(t.Context()) == nil && len(p.reader.Assigned()) > 0 })
	broker.Stop()
	wait("Kafka reported down", func() bool { return dep.Check(t.Context()) != nil })
	broker.Start()
	wait("Kafka reported back without a record", func() bool { return dep.Check(t.Context()) == nil })
}

// testEnricher is an enricher for the clients of clientsYAML, with its
// salts on the broker at addr.
func testEnricher(t *testing.T, addr, clientsYAML string) *enrich.Enricher {
	t.Helper()
	path := filepath.Join(t.TempDir(), "clients.yaml")
	if err := os.WriteFile(path, []byte(clientsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	clients, err := registry.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	uas, err := useragent.New(100)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := referrer.New()
	if err != nil {
		t.Fatal(err)
	}
	salts, err := visitor.OpenSaltStore(t.Context(), visitor.SaltConfig{Kafka: []kgo.Opt{kgo.SeedBrokers(addr)}, Topic: "salts", Grace: time.Hour}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(salts.Close)
	e := enrich.New(enrich.Config{Clients: clients, Visitors: visitor.New([]byte("0123456789abcdef0123456789abcdef"), salts), UserAgents: uas, Referrers: refs})
	return e
}

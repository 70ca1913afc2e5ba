package pipeline

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/lib/kafkaconf"
	"github.com/aluminiapp/pipeline/lib/kafkatest"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// TestWorkersKeepEachPartitionInOrder enriches the same hits with one
// worker and with four (more than the topic's three partitions have, so
// some share nothing and the others split them), from topics of their own
// with state of their own. Sessions depend on the order of a visitor's
// hits (a visit starts at the first, a gap of more than the session
// timeout starts another, only the first session is a new visitor's), so
// the answers are equal only if every partition was enriched in order.
func TestWorkersKeepEachPartitionInOrder(t *testing.T) {
	_, addr := kafkatest.Start(t)
	e := testEnricher(t, addr, "clients: [{id: shop, cookie_mode: cookie}]\n")
	const visitors, hits = 12, 240
	start := time.Now().Add(-6 * time.Hour).UnixMilli()
	var msgs []kafka.Message
	for i := range hits {
		v := i % visitors
		// Each visitor's hits are 20 minutes apart, with an hour's gap
		// every fourth: new sessions at known places.
		at := start + int64(i/visitors)*20*60_000 + int64(i/visitors/4)*60*60_000
		b, err := proto.Marshal(&aluminiv1.RawHit{ClientId: "shop", EventId: "e" + strconv.Itoa(i), Url: "https://shop.example/",
			CookieId: fmt.Sprintf("c%d", v), UserAgent: "UA", ReceivedAtMs: at})
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, kafka.Message{Key: []byte("shop:" + strconv.Itoa(v)), Value: b})
	}
	outcomes := func(workers int) map[string]string {
		t.Helper()
		raw, enriched := fmt.Sprintf("raw%d", workers), fmt.Sprintf("enriched%d", workers)
		kcfg := kafkaconf.Config{Brokers: addr, Partitions: 3, ReplicationFactor: 1}
		if err := kcfg.EnsureTopics(t.Context(), raw, enriched, "dead"); err != nil {
			t.Fatalf("creating topics: %v", err)
		}
		// A transport of its own: the default one's metadata, read for the
		// first run's topic, would not know this run's yet.
		w := &kafka.Writer{Addr: kcfg.Addr(), Topic: raw, Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll,
			BatchTimeout: time.Millisecond, Transport: &kafka.Transport{},
			// One record batch per hit, and below one fetch per record batch
			// (FetchMaxBytes): every partition comes in many fetches, which
			// a worker must take in order.
			BatchSize: 1}
		if err := w.WriteMessages(t.Context(), msgs...); err != nil {
			t.Fatalf("writing the raw hits: %v", err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		runUntil(t, addr, Config{Brokers: []string{addr}, GroupID: "g" + raw, RawTopic: raw, EnrichedTopic: enriched, DeadLetterTopic: "dead",
			MaxBatch: 7, MaxWait: 10 * time.Millisecond, Workers: workers, FetchMaxBytes: 64}, e, "sessions"+raw, 3,
			func() bool { return kafkatest.Count(t, addr, enriched) >= hits })
		got := map[string]string{}
		for _, m := range kafkatest.ReadAll(t, addr, enriched, hits, 5*time.Second) {
			var ev aluminiv1.Event
			if err := proto.Unmarshal(m.Value, &ev); err != nil {
				t.Fatal(err)
			}
			got[ev.EventId] = fmt.Sprintf("session %x new %t previous %d", ev.SessionId, ev.IsNewVisitor, ev.PreviousVisitMs)
		}
		return got
	}
	one, four := outcomes(1), outcomes(4)
	if len(one) != hits || len(four) != hits {
		t.Fatalf("enriched %d events with one worker, %d with four; want %d each", len(one), len(four), hits)
	}
	sessionsSeen := map[string]bool{}
	for id, want := range one {
		if got := four[id]; got != want {
			t.Errorf("event %s with four workers: %s; with one: %s", id, got, want)
		}
		sessionsSeen[want] = true
	}
	// The hits make several sessions per visitor, so order mattered.
	if len(sessionsSeen) < 3*visitors {
		t.Errorf("%d distinct outcomes; want at least %d (several sessions per visitor)", len(sessionsSeen), 3*visitors)
	}
}

package copies

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/lib/kafkaconf"
	"github.com/aluminiapp/pipeline/lib/kafkatest"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// topicOf writes events to a one-partition topic, keyed as the enricher
// keys them, with a record that is no event at offset 2.
func topicOf(t testing.TB, ids []string) (addr string) {
	t.Helper()
	_, addr = kafkatest.Start(t)
	k := kafkaconf.Config{Brokers: addr, EnrichedTopic: "enriched", Partitions: 1, ReplicationFactor: 1}
	if err := k.EnsureTopics(context.Background(), "enriched"); err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: "enriched", BatchSize: 1000, BatchTimeout: time.Millisecond}
	defer w.Close()
	var msgs []kafka.Message
	for i, id := range ids {
		if i == 2 {
			msgs = append(msgs, kafka.Message{Value: []byte("not an event")})
		}
		ev := &aluminiv1.Event{ClientId: "shop", EventId: id, Type: aluminiv1.EventType_EVENT_TYPE_PAGEVIEW,
			TimestampMs: 1796254647000, ReceivedAtMs: 1796254647000, Url: "https://shop.example/blog/one",
			Hostname: "shop.example", Path: "/blog/one", Browser: "Firefox", BrowserVersion: "131.0", Os: "Linux",
			ReferrerMedium: "direct", VisitorId: uint64(i), SessionId: uint64(i)}
		b, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, kafka.Message{Key: []byte("shop:" + id), Value: b})
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	return addr
}

// TestKafkaLoaderReadsTheWindowBack: a window taken over at an offset
// knows the events before it (and skips what is no event), so a copy
// there is not first.
func TestKafkaLoaderReadsTheWindowBack(t *testing.T) {
	addr := topicOf(t, []string{"a", "b", "c", "d"}) // offsets 0, 1, 3, 4; 2 is no event
	w := New(100, KafkaLoader(&kafka.Dialer{Timeout: 5 * time.Second}, []string{addr}, "enriched"))
	for _, tc := range []struct {
		offset int64
		id     string
		first  bool
	}{{5, "b", false}, {6, "e", true}, {7, "d", false}, {8, "e", false}} {
		first, err := w.First(t.Context(), 0, tc.offset, "shop", tc.id)
		if err != nil || first != tc.first {
			t.Errorf("First(offset %d, %s) = %v, %v; want %v", tc.offset, tc.id, first, err, tc.first)
		}
	}
}

// BenchmarkReadBack is the read-back of a window when a sinker takes a
// partition over: records per second from an in-process broker.
//
//	go test -run - -bench ReadBack -benchtime 3x ./sinker/internal/copies/
func BenchmarkReadBack(b *testing.B) {
	const n = 100_000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("0193a2b4-%04x-7000-8000-%012x", i%0xffff, i)
	}
	addr := topicOf(b, ids)
	b.ResetTimer()
	for b.Loop() {
		w := New(n, KafkaLoader(&kafka.Dialer{Timeout: 5 * time.Second}, []string{addr}, "enriched"))
		if _, err := w.First(context.Background(), 0, n+1, "shop", "new"); err != nil {
			b.Fatal(err)
		}
		if len(w.parts[0].first) != n {
			b.Fatalf("window holds %d events; want %d", len(w.parts[0].first), n)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

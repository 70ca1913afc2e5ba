package kafkagroup

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/kafkatest"
)

// TestFewRecordsArriveDespiteFetchMinBytes: a reader that asks the broker
// to gather far more bytes than a quiet topic ever holds still gets the
// few records there are, in order, once FetchMaxWait has passed: light
// traffic is delayed by at most that, never held back.
func TestFewRecordsArriveDespiteFetchMinBytes(t *testing.T) {
	_, addr := kafkatest.Start(t, kfake.SeedTopics(1, "enriched"))
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: "enriched", RequiredAcks: kafka.RequireAll}
	defer w.Close()
	const n = 3
	for i := range n {
		if err := w.WriteMessages(t.Context(), kafka.Message{Value: fmt.Appendf(nil, "r%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := New(Config{Brokers: []string{addr}, Topic: "enriched", GroupID: "g",
		FetchMinBytes: 1 << 20, FetchMaxWait: 100 * time.Millisecond}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var got []string
	for len(got) < n {
		msgs, err := r.FetchBatch(ctx)
		if err != nil {
			t.Fatalf("after %v: %v; want %d records within FetchMaxWait of joining", got, err, n)
		}
		for _, m := range msgs {
			got = append(got, string(m.Value))
		}
	}
	if fmt.Sprint(got) != "[r0 r1 r2]" {
		t.Errorf("records %v; want [r0 r1 r2], in order", got)
	}
}

package sink_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
	"github.com/aluminiapp/pipeline/sinker/internal/copies"
	"github.com/aluminiapp/pipeline/sinker/internal/sink"
)

// copyOf is a second copy of event i as the enricher makes it from a retry
// the collector accepted again: from another address (cookieless: another
// visitor id, hence another visit), or without its cookie (a new cookie:
// another visitor, a new visitor), received a little later.
func copyOf(i int, how string) *aluminiv1.Event {
	ev := event(i)
	ev.ReceivedAtMs += 1500
	switch how {
	case "another address":
		ev.VisitorId, ev.SessionId, ev.Country = 9000+uint64(i), 9000+uint64(i), "FR"
	case "no cookie":
		ev.VisitorId, ev.SessionId, ev.IsNewVisitor = 8000+uint64(i), 8000+uint64(i), true
	}
	return ev
}

// keyed is how the enricher keys an event: by client and event id.
func keyed(t *testing.T, ev *aluminiv1.Event) kafka.Message {
	return kafka.Message{Key: []byte(ev.ClientId + ":" + ev.EventId), Value: marshal(t, ev)}
}

// TestRetriedCopiesAreStoredOnce is the first case in ClickHouse:
// retries from another address and without the cookie reach the enriched
// topic as copies whose visitor differs. Only the first copy is stored:
// one row per event id with the first copy's visitor, before and after
// FINAL, and visitors and visits are counted once, also after a new
// sinker takes the partitions over and reads its window back from Kafka.
// Without the copy filter (the negative control) the same input stores the
// copies and counts their visitors.
func TestRetriedCopiesAreStoredOnce(t *testing.T) {
	const n = 60
	for _, filter := range []bool{true, false} {
		t.Run(fmt.Sprintf("filter=%v", filter), func(t *testing.T) {
			e := newEnv(t)
			cfg := testCfg
			newFilter := func() sink.CopyFilter {
				if !filter {
					return nil
				}
				return copies.New(1000, copies.KafkaLoader(&kafka.Dialer{Timeout: 10 * time.Second}, e.kafka.BrokerList(), e.kafka.EnrichedTopic))
			}
			var msgs []kafka.Message
			for i := range n {
				msgs = append(msgs, keyed(t, event(i)))
				switch i % 6 {
				case 1:
					msgs = append(msgs, keyed(t, copyOf(i, "another address")))
				case 2:
					msgs = append(msgs, keyed(t, copyOf(i, "no cookie")))
				}
			}
			e.produce(t, msgs...)
			cfg.Copies = newFilter()
			stop := e.start(t, cfg)
			e.waitCommitted(t, int64(len(msgs)))
			stop()

			// Later copies, met by a sinker that has to read back what
			// came before them.
			var late []kafka.Message
			for i := 3; i < n; i += 6 {
				late = append(late, keyed(t, copyOf(i, "another address")), keyed(t, copyOf(i, "no cookie")))
			}
			e.produce(t, late...)
			cfg.Copies = newFilter()
			stop = e.start(t, cfg)
			e.waitCommitted(t, int64(len(msgs)+len(late)))
			stop()

			var rows, visitors, visits, foreign uint64
			q := "SELECT count(), uniqExact(visitor_id), uniqExact(session_id), countIf(visitor_id >= 8000) FROM events"
			if err := e.conn.QueryRow(context.Background(), q).Scan(&rows, &visitors, &visits, &foreign); err != nil {
				t.Fatal(err)
			}
			var final uint64
			if err := e.conn.QueryRow(context.Background(), "SELECT count() FROM events FINAL").Scan(&final); err != nil {
				t.Fatal(err)
			}
			// event(i) has visitor i%7 and no session id: 7 visitors, 1 visit id.
			ok := rows == n && final == n && visitors == 7 && visits == 1 && foreign == 0
			if filter && !ok {
				t.Errorf("rows %d, under FINAL %d, visitors %d, visits %d, rows of a copy's visitor %d; want %d, %d, 7, 1, 0",
					rows, final, visitors, visits, foreign, n, n)
			}
			if !filter && ok {
				t.Error("without the copy filter the copies were not stored either: the test cannot tell the filter works")
			}
		})
	}
}

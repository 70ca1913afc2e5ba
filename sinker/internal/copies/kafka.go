package copies

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/aluminiapp/pipeline/lib/chschema"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// KafkaLoader reads a window back from topic through dialer (TLS, SASL),
// counting exactly the records the sink would store: those that decode,
// have both ids and pass chschema.Check.
func KafkaLoader(dialer *kafka.Dialer, brokers []string, topic string) Loader {
	return func(ctx context.Context, part int, from, to int64, fn func(int64, string, string)) error {
		if from >= to {
			return nil
		}
		var conn *kafka.Conn
		err := errors.New("no brokers")
		for _, b := range brokers {
			if conn, err = dialer.DialLeader(ctx, "tcp", b, topic, part); err == nil {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("connecting to the leader of %s/%d: %w", topic, part, err)
		}
		defer context.AfterFunc(ctx, func() { conn.Close() })()
		defer conn.Close()
		oldest, err := conn.ReadFirstOffset()
		if err != nil {
			return fmt.Errorf("reading the first offset of %s/%d: %w", topic, part, err)
		}
		if from = max(from, oldest); from >= to {
			return nil
		}
		if _, err := conn.Seek(from, kafka.SeekAbsolute); err != nil {
			return fmt.Errorf("seeking %s/%d to %d: %w", topic, part, from, err)
		}
		var ev aluminiv1.Event
		for empty := 0; from < to; {
			if err := conn.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
				return err
			}
			batch := conn.ReadBatchWith(kafka.ReadBatchConfig{MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 500 * time.Millisecond})
			n := 0
			for from < to {
				m, err := batch.ReadMessage()
				if err != nil {
					break // batch.Close reports it, unless it is the end of the batch
				}
				n++
				if m.Offset >= to {
					from = to
					break
				}
				from = m.Offset + 1
				ev.Reset()
				if ev.UnmarshalVTUnsafe(m.Value) != nil || ev.ClientId == "" || ev.EventId == "" || chschema.Check(&ev) != nil {
					continue // dead-lettered, not stored
				}
				fn(m.Offset, ev.ClientId, ev.EventId)
			}
			if err := batch.Close(); err != nil && !errors.Is(err, kafka.RequestTimedOut) {
				return fmt.Errorf("reading %s/%d back: %w", topic, part, err)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if n == 0 {
				if empty++; empty == 3 {
					return fmt.Errorf("reading %s/%d back: no records at %d, below %d", topic, part, from, to)
				}
			}
		}
		return nil
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"
)

// produceRequest asks the broker process (lib/kafkatest.Process) to
// produce: topic, events, rate and compression, as produce takes them.
func produceRequest(topic string, n, rate int, compress bool) string {
	return fmt.Sprintf("%s %d %d %t", topic, n, rate, compress)
}

// serveProduce is the broker process's side of produceRequest: it
// produces and answers with the record bytes written.
func serveProduce(addr, request string) (string, error) {
	var (
		topic    string
		n, rate  int
		compress bool
	)
	if _, err := fmt.Sscan(request, &topic, &n, &rate, &compress); err != nil {
		return "", fmt.Errorf("reading a produce request %q: %w", request, err)
	}
	bytes, err := produce(addr, topic, n, rate, compress)
	return strconv.Itoa(bytes), err
}

// enricherBatch is how many events the producer writes per call, as the
// enricher does (its -batch-max-records).
const enricherBatch = 1000

// produce writes events [0, n) to topic as the enricher writes enriched
// events (batches of enricherBatch, acks from all replicas, LZ4 when
// compress), at rate events/s (0: as fast as the broker takes them), and
// returns the record bytes written.
func produce(broker, topic string, n, rate int, compress bool) (int, error) {
	w := &kafka.Writer{Addr: kafka.TCP(broker), Topic: topic, Balancer: &kafka.Murmur2Balancer{},
		BatchSize: enricherBatch, BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	if compress {
		w.Compression = kafka.Lz4
	}
	ctx := context.Background()
	start := time.Now()
	var recordBytes int
	msgs := make([]kafka.Message, 0, enricherBatch)
	for from := 0; from < n; from += enricherBatch {
		if rate > 0 {
			due := start.Add(time.Duration(float64(from) / float64(rate) * float64(time.Second)))
			time.Sleep(time.Until(due))
		}
		msgs = msgs[:0]
		for i := from; i < min(from+enricherBatch, n); i++ {
			v, err := proto.Marshal(event(i))
			if err != nil {
				return 0, err
			}
			recordBytes += len(v)
			msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "v%d", i%50_000), Value: v})
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			return 0, errors.Join(err, w.Close())
		}
	}
	return recordBytes, w.Close()
}

// cpuTime is the CPU time (user and system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

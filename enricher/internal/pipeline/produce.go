package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// producer writes messages to one topic through kafka-go's low-level
// Client: one Produce request per partition (more when its records pass
// maxRequestBytes), the partitions in parallel, each acknowledged by
// every in-sync replica. kafka-go's Writer does the same through a
// batching layer that, per call, read the topic's metadata again and
// gave every partition's batch room for its BatchSize messages, most of
// it unused by a call spread over several partitions (what that cost is
// in BENCHMARKS.md, Enricher).
type producer struct {
	client *kafka.Client
	topic  string
	// Murmur2 is the Java client's partitioner (and the one the Writer
	// used): a key keeps its partition whichever producer wrote it, so
	// every copy of an event reaches the sinker's copy filter in one
	// partition.
	balancer kafka.Murmur2Balancer

	mu         sync.Mutex
	partitions []int // of the topic, as last read
	readAt     time.Time
}

// partitionsTTL is how long a topic's partition count is trusted: a
// topic that gained partitions is written to all of them within it. A
// failed write reads it again at once.
const partitionsTTL = 10 * time.Second

// maxRequestBytes bounds the record bytes of one Produce request,
// uncompressed, below Kafka's default message.max.bytes (1 MiB) for a
// batch that LZ4 does not shrink.
const maxRequestBytes = 900 << 10

func newProducer(addr net.Addr, transport kafka.RoundTripper, topic string) *producer {
	return &producer{client: &kafka.Client{Addr: addr, Transport: transport}, topic: topic}
}

// partitionIDs returns the topic's partitions, read again when older than
// partitionsTTL or after a failed write.
func (w *producer) partitionIDs(ctx context.Context) ([]int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.partitions != nil && time.Since(w.readAt) < partitionsTTL {
		return w.partitions, nil
	}
	md, err := w.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{w.topic}})
	if err != nil {
		return nil, fmt.Errorf("reading the partitions of %s: %w", w.topic, err)
	}
	for _, t := range md.Topics {
		if t.Name != w.topic {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("reading the partitions of %s: %w", w.topic, t.Error)
		}
		if len(t.Partitions) == 0 {
			break
		}
		ids := make([]int, len(t.Partitions))
		for i := range ids {
			ids[i] = i // partitions are numbered from 0 without gaps
		}
		w.partitions, w.readAt = ids, time.Now()
		return ids, nil
	}
	return nil, fmt.Errorf("reading the partitions of %s: %w", w.topic, kafka.UnknownTopicOrPartition)
}

// forget makes the next write read the partitions again.
func (w *producer) forget() {
	w.mu.Lock()
	w.partitions = nil
	w.mu.Unlock()
}

// write produces msgs, in order within each partition, and returns the
// ones not acknowledged (nil when all were), in their order, with the
// errors.
func (w *producer) write(ctx context.Context, msgs []kafka.Message) ([]kafka.Message, error) {
	ids, err := w.partitionIDs(ctx)
	if err != nil {
		return msgs, err
	}
	byPartition := make([][]kafka.Message, len(ids))
	for _, m := range msgs {
		p := w.balancer.Balance(m, ids...)
		byPartition[p] = append(byPartition[p], m)
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []kafka.Message
		errs   []error
	)
	for p, ms := range byPartition {
		if len(ms) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if rest, err := w.writePartition(ctx, p, ms); err != nil {
				mu.Lock()
				failed, errs = append(failed, rest...), append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		w.forget()
		return failed, errors.Join(errs...)
	}
	return nil, nil
}

// writePartition produces msgs to partition p, in requests of up to
// maxRequestBytes, one after the other, and returns the messages from the
// first request that failed on.
func (w *producer) writePartition(ctx context.Context, p int, msgs []kafka.Message) ([]kafka.Message, error) {
	for len(msgs) > 0 {
		n, bytes := 0, 0
		for n < len(msgs) && (n == 0 || bytes+len(msgs[n].Key)+len(msgs[n].Value) <= maxRequestBytes) {
			bytes += len(msgs[n].Key) + len(msgs[n].Value)
			n++
		}
		records := make([]kafka.Record, n)
		for i, m := range msgs[:n] {
			// No time: kafka-go stamps the batch with the time it is sent.
			records[i] = kafka.Record{Key: kafka.NewBytes(m.Key), Value: kafka.NewBytes(m.Value), Headers: m.Headers}
		}
		res, err := w.client.Produce(ctx, &kafka.ProduceRequest{
			Topic: w.topic, Partition: p, RequiredAcks: kafka.RequireAll, Compression: kafka.Lz4,
			Records: kafka.NewRecordReader(records...),
		})
		if err == nil && res != nil {
			err = res.Error
		}
		if err != nil {
			return msgs, fmt.Errorf("producing to %s/%d: %w", w.topic, p, err)
		}
		msgs = msgs[n:]
	}
	return nil, nil
}

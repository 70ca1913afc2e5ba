package sink

import (
	"net"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
)

// NewReader returns the consumer-group reader of the enriched topic.
//
// sessionTimeout is how long the group waits for a silent member before
// giving its partitions to others: after a crash, that member's records
// wait this long (kafka-go's default is 30s).
func NewReader(brokers []string, topic, groupID string, sessionTimeout time.Duration, log *zap.Logger) *kafka.Reader {
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers: brokers,
		Topic:   topic,
		GroupID: groupID,
		// Three heartbeats per session timeout, as the Java client does, so
		// one lost heartbeat does not cost the partitions.
		SessionTimeout:    sessionTimeout,
		HeartbeatInterval: sessionTimeout / 3,
		// Members that are alive rejoin within a heartbeat; waiting longer
		// than a session for them only delays the rebalance.
		RebalanceTimeout: sessionTimeout,
		// Zero means synchronous commits: CommitMessages returns once the
		// broker stored the offsets. (It is kafka-go's default too; spelled
		// out because the at-least-once design rests on it.)
		CommitInterval: 0,
		// A new group starts at the oldest record, so events the enricher
		// wrote before the first sinker ever ran are stored too.
		StartOffset: kafka.FirstOffset,
		// Fetch up to 10 MiB per request (default 1 MiB) so large batches
		// fill in a few round trips.
		MaxBytes: 10 << 20,
		// Decoded records wait in this queue for FetchMessage (default 100):
		// a deeper queue keeps the partition readers busy while the batch
		// loop is briefly elsewhere. 10,000 records are a few MiB.
		QueueCapacity: 10_000,
		// The broker holds an idle fetch at most this long (default 10s);
		// shorter keeps Close quick at shutdown and costs idle round trips only.
		MaxWait: 500 * time.Millisecond,
		// kafka-go logs routine rebalances as errors; they are warnings here.
		ErrorLogger: kafka.LoggerFunc(log.Sugar().Named("kafka-reader").Warnf),
	})
}

// NewDeadLetterWriter returns the producer of dead letters.
func NewDeadLetterWriter(addr net.Addr, topic string, log *zap.Logger) *kafka.Writer {
	return &kafka.Writer{
		Addr:  addr,
		Topic: topic,
		// A dead letter replaces a record whose offset is committed next:
		// it must be on every in-sync replica first.
		RequiredAcks: kafka.RequireAll,
		// Murmur2 is the Java client's partitioner: records keep the
		// partition affinity of their key.
		Balancer: &kafka.Murmur2Balancer{},
		// Dead letters are written in one call per batch and the flush waits
		// for them; kafka-go's default of 1s would delay every such batch.
		BatchTimeout: 10 * time.Millisecond,
		ErrorLogger:  kafka.LoggerFunc(log.Sugar().Named("kafka-dead-letter").Warnf),
	}
}

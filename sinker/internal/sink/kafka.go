package sink

import (
	"net"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
)

// NewDeadLetterWriter returns the producer of dead letters; transport
// carries TLS and SASL (nil: plaintext).
func NewDeadLetterWriter(addr net.Addr, transport kafka.RoundTripper, topic string, log *zap.Logger) *kafka.Writer {
	return &kafka.Writer{
		Addr:      addr,
		Transport: transport,
		Topic:     topic,
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

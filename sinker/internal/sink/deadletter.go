package sink

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
	"github.com/aluminiapp/pipeline/proto/redact"
)

// Dead letters: a record that cannot be stored goes to the dead-letter
// topic with the reason, without the IP its event carried.

func (s *Sink) deadLetter(b *batch, m kafka.Message, reason string, cause error) error {
	dm, err := s.deadLetterMessage(m, reason, cause)
	if err != nil {
		return err
	}
	b.dead = append(b.dead, dm)
	b.deadReasons = append(b.deadReasons, reason)
	return nil
}

// deadLetterMessage wraps record m in a DeadLetter saying why. The event
// loses its truncated IP, decoded or not: dead letters carry no address,
// not even a network (events hold no raw IP to begin with).
func (s *Sink) deadLetterMessage(m kafka.Message, reason string, cause error) (kafka.Message, error) {
	s.log.Warn("dead-lettering record", zap.String("reason", reason), zap.Error(cause),
		zap.String("topic", m.Topic), zap.Int("partition", m.Partition), zap.Int64("offset", m.Offset))
	original, _ := redact.Without(m.Value, eventIPTruncatedField)
	dl := &aluminiv1.DeadLetter{
		Reason:          reason,
		Error:           strings.ToValidUTF8(cause.Error(), "?"), // proto3 strings must be UTF-8
		Stage:           Stage,
		SourceTopic:     m.Topic,
		SourcePartition: int32(m.Partition),
		SourceOffset:    m.Offset,
		Original:        original,
		FailedAtMs:      time.Now().UnixMilli(),
	}
	value, err := proto.Marshal(dl)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("marshalling the dead letter of %s/%d@%d: %w", m.Topic, m.Partition, m.Offset, err)
	}
	return kafka.Message{
		// The original key keeps a client's dead letters on one partition.
		Key:   m.Key,
		Value: value,
		// Headers let consumers of the topic route on the reason without
		// decoding the value.
		Headers: []kafka.Header{{Key: "reason", Value: []byte(reason)}, {Key: "stage", Value: []byte(Stage)}},
	}, nil
}

// eventIPTruncatedField is Event.ip_truncated's field number.
var eventIPTruncatedField = (&aluminiv1.Event{}).ProtoReflect().Descriptor().Fields().ByName("ip_truncated").Number()

// deadLetterNow writes the dead letter of a row ClickHouse rejected.
func (s *Sink) deadLetterNow(ctx context.Context, m kafka.Message, cause error) error {
	dm, err := s.deadLetterMessage(m, ReasonRejected, cause)
	if err != nil {
		return err
	}
	err = s.retry(ctx, "dead-letter write", s.cfg.Kafka, s.m.deadLetterRetries, func(ctx context.Context) error {
		return s.dlq.WriteMessages(ctx, dm)
	})
	if err != nil {
		return err
	}
	s.m.deadLetters.WithLabelValues(ReasonRejected).Inc()
	return nil
}

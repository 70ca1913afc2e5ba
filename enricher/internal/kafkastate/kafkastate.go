// Package kafkastate keeps the enricher's small shared state (daily salts,
// session state) in compacted Kafka topics: creating them, reading a
// partition from its start to its current end, and deleting old records
// for good.
package kafkastate

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// EnsureCompacted creates topic with the given partitions as a compacted
// topic when it does not exist yet; extra settings override the defaults.
// An existing topic is left as it is.
func EnsureCompacted(ctx context.Context, cl *kgo.Client, topic string, partitions int32, replication int16, extra map[string]string) error {
	configs := map[string]*string{}
	set := func(k, v string) { configs[k] = &v }
	set("cleanup.policy", "compact")
	// Tombstones must outlive a reader's rebuild, but not by long: a day.
	set("delete.retention.ms", strconv.Itoa(24*3600*1000))
	for k, v := range extra {
		set(k, v)
	}
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, replication, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	return nil
}

// ReadPartition reads partition of topic from its first record to the end
// it had when the call started, and calls fn for each record in order.
// conn holds the connection options (brokers, TLS, SASL).
func ReadPartition(ctx context.Context, conn []kgo.Opt, topic string, partition int32, fn func(*kgo.Record)) error {
	cl, err := kgo.NewClient(conn...)
	if err != nil {
		return fmt.Errorf("connecting to kafka: %w", err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("listing end offsets of %s: %w", topic, err)
	}
	end, ok := ends.Lookup(topic, partition)
	if !ok {
		return fmt.Errorf("topic %s has no partition %d", topic, partition)
	}
	if end.Err != nil {
		return fmt.Errorf("end offset of %s/%d: %w", topic, partition, end.Err)
	}
	starts, err := kadm.NewClient(cl).ListStartOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("listing start offsets of %s: %w", topic, err)
	}
	if s, ok := starts.Lookup(topic, partition); !ok || s.Err != nil || s.Offset >= end.Offset {
		return nil // empty, or every record deleted
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().AtStart()}})
	for {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = errors.Join(ferr, err) })
		if ferr != nil {
			return fmt.Errorf("reading %s/%d: %w", topic, partition, ferr)
		}
		done := false
		fetches.EachRecord(func(r *kgo.Record) {
			if done {
				return
			}
			fn(r)
			done = r.Offset+1 >= end.Offset
		})
		if done {
			return nil
		}
	}
}

// DeleteBefore removes every record of topic/partition below offset, at
// once and for every reader: Kafka's DeleteRecords moves the log start, so
// the records cannot be fetched again even before their segments are
// removed from disk.
func DeleteBefore(ctx context.Context, cl *kgo.Client, topic string, partition int32, offset int64) error {
	var os kadm.Offsets
	os.Add(kadm.Offset{Topic: topic, Partition: partition, At: offset})
	resp, err := kadm.NewClient(cl).DeleteRecords(ctx, os)
	if err != nil {
		return fmt.Errorf("deleting records of %s/%d below %d: %w", topic, partition, offset, err)
	}
	if err := resp.Error(); err != nil {
		return fmt.Errorf("deleting records of %s/%d below %d: %w", topic, partition, offset, err)
	}
	return nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
)

// drain reads every record of topic's partitions with one kafka-go
// connection per partition, whole fetch batches at a time, and only counts
// them: the broker's delivery rate with the least client work, a ceiling
// for any consumer on this broker.
func drain(ctx context.Context, broker, topic string, partitions, n, maxBytes int) (time.Duration, error) {
	var (
		wg    sync.WaitGroup
		total atomic.Int64
		errs  = make([]error, partitions)
	)
	start := time.Now()
	for p := range partitions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[p] = drainPartition(ctx, broker, topic, p, maxBytes, &total)
		}()
	}
	wg.Wait()
	d := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return d, err
	}
	if got := total.Load(); got != int64(n) {
		return d, fmt.Errorf("drained %d records, want %d", got, n)
	}
	return d, nil
}

func drainPartition(ctx context.Context, broker, topic string, p, maxBytes int, total *atomic.Int64) error {
	conn, err := kafka.DialLeader(ctx, "tcp", broker, topic, p)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, last, err := conn.ReadOffsets()
	if err != nil {
		return err
	}
	if _, err := conn.Seek(0, kafka.SeekAbsolute); err != nil {
		return err
	}
	var offset int64
	for offset < last {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := conn.ReadBatchWith(kafka.ReadBatchConfig{MinBytes: 1, MaxBytes: maxBytes, MaxWait: 500 * time.Millisecond})
		for {
			m, err := b.ReadMessage()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					b.Close()
					return err
				}
				break
			}
			offset = m.Offset + 1
			total.Add(1)
		}
		if err := b.Close(); err != nil {
			return err
		}
	}
	return nil
}

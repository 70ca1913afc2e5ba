package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/aluminiapp/pipeline/collector/internal/publish"
)

// runPublish drives the collector's producer alone, without HTTP: calls
// of batch events each (one visitor, so one partition, as the HTTP
// benchmark sends), rate calls a second on their own schedule from conns
// goroutines, each call first spending work of CPU as a request's parsing
// would. It prints the latency of Publish from when each call was due.
// With work 0 it is the broker's and producer's latency on an idle core;
// with the collector's CPU per request it shows what sharing the one core
// (GOMAXPROCS=1) with that work does to the acknowledgement wait.
func runPublish(broker string, rate, batch, conns int, work, warmup, dur time.Duration) {
	addr, err := net.ResolveTCPAddr("tcp", broker)
	if err != nil {
		fail("broker %q: %v", broker, err)
	}
	const topic = "bench.publish"
	cl := &kafka.Client{Addr: addr}
	res, err := cl.CreateTopics(context.Background(), &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 10, ReplicationFactor: 1}}})
	if err != nil {
		fail("creating %s: %v", topic, err)
	}
	if err := res.Errors[topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		fail("creating %s: %v", topic, err)
	}
	p := publish.New(publish.Config{Addr: addr, Topic: topic, AckTimeout: 10 * time.Second}, prometheus.NewRegistry())
	defer p.Close()
	// A page view's size once encoded (about 260 bytes), one key.
	msgs := make([]kafka.Message, batch)
	for i := range msgs {
		msgs[i] = kafka.Message{Key: []byte("bench\x00visitor-key-16b"), Value: make([]byte, 260)}
	}
	start := time.Now().Add(100 * time.Millisecond)
	total := int((warmup + dur).Seconds() * float64(rate))
	skip := int(warmup.Seconds() * float64(rate))
	var (
		mu      sync.Mutex
		lat     []time.Duration
		errs    int
		running sync.WaitGroup
	)
	for c := range conns {
		running.Go(func() {
			for i := c; i < total; i += conns {
				due := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
				time.Sleep(time.Until(due))
				spin(work)
				err := p.Publish(context.Background(), msgs...)
				d := time.Since(due)
				if i < skip {
					continue
				}
				mu.Lock()
				if err != nil {
					errs++
				} else {
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		})
	}
	running.Wait()
	slices.Sort(lat)
	pct := func(p float64) float64 { return ms(percentile(lat, p)) }
	fmt.Printf("publish calls=%d errors=%d rate=%d batch=%d work=%s p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p99.9_ms=%.3f max_ms=%.3f\n",
		len(lat)+errs, errs, rate, batch, work, pct(0.5), pct(0.9), pct(0.99), pct(0.999), pct(1))
}

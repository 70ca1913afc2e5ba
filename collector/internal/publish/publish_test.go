package publish

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/metadata"
	"github.com/segmentio/kafka-go/protocol/produce"
)

// countingTransport answers metadata requests for one topic with 3
// partitions, or with err, and counts what it was asked.
type countingTransport struct {
	metadata, other int
	err             error
}

func (c *countingTransport) RoundTrip(_ context.Context, _ net.Addr, req kafka.Request) (kafka.Response, error) {
	m, ok := req.(*metadata.Request)
	if !ok {
		c.other++
		return &produce.Response{}, nil
	}
	c.metadata++
	if c.err != nil {
		return nil, c.err
	}
	return &metadata.Response{Topics: []metadata.ResponseTopic{{Name: m.TopicNames[0], Partitions: make([]metadata.ResponsePartition, 3)}}}, nil
}

func TestMetadataCache(t *testing.T) {
	inner := &countingTransport{}
	c := &metadataCache{RoundTripper: inner, ttl: 50 * time.Millisecond}
	ask := func(topic string) (kafka.Response, error) {
		t.Helper()
		return c.RoundTrip(t.Context(), nil, &metadata.Request{TopicNames: []string{topic}})
	}
	for range 100 {
		r, err := ask("raw")
		if err != nil || len(r.(*metadata.Response).Topics[0].Partitions) != 3 {
			t.Fatalf("metadata(raw) = %v, %v; want 3 partitions", r, err)
		}
	}
	if inner.metadata != 1 {
		t.Errorf("100 metadata requests within the ttl reached the broker %d times; want 1", inner.metadata)
	}
	if _, err := ask("other"); err != nil || inner.metadata != 2 {
		t.Errorf("metadata(other) = %v, broker asked %d times; want a fresh request for another topic", err, inner.metadata)
	}
	time.Sleep(60 * time.Millisecond)
	inner.metadata = 0
	if _, err := ask("raw"); err != nil || inner.metadata != 1 {
		t.Errorf("after the ttl: err %v, broker asked %d times; want a fresh request", err, inner.metadata)
	}

	// Errors are passed on and never cached.
	failing := &countingTransport{err: errors.New("broker gone")}
	c = &metadataCache{RoundTripper: failing, ttl: time.Hour}
	for range 3 {
		if _, err := ask("raw"); err == nil {
			t.Fatal("metadata with the broker gone = nil error; want the error")
		}
	}
	if failing.metadata != 3 {
		t.Errorf("failed metadata requests reached the broker %d times; want every one (3)", failing.metadata)
	}

	// Everything else goes through.
	for range 3 {
		if _, err := c.RoundTrip(t.Context(), nil, &produce.Request{}); err != nil {
			t.Fatal(err)
		}
	}
	if failing.other != 3 {
		t.Errorf("produce requests reaching the broker = %d; want 3", failing.other)
	}
}

func TestAckContextIsShortAndShared(t *testing.T) {
	p := &Publisher{ackTimeout: 5 * time.Second}
	now := time.Now()
	a, b := p.ackContext(now), p.ackContext(now.Add(time.Microsecond))
	if now.UnixNano()/int64(ackWindowWidth) == now.Add(time.Microsecond).UnixNano()/int64(ackWindowWidth) && a != b {
		t.Error("two calls in one window got different contexts; want one shared")
	}
	for _, at := range []time.Time{now, now.Add(3 * ackWindowWidth), now.Add(time.Hour)} {
		d, ok := p.ackContext(at).Deadline()
		if !ok || d.Before(at.Add(p.ackTimeout)) || d.After(at.Add(p.ackTimeout+ackWindowWidth)) {
			t.Errorf("ackContext(%v) deadline = %v, %v; want within [%v, %v]", at, d, ok, at.Add(p.ackTimeout), at.Add(p.ackTimeout+ackWindowWidth))
		}
	}
	if c := p.ackContext(now.Add(3 * ackWindowWidth)); c == a {
		t.Error("a call three windows later got the first window's context")
	}
	// A caller's own cancellable context is honoured, not replaced.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	p = New(Config{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, Topic: "t", BatchTimeout: time.Millisecond, AckTimeout: time.Minute}, prometheus.NewRegistry())
	defer func() {
		if err := p.Close(); err != nil {
			t.Log(err)
		}
	}()
	if err := p.Publish(ctx, kafka.Message{Value: []byte("x")}); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("Publish(cancelled ctx) = %v; want ErrUnavailable from the caller's cancellation", err)
	}
}

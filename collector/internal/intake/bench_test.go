package intake

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/aluminiapp/pipeline/lib/registry"

	"github.com/valyala/fasthttp"
)

const benchEvent = `{"client_id":"blog","url":"https://bench.example/pricing?utm_source=news","referrer":"https://www.google.com/","title":"Pricing","language":"en-US","screen_width":1280,"screen_height":800,"timezone":"Europe/Berlin","properties":{"plan":"pro","seats":3}}`

// benchServe runs the handler without the network, producing to the
// in-process broker, so a CPU profile shows the collector's own work.
func benchServe(b *testing.B, path, body string, events int) {
	f := start(b, func(c *Config) { c.MaxBodyBytes, c.MaxBatchEvents = 1<<20, 1000 })
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		for pb.Next() {
			ctx.Request.Reset()
			ctx.Response.Reset()
			ctx.Request.Header.SetMethod("POST")
			ctx.Request.SetRequestURI(path)
			ctx.Request.Header.SetContentType("application/json")
			ctx.Request.SetBodyString(body)
			f.handler.Serve(&ctx)
			if ctx.Response.StatusCode() != 202 {
				b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
		}
	})
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events)/1000, "µs/event")
}

func BenchmarkEvent(b *testing.B) { benchServe(b, "/api/event", benchEvent, 1) }

func BenchmarkBatch100(b *testing.B) {
	benchServe(b, "/api/batch", "["+strings.Repeat(benchEvent+",", 99)+benchEvent+"]", 100)
}

// BenchmarkDecodeEncodeBatch100 is the collector's own per-event work on a
// batch without HTTP or Kafka: decoding, validation and encoding.
func BenchmarkDecodeEncodeBatch100(b *testing.B) {
	h := New(Config{Clients: benchClients(b), MaxBatchEvents: 1000})
	body := []byte("[" + strings.Repeat(benchEvent+",", 99) + benchEvent + "]")
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		items, slots, err := h.decodeNative(epBatch, body, time.Now(), newArena(len(body)+64))
		if err != nil {
			b.Fatal(err)
		}
		for _, it := range items {
			it.hit.ClientId = it.client.ID
			buf = appendRawHitProps(buf[:0], it.hit, it.props)
		}
		putSlots(slots)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100)/1000, "µs/event")
}

func benchClients(b testing.TB) registry.Registry {
	path := filepath.Join(b.TempDir(), "clients.yaml")
	if err := os.WriteFile(path, clientsYAML(), 0o600); err != nil {
		b.Fatal(err)
	}
	c, err := registry.OpenFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// discard stands in for Kafka only to isolate the handler's own cost in a
// profile; every test of behaviour runs against the in-process broker.
type discard struct{}

func (discard) Admit() error                                    { return nil }
func (discard) Publish(context.Context, ...kafka.Message) error { return nil }

func BenchmarkServeEventWithoutKafka(b *testing.B) {
	h := New(Config{Clients: benchClients(b), Publisher: discard{}})
	b.ReportAllocs()
	var ctx fasthttp.RequestCtx
	for b.Loop() {
		ctx.Request.Reset()
		ctx.Response.Reset()
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI("/api/event")
		ctx.Request.Header.SetContentType("application/json")
		ctx.Request.SetBodyString(benchEvent)
		h.Serve(&ctx)
		if ctx.Response.StatusCode() != 202 {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

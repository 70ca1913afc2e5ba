package intake

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/lib/eventually"
	"github.com/aluminiapp/pipeline/lib/kafkaconf"
	"github.com/aluminiapp/pipeline/lib/kafkatest"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

func TestRateLimits(t *testing.T) {
	f := start(t, func(c *Config) { c.IPRate, c.IPBurst = 1, 2 })
	ev := []byte(`{"client_id":"blog","url":"https://blog.example/"}`)
	for i := 0; i < 2; i++ {
		if r := send(t, "POST", f.url+"/api/event", ev, nil); r.status != 202 {
			t.Fatalf("request %d within the burst = %d %s; want 202", i, r.status, r.body)
		}
	}
	r := send(t, "POST", f.url+"/api/event", ev, nil)
	if r.status != 429 || r.body != `{"error":"too many requests from this address; retry after 1s"}` || r.header.Get("Retry-After") != "1" {
		t.Errorf("request past the per-address burst = %d %s (Retry-After %q); want 429 with Retry-After: 1", r.status, r.body, r.header.Get("Retry-After"))
	}

	g := start(t, func(c *Config) { c.ClientRate, c.ClientBurst = 1, 1 }) // the burst is raised to the batch limit, 10
	var ten []string
	for i := 0; i < 10; i++ {
		ten = append(ten, `{"client_id":"shop","url":"https://shop.example/"}`)
	}
	if r := send(t, "POST", g.url+"/api/batch", []byte("["+strings.Join(ten, ",")+"]"), nil); r.status != 202 {
		t.Fatalf("full batch within the client's burst = %d %s; want 202", r.status, r.body)
	}
	r = send(t, "POST", g.url+"/api/event", []byte(`{"client_id":"shop","url":"https://shop.example/"}`), nil)
	if r.status != 429 || r.body != `{"error":"too many events for client shop; retry after 1s"}` || r.header.Get("Retry-After") != "1" {
		t.Errorf("event past the client's burst = %d %s (Retry-After %q); want 429 with Retry-After: 1", r.status, r.body, r.header.Get("Retry-After"))
	}
	if r := send(t, "POST", g.url+"/api/event", []byte(`{"client_id":"blog","url":"https://blog.example/"}`), nil); r.status != 202 {
		t.Errorf("another client = %d %s; want 202: clients have their own limits", r.status, r.body)
	}
	readHits(t, g, 11)

	// A client's own rule applies where the collector has no default limit.
	n := start(t)
	for i := 0; i < 10; i++ {
		if r := send(t, "POST", n.url+"/api/event", []byte(`{"client_id":"news","url":"https://news.example/"}`), nil); r.status != 202 {
			t.Fatalf("news event %d within its burst = %d %s; want 202", i, r.status, r.body)
		}
	}
	r = send(t, "POST", n.url+"/api/event", []byte(`{"client_id":"news","url":"https://news.example/"}`), nil)
	if r.status != 429 || r.body != `{"error":"too many events for client news; retry after 1s"}` {
		t.Errorf("news past its own limit = %d %s; want 429", r.status, r.body)
	}
	for i := 0; i < 12; i++ {
		if r := send(t, "POST", n.url+"/api/event", []byte(`{"client_id":"blog","url":"https://blog.example/"}`), nil); r.status != 202 {
			t.Fatalf("blog event %d without a limit = %d %s; want 202", i, r.status, r.body)
		}
	}
	readHits(t, n, 22)
}

// TestInflightBytesBound holds one request in Kafka and shows that the next
// one, which would pass the in-flight bound, is refused with 503 at once.
func TestInflightBytesBound(t *testing.T) {
	body := []byte(`{"client_id":"blog","event_id":"first","url":"https://blog.example/a-long-enough-path-for-the-test"}`)
	// Room for the first request (its body twice, as read and as decoded,
	// and its encoded event) but not for a second one beside it.
	f := start(t, func(c *Config) { c.MaxInflightBytes = 5 * int64(len(body)) })
	release := make(chan struct{})
	var held atomic.Bool
	f.cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		if held.CompareAndSwap(false, true) {
			<-release // the broker takes its time with the first write
		}
		return nil, nil, false
	})
	first := make(chan response, 1)
	go func() { first <- send(t, "POST", f.url+"/api/event", body, nil) }()
	eventually.True(t, 5*time.Second, "the first request in flight", func() bool { return f.handler.inflight.Load() > 0 })
	r := send(t, "POST", f.url+"/api/event", []byte(`{"client_id":"blog","event_id":"second","url":"https://blog.example/"}`), nil)
	if r.status != 503 || r.body != `{"error":"the collector is busy; retry later with the same event_id"}` || r.header.Get("Retry-After") != "1" {
		t.Errorf("request past the in-flight bound = %d %s (Retry-After %q); want 503 with Retry-After: 1", r.status, r.body, r.header.Get("Retry-After"))
	}
	close(release)
	if r := <-first; r.status != 202 {
		t.Errorf("held request = %d %s; want 202 once Kafka acknowledged", r.status, r.body)
	}
	if got := readHits(t, f, 1)[0].EventId; got != "first" {
		t.Errorf("stored %q; want only the first event", got)
	}
	if got := f.handler.inflight.Load(); got != 0 {
		t.Errorf("in-flight bytes at rest = %d; want 0", got)
	}
}

// TestBrokerOutageNeverAcknowledgesLostEvents stops the broker (every
// request refused, connections closed) for longer than the ack timeout
// while many senders are posting, and brings it back. Every event answered with 2xx must be in Kafka
// afterwards; intake must resume by itself.
func TestBrokerOutageNeverAcknowledgesLostEvents(t *testing.T) {
	f := start(t)
	var down atomic.Bool
	f.cluster.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
		f.cluster.KeepControl()
		if down.Load() {
			return nil, errors.New("broker stopped"), true
		}
		return nil, nil, false
	})
	var (
		mu       sync.Mutex
		acked    = map[string]bool{}
		statuses = map[int]int{}
		afterUp  atomic.Int64
	)
	const workers = 24
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Since(start) < 4500*time.Millisecond; i++ {
				id := fmt.Sprintf("bp-%d-%d", w, i)
				var body string
				if i%3 == 0 { // batches too: all of it is acknowledged or none
					body = fmt.Sprintf(`[{"client_id":"blog","event_id":"%s-a","url":"https://blog.example/"},{"client_id":"blog","event_id":"%s-b","url":"https://blog.example/"}]`, id, id)
				} else {
					body = fmt.Sprintf(`{"client_id":"blog","event_id":"%s","url":"https://blog.example/"}`, id)
				}
				path := "/api/event"
				if i%3 == 0 {
					path = "/api/batch"
				}
				wasUp := !down.Load()
				r := send(t, "POST", f.url+path, []byte(body), nil)
				mu.Lock()
				statuses[r.status]++
				if r.status/100 == 2 {
					if path == "/api/batch" {
						acked[id+"-a"], acked[id+"-b"] = true, true
					} else {
						acked[id] = true
					}
					if wasUp && time.Since(start) > 3500*time.Millisecond {
						afterUp.Add(1)
					}
				} else if r.status != 503 || r.header.Get("Retry-After") == "" {
					t.Errorf("POST %s = %d %s; want 2xx or 503 with Retry-After", path, r.status, r.body)
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	down.Store(true)
	// Longer than the ack timeout (2s): the producer retries until then,
	// so a shorter outage is ridden out without a single 503.
	time.Sleep(2500 * time.Millisecond)
	down.Store(false)
	wg.Wait()

	n := kafkatest.Count(t, f.kafka, f.topic)
	stored := map[string]bool{}
	for _, m := range kafkatest.ReadAll(t, f.kafka, f.topic, int(n), 10*time.Second) {
		var hit aluminiv1.RawHit
		if err := proto.Unmarshal(m.Value, &hit); err != nil {
			t.Fatal(err)
		}
		stored[hit.EventId] = true
	}
	missing := 0
	for id := range acked {
		if !stored[id] {
			missing++
			if missing <= 5 {
				t.Errorf("event %s was answered 2xx but is not in Kafka", id)
			}
		}
	}
	t.Logf("statuses %v; %d events acknowledged, %d records in Kafka, %d acknowledged after the broker returned", statuses, len(acked), n, afterUp.Load())
	if missing > 0 {
		t.Errorf("%d acknowledged events are missing from Kafka", missing)
	}
	if statuses[503] == 0 {
		t.Error("no request was answered 503 while the broker was down; the outage was not exercised")
	}
	if afterUp.Load() == 0 {
		t.Error("no event was accepted after the broker came back; intake did not resume by itself")
	}
	if got := f.handler.inflight.Load(); got != 0 {
		t.Errorf("in-flight bytes at rest = %d; want 0", got)
	}
}

func TestReadinessFollowsKafka(t *testing.T) {
	f := start(t)
	kcfg := kafkaconf.Config{Brokers: f.kafka}
	f.handler.cfg.Health.AddCheck("kafka", kcfg.Ping) // as main.go does
	f.handler.cfg.Health.Started()
	if r := send(t, "GET", f.url+"/readyz", nil, nil); r.status != 200 {
		t.Fatalf("/readyz with Kafka up = %d %s; want 200", r.status, r.body)
	}
	f.cluster.Close()
	var r response
	eventually.Within(8*time.Second, func() bool {
		r = send(t, "GET", f.url+"/readyz", nil, nil)
		return r.status == 503
	})
	if r.status != 503 || !strings.Contains(r.body, `"kafka"`) {
		t.Errorf("/readyz with Kafka down = %d %s; want 503 naming kafka", r.status, r.body)
	}
	f.handler.cfg.Health.SetDraining()
	if r := send(t, "GET", f.url+"/readyz", nil, nil); r.status != 503 || !strings.Contains(r.body, "draining") {
		t.Errorf("/readyz while draining = %d %s; want 503 draining", r.status, r.body)
	}
}

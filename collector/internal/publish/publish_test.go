package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/aluminiapp/pipeline/lib/eventually"
	"github.com/aluminiapp/pipeline/lib/kafkaconf"
	"github.com/aluminiapp/pipeline/lib/kafkatest"
)

// TestPartitionerIsJavas checks that events land where kafka-go's (and the
// Java client's) murmur2 partitioner puts them, so collectors of different
// versions agree on a visitor's partition.
func TestPartitionerIsJavas(t *testing.T) {
	var b kafka.Murmur2Balancer
	for _, n := range []int{1, 2, 3, 7, 12, 64} {
		parts := make([]int, n)
		for i := range parts {
			parts[i] = i
		}
		for i := range 500 {
			full := fmt.Sprintf("client-%d|visitor-%08x", i%7, i*7919)
			key := []byte(full[:i%len(full)]) // every length, the empty key too
			if got, want := murmur2Partition(key, n), b.Balance(kafka.Message{Key: key}, parts...); got != want {
				t.Fatalf("partition of %q among %d = %d; kafka-go's Murmur2Balancer says %d", key, n, got, want)
			}
		}
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
	p = New(Config{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, Topic: "t", AckTimeout: time.Minute}, prometheus.NewRegistry())
	defer func() {
		if err := p.Close(); err != nil {
			t.Log(err)
		}
	}()
	if err := p.Publish(ctx, kafka.Message{Value: []byte("x")}); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("Publish(cancelled ctx) = %v; want ErrUnavailable from the caller's cancellation", err)
	}
}

// broker starts a kfake broker with topic "raw" of the given partitions.
func broker(t *testing.T, partitions int) (*kfake.Cluster, string) {
	t.Helper()
	cluster, addr := kafkatest.Start(t)
	kcfg := kafkaconf.Config{Brokers: addr, Partitions: partitions, ReplicationFactor: 1}
	if err := kcfg.EnsureTopics(t.Context(), "raw"); err != nil {
		t.Fatal(err)
	}
	return cluster, addr
}

// brokerHoldingFirstProduce is a one-partition broker that answers the
// first produce request only once release is closed; held turns true when
// that request arrived.
func brokerHoldingFirstProduce(t *testing.T) (addr string, held *atomic.Bool, release chan struct{}) {
	t.Helper()
	cluster, addr := broker(t, 1)
	held, release = new(atomic.Bool), make(chan struct{})
	cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if held.CompareAndSwap(false, true) {
			<-release
		}
		return nil, nil, false
	})
	return addr, held, release
}

// TestConcurrentPublishesShareRequests publishes from many goroutines at
// once while the broker is slow: every event must be in Kafka exactly
// once, on its key's partition, and the events that arrived while a
// request was in flight must have gone together in few requests.
func TestConcurrentPublishesShareRequests(t *testing.T) {
	cluster, addr := broker(t, 3)
	var produces atomic.Int64
	cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		produces.Add(1)
		time.Sleep(20 * time.Millisecond) // a slow broker: requests queue up behind each other
		return nil, nil, false
	})
	reg := prometheus.NewRegistry()
	p := New(Config{Addr: kafka.TCP(addr), Topic: "raw", AckTimeout: 10 * time.Second}, reg)
	const senders, each = 40, 5
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range each {
				key := fmt.Appendf(nil, "visitor-%d", s)
				msgs := []kafka.Message{{Key: key, Value: fmt.Appendf(nil, "%d-%d", s, i)}}
				if i%2 == 1 { // and a request with two events of another visitor
					msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "other-%d", s), Value: fmt.Appendf(nil, "%d-%d-b", s, i)})
				}
				if err := p.Publish(context.Background(), msgs...); err != nil {
					t.Errorf("Publish: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	want := senders*each + senders*(each/2)
	got := kafkatest.ReadAll(t, addr, "raw", want, 10*time.Second)
	seen := map[string]int{}
	var b kafka.Murmur2Balancer
	for _, m := range got {
		seen[string(m.Value)]++
		if want := b.Balance(m, 0, 1, 2); m.Partition != want {
			t.Errorf("event %s with key %s on partition %d; its key's partition is %d", m.Value, m.Key, m.Partition, want)
		}
	}
	for v, n := range seen {
		if n != 1 {
			t.Errorf("event %s stored %d times; want once", v, n)
		}
	}
	if len(got) != want || len(seen) != want {
		t.Errorf("stored %d records (%d distinct); want %d", len(got), len(seen), want)
	}
	// 300 events from 40 concurrent senders on 3 partitions, each request
	// taking 20 ms: sent one by one that is 300 requests.
	if n := produces.Load(); n > int64(want)/4 {
		t.Errorf("%d produce requests for %d events; want events that arrive during a request to share the next one", n, want)
	}
	if n := testutil.CollectAndCount(reg, "alumini_collector_produce_batch_events"); n != 1 {
		t.Errorf("batch size histogram series = %d; want 1", n)
	}
	// Every request the broker saw is timed once, and each took the
	// broker's 20 ms at least.
	var m dto.Metric
	if err := p.roundTrips.Write(&m); err != nil {
		t.Fatal(err)
	}
	if n, sum := m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum(); n != uint64(produces.Load()) || sum < 0.020*float64(n) {
		t.Errorf("produce request histogram: %d requests, %.3f s in all; want %d requests of 20 ms or more", n, sum, produces.Load())
	}
}

// TestTimedOutEventsLeaveTheQueue holds the broker's first answer past the
// ack timeout: the events queued behind it must be answered with an error
// in time and taken out of the queue, so that a broker that is down never
// makes the producer's memory grow (those already in a request may still
// reach Kafka, which a 503 allows); once the broker answers, new events go
// through.
func TestTimedOutEventsLeaveTheQueue(t *testing.T) {
	addr, held, release := brokerHoldingFirstProduce(t)
	p := New(Config{Addr: kafka.TCP(addr), Topic: "raw", AckTimeout: 300 * time.Millisecond}, prometheus.NewRegistry())
	defer func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	}()
	first := make(chan error, 1)
	go func() { first <- p.Publish(context.Background(), kafka.Message{Value: []byte("held")}) }()
	eventually.True(t, 10*time.Second, "the first produce request held", held.Load)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			start := time.Now()
			err := p.Publish(context.Background(), kafka.Message{Value: fmt.Appendf(nil, "queued-%d", i)})
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("event queued behind a held request = %v; want ErrUnavailable", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("answered after %v; want about the ack timeout (300ms)", d)
			}
		})
	}
	// The queue metric shows them waiting while the first request is held.
	eventually.Within(200*time.Millisecond, func() bool { return p.queued() >= 50 })
	if n := p.queued(); n != 50 {
		t.Errorf("queued events while the broker holds the first request = %v; want 50", n)
	}
	wg.Wait()
	if n := p.queued(); n != 0 {
		t.Errorf("%v timed-out events still queued; want none", n)
	}
	if n := p.backlog.Load(); n != 0 {
		t.Errorf("backlog after the queued events timed out = %d bytes; want 0 (withdrawn events no longer hold requests back)", n)
	}
	if err := <-first; !errors.Is(err, ErrUnavailable) {
		t.Errorf("held event = %v; want ErrUnavailable after the ack timeout", err)
	}
	close(release)
	if err := p.Publish(context.Background(), kafka.Message{Value: []byte("after")}); err != nil {
		t.Errorf("event after the broker answered again = %v; want nil", err)
	}
}

// TestAdmitHoldsWhileAFullRequestWaits: once a full produce request of
// events waits behind one in flight, Admit holds new requests, and lets
// them go as soon as the lane takes the waiting events into a request.
func TestAdmitHoldsWhileAFullRequestWaits(t *testing.T) {
	addr, held, release := brokerHoldingFirstProduce(t)
	reg := prometheus.NewRegistry()
	p := New(Config{Addr: kafka.TCP(addr), Topic: "raw", AckTimeout: 10 * time.Second}, reg)
	p.stalledAfter = time.Minute // the held request is a busy broker here, not a dead one
	defer func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	}()
	var published sync.WaitGroup
	published.Go(func() {
		if err := p.Publish(context.Background(), kafka.Message{Value: []byte("held")}); err != nil {
			t.Error(err)
		}
	})
	eventually.True(t, 10*time.Second, "the first produce request held", held.Load)
	if err := p.Admit(); err != nil {
		t.Fatalf("Admit with one small request in flight = %v; want nil at once", err)
	}
	// Two events of 600 KB: a request takes one (1 MiB at most), so the
	// lane holds more than a request's worth until the broker answers.
	for i := range 2 {
		published.Go(func() {
			if err := p.Publish(context.Background(), kafka.Message{Value: bytes.Repeat([]byte{byte('a' + i)}, 600<<10)}); err != nil {
				t.Error(err)
			}
		})
	}
	eventually.True(t, 10*time.Second, "both 600 KB events in the lane's backlog", func() bool { return p.backlog.Load() >= 1200<<10 })
	admitted := make(chan error, 1)
	go func() { admitted <- p.Admit() }()
	select {
	case err := <-admitted:
		t.Fatalf("Admit with 1.2 MB waiting = %v before the broker answered; want it held", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	select {
	case err := <-admitted:
		if err != nil {
			t.Errorf("Admit once the broker answered = %v; want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Admit still held 5 s after the broker answered")
	}
	published.Wait()
	if n := p.backlog.Load(); n != 0 {
		t.Errorf("backlog after every event was acknowledged = %d bytes; want 0", n)
	}
	if n := testutil.ToFloat64(p.held); n != 1 {
		t.Errorf("alumini_collector_admission_held_total = %v; want 1", n)
	}
	// Every event is in Kafka once, the 600 KB ones whole.
	got := kafkatest.ReadAll(t, addr, "raw", 3, 10*time.Second)
	sizes := map[int]int{}
	for _, m := range got {
		if len(m.Value) == 600<<10 && !bytes.Equal(m.Value, bytes.Repeat(m.Value[:1], 600<<10)) {
			t.Errorf("a 600 KB event came back changed")
		}
		sizes[len(m.Value)]++
	}
	if sizes[600<<10] != 2 || sizes[len("held")] != 1 {
		t.Errorf("read back events of sizes %v; want two of %d bytes and one of %d", sizes, 600<<10, len("held"))
	}
}

// TestAdmitIgnoresStalledLanes: events waiting behind a request that has
// been in flight for long (its broker down) do not hold requests back,
// which would make an outage of some partitions one of all; the same
// events behind a request just sent do, and a held request goes once that
// request has been out too long.
func TestAdmitIgnoresStalledLanes(t *testing.T) {
	p := New(Config{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, Topic: "t", AckTimeout: time.Minute}, prometheus.NewRegistry())
	stuck, moving := &lane{backlog: p.queuedBytes}, &lane{backlog: p.queuedBytes}
	p.lanes.Store(&laneSet{lanes: []*lane{stuck, moving}, expires: time.Now().Add(time.Hour)})
	stuck.queued(2 * maxBacklog)
	stuck.sendingSince.Store(time.Now().Add(-2 * p.stalledAfter).UnixNano())
	if err := p.Admit(); err != nil {
		t.Fatalf("Admit with the backlog behind a stalled lane = %v; want nil at once", err)
	}
	stuck.sendingSince.Store(time.Now().UnixNano()) // a request just sent: the lane moves
	admitted := make(chan error, 1)
	go func() { admitted <- p.Admit() }()
	select {
	case err := <-admitted:
		t.Fatalf("Admit with 2 MiB behind a request just sent = %v; want it held", err)
	case <-time.After(p.stalledAfter / 2):
	}
	select {
	case err := <-admitted:
		if err != nil {
			t.Errorf("Admit once the lane stalled = %v; want nil", err)
		}
	case <-time.After(p.stalledAfter + 5*p.admitRecheck):
		t.Fatal("Admit still held after the lane's request was out for longer than stalledAfter")
	}
}

// TestAdmitLeavesNoOneWaiting: while the backlog crosses the bound back and
// forth, no Admit may go to sleep just after the last wake-up it needed; once
// the backlog is gone, every caller must be through.
func TestAdmitLeavesNoOneWaiting(t *testing.T) {
	p := New(Config{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, Topic: "t", AckTimeout: time.Minute}, prometheus.NewRegistry())
	p.admitRecheck = time.Hour // only the wake-up may let them go
	l := &lane{backlog: p.queuedBytes}
	p.lanes.Store(&laneSet{lanes: []*lane{l}, expires: time.Now().Add(time.Hour)})
	for round := range 200 {
		var admitted sync.WaitGroup
		l.queued(maxBacklog)
		for range 4 {
			admitted.Go(func() {
				if err := p.Admit(); err != nil {
					t.Error(err)
				}
			})
		}
		runtime.Gosched()
		l.queued(-maxBacklog) // the last event out: nothing else will wake them
		done := make(chan struct{})
		go func() { admitted.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: Admit still waiting 5 s after the backlog was gone", round)
		}
	}
}

// TestCloseFlushes closes the producer while events are queued and in
// flight: Close returns only after they were answered, every event
// answered with success is in Kafka, and nothing is taken afterwards.
func TestCloseFlushes(t *testing.T) {
	cluster, addr := broker(t, 2)
	var produces atomic.Int64
	cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		produces.Add(1)
		time.Sleep(50 * time.Millisecond) // a slow broker, so that Close finds events in flight
		return nil, nil, false
	})
	p := New(Config{Addr: kafka.TCP(addr), Topic: "raw", AckTimeout: 5 * time.Second}, prometheus.NewRegistry())
	const n = 20
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- p.Publish(context.Background(), kafka.Message{Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")})
		}()
	}
	eventually.True(t, 10*time.Second, "a produce request at the broker", func() bool { return produces.Load() > 0 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	acked := 0
	for range n {
		switch err := <-errs; {
		case err == nil:
			acked++
		case !errors.Is(err, ErrUnavailable):
			t.Errorf("Publish during Close = %v; want nil or ErrUnavailable", err)
		}
	}
	if acked == 0 {
		t.Fatal("no event was acknowledged; Close did not flush what it held")
	}
	if got := kafkatest.Count(t, addr, "raw"); got != int64(acked) {
		t.Errorf("%d records in Kafka; want the %d acknowledged", got, acked)
	}
	if err := p.Publish(context.Background(), kafka.Message{Value: []byte("late")}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Publish after Close = %v; want ErrUnavailable", err)
	}
}

// TestWakeChainSkipsAbandonedCalls walks a chain whose middle caller gave
// up: the others are each woken once, and the lane hears the chain's end
// once, after the last woken caller passed it on.
func TestWakeChainSkipsAbandonedCalls(t *testing.T) {
	end := make(chan struct{}, 1)
	a, b, c := calls.Get().(*call), calls.Get().(*call), calls.Get().(*call)
	for _, x := range []*call{a, b, c} {
		x.state.Store(callWaiting)
		x.end = end
	}
	a.next, b.next, c.next = b, c, nil
	b.state.Store(callAbandoned)

	wakeChain(a, end)
	select {
	case <-a.done:
	default:
		t.Fatal("first caller not woken")
	}
	if len(c.done) != 0 || len(end) != 0 {
		t.Fatal("the chain went on before the first woken caller passed it on")
	}
	wakeChain(a.next, a.end) // what a does once it runs
	if len(b.done) != 0 || b.state.Load() != callAbandoned {
		t.Error("an abandoned caller was woken")
	}
	select {
	case <-c.done:
	default:
		t.Fatal("the caller after the abandoned one was not woken")
	}
	if len(end) != 0 {
		t.Fatal("the lane heard the end before the last caller ran")
	}
	wakeChain(c.next, c.end) // what c does once it runs
	if len(end) != 1 {
		t.Error("the lane did not hear the end of the chain")
	}
}

// TestPartitionsAddedAreUsed adds partitions to the topic while the
// producer runs: once the metadata says so (the transport's cache and the
// producer's own second), keys go to the partitions the Java partitioner
// picks among all of them, as another collector would put them.
func TestPartitionsAddedAreUsed(t *testing.T) {
	_, addr := broker(t, 2)
	p := New(Config{Addr: kafka.TCP(addr), Topic: "raw", AckTimeout: 5 * time.Second}, prometheus.NewRegistry())
	defer func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	}()
	if err := p.Publish(context.Background(), kafka.Message{Key: []byte("before"), Value: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	client := &kafka.Client{Addr: kafka.TCP(addr)}
	res, err := client.CreatePartitions(t.Context(), &kafka.CreatePartitionsRequest{Topics: []kafka.TopicPartitionsConfig{{Name: "raw", Count: 4}}})
	if err != nil || res.Errors["raw"] != nil {
		t.Fatalf("adding partitions: %v, %v", err, res)
	}
	// A key that lands on partition 2 or 3 of 4.
	var key []byte
	for i := 0; key == nil; i++ {
		if k := fmt.Appendf(nil, "visitor-%d", i); murmur2Partition(k, 4) >= 2 {
			key = k
		}
	}
	want := murmur2Partition(key, 4)
	var last string
	n := 0
	eventually.True(t, 20*time.Second, "the producer to see the added partitions", func() bool {
		last = fmt.Sprintf("after-%d", n)
		n++
		if err := p.Publish(context.Background(), kafka.Message{Key: key, Value: []byte(last)}); err != nil {
			t.Fatal(err)
		}
		s := p.lanes.Load()
		return s != nil && len(s.lanes) == 4 // this publish already chose among 4
	})
	found := false
	for _, m := range kafkatest.ReadAll(t, addr, "raw", int(kafkatest.Count(t, addr, "raw")), 5*time.Second) {
		if string(m.Value) == last {
			found = true
			if m.Partition != want {
				t.Errorf("%s with key %s on partition %d; among 4 partitions its key's is %d", last, key, m.Partition, want)
			}
		}
	}
	if !found {
		t.Errorf("%s is not in Kafka", last)
	}
}

// TestRefusedRequestsAreRetried drops the broker's connection on the first
// produce requests: the producer sends again, counts it, and the event is
// acknowledged once, within the ack timeout.
func TestRefusedRequestsAreRetried(t *testing.T) {
	cluster, addr := broker(t, 1)
	var refused atomic.Int64
	cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		if refused.Add(1) <= 2 {
			cluster.KeepControl()
			return nil, errors.New("broker restarting"), true // kfake closes the connection
		}
		return nil, nil, false
	})
	reg := prometheus.NewRegistry()
	p := New(Config{Addr: kafka.TCP(addr), Topic: "raw", AckTimeout: 5 * time.Second}, reg)
	defer func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	}()
	if err := p.Publish(context.Background(), kafka.Message{Value: []byte("once")}); err != nil {
		t.Fatalf("Publish with the first two requests refused = %v; want nil after retries", err)
	}
	if n := testutil.ToFloat64(p.retries); n < 2 {
		t.Errorf("produce retries = %v; want at least 2", n)
	}
	if got := kafkatest.Count(t, addr, "raw"); got != 1 {
		t.Errorf("%d records in Kafka; want the event once", got)
	}
}

// TestLeaderMovesCostMilliseconds streams events into a three-broker
// cluster (replication factor 3) while the leader of every partition
// moves to another broker, one partition after the other and then all at
// once: no event may fail (a 503), every one must be in Kafka once, and
// the slowest publish during the moves is printed. kafka-go's cached
// metadata made the next publish after a move take 0.6-4.7 s.
func TestLeaderMovesCostMilliseconds(t *testing.T) {
	t.Parallel()
	cluster, addr := kafkatest.Start(t, kfake.NumBrokers(3))
	kcfg := kafkaconf.Config{Brokers: addr, Partitions: 6, ReplicationFactor: 3}
	if err := kcfg.EnsureTopics(t.Context(), "raw"); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	p := New(Config{Addr: kafka.TCP(addr), Topic: "raw", AckTimeout: 5 * time.Second}, reg)

	const senders = 8
	var (
		sent, failed atomic.Int64
		slowest      atomic.Int64 // ns, publishes while moving
		steady       atomic.Int64 // ns, publishes before: the baseline
		moving       atomic.Bool
		stop         = make(chan struct{})
		wg           sync.WaitGroup
	)
	for s := range senders {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				err := p.Publish(context.Background(), kafka.Message{Key: fmt.Appendf(nil, "visitor-%d-%d", s, i%50), Value: fmt.Appendf(nil, "%d-%d", s, i)})
				took := time.Since(start)
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					t.Errorf("Publish during leader moves: %v", err)
					continue
				}
				worst := &steady
				if moving.Load() {
					worst = &slowest
				}
				for {
					old := worst.Load()
					if int64(took) <= old || worst.CompareAndSwap(old, int64(took)) {
						break
					}
				}
			}
		})
	}
	// A steady stream first.
	waitForCount(t, &sent, 500)
	moving.Store(true)
	for round := range 2 {
		for part := range int32(6) {
			leader := cluster.LeaderFor("raw", part)
			to := (leader + 1 + int32(round)) % 3
			if err := cluster.MoveTopicPartition("raw", part, to); err != nil {
				t.Fatal(err)
			}
			// Let events reach the moved partition before the next move.
			waitForCount(t, &sent, sent.Load()+200)
		}
	}
	cluster.ShufflePartitionLeaders()
	waitForCount(t, &sent, sent.Load()+500)
	moving.Store(false)
	close(stop)
	wg.Wait()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	n := int(sent.Load())
	got := kafkatest.ReadAll(t, addr, "raw", n, 90*time.Second)
	seen := map[string]int{}
	for _, m := range got {
		seen[string(m.Value)]++
	}
	doubled := 0
	for _, c := range seen {
		if c > 1 {
			doubled++
		}
	}
	refreshes := testutil.ToFloat64(p.refreshes)
	t.Logf("leader moves: %d events, %d failed (503), %d lost, %d doubled; slowest publish during the moves %v (before them: %v); %v metadata refreshes",
		n, failed.Load(), n-len(seen), doubled, time.Duration(slowest.Load()).Round(time.Millisecond),
		time.Duration(steady.Load()).Round(time.Millisecond), refreshes)
	if failed.Load() != 0 || len(seen) != n || doubled != 0 {
		t.Errorf("want every event acknowledged and stored once")
	}
	if refreshes == 0 {
		t.Errorf("no metadata refresh counted; the moves went unnoticed")
	}
	// The target is 250 ms (BENCHMARKS.md measures it). The machine's own
	// stalls show in the slowest publish before the moves, so the bound
	// allows for three of them on top: still far below the seconds that
	// stale metadata cost, and loose enough for a loaded machine or -race.
	bound := 250*time.Millisecond + 3*time.Duration(steady.Load())
	if slowest := time.Duration(slowest.Load()); slowest > bound {
		t.Errorf("slowest publish during the moves took %v; want under %v (250 ms plus three times the slowest before them)", slowest, bound)
	}
}

// waitForCount waits until n reaches want.
func waitForCount(t *testing.T, n *atomic.Int64, want int64) {
	t.Helper()
	if !eventually.Within(30*time.Second, func() bool { return n.Load() >= want }) {
		t.Fatalf("stream stalled at %d events, waiting for %d", n.Load(), want)
	}
}

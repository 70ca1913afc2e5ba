// Package kafkatest starts an in-process Kafka-protocol broker (franz-go's
// kfake) for tests, closed when the test ends.
package kafkatest

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Start runs a one-broker cluster and returns its address.
func Start(t testing.TB, opts ...kfake.Opt) (*kfake.Cluster, string) {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()[0]
}

// ReadAll reads topic from the start, without a consumer group, until want
// records arrived or the timeout passed, and returns what it read.
func ReadAll(t testing.TB, addr, topic string, want int, timeout time.Duration) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	parts := partitions(t, addr, topic)
	msgs := make(chan kafka.Message)
	readers := make([]*kafka.Reader, 0, len(parts))
	for _, p := range parts {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: topic, Partition: p.ID, MaxWait: 50 * time.Millisecond})
		readers = append(readers, r)
		go func() {
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					return
				}
				select {
				case msgs <- m:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	var out []kafka.Message
	for len(out) < want {
		select {
		case m := <-msgs:
			out = append(out, m)
		case <-ctx.Done():
			want = 0
		}
	}
	cancel()
	for _, r := range readers {
		if err := r.Close(); err != nil {
			t.Logf("closing reader: %v", err)
		}
	}
	return out
}

// Count is the number of records in topic (the sum of its partitions' end
// offsets), for asserting that nothing was produced.
func Count(t testing.TB, addr, topic string) int64 {
	t.Helper()
	var n int64
	for _, p := range partitions(t, addr, topic) {
		conn, err := kafka.DialLeader(context.Background(), "tcp", addr, topic, p.ID)
		if err != nil {
			t.Fatalf("dialing leader of %s/%d: %v", topic, p.ID, err)
		}
		last, err := conn.ReadLastOffset()
		if closeErr := conn.Close(); closeErr != nil {
			t.Logf("closing kafka connection: %v", closeErr)
		}
		if err != nil {
			t.Fatalf("reading end offset of %s/%d: %v", topic, p.ID, err)
		}
		n += last
	}
	return n
}

func partitions(t testing.TB, addr, topic string) []kafka.Partition {
	t.Helper()
	conn, err := kafka.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dialing kafka: %v", err)
	}
	defer func() {
		if err := conn.Close(); err != nil {
			t.Logf("closing kafka connection: %v", err)
		}
	}()
	parts, err := conn.ReadPartitions(topic)
	if err != nil {
		t.Fatalf("reading partitions of %s: %v", topic, err)
	}
	return parts
}

// Restartable is a kfake cluster on fixed addresses whose topics, records
// and committed offsets survive Stop and Start, as brokers an operator
// stops and starts again: clients see connections refused while it is
// stopped, and the same addresses afterwards.
type Restartable struct {
	t     testing.TB
	ports []int
	host  string
	dir   string
	opts  []kfake.Opt

	mu      sync.Mutex
	cluster *kfake.Cluster
}

// NewRestartable returns a cluster of one broker per address in addrs
// (host:port, all on one host), not yet started; it is stopped when the
// test ends.
func NewRestartable(t testing.TB, addrs []string, opts ...kfake.Opt) *Restartable {
	t.Helper()
	r := &Restartable{t: t, dir: t.TempDir(), opts: opts}
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatalf("broker address %q: %v", a, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			t.Fatalf("broker address %q: %v", a, err)
		}
		r.host = host
		r.ports = append(r.ports, p)
	}
	t.Cleanup(r.Stop)
	return r
}

// Start starts the brokers (again), with the data they had when stopped.
func (r *Restartable) Start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cluster != nil {
		return
	}
	host := r.host
	c, err := kfake.NewCluster(append([]kfake.Opt{
		kfake.NumBrokers(len(r.ports)),
		kfake.Ports(r.ports...),
		kfake.ListenFn(func(network, addr string) (net.Listener, error) {
			_, port, _ := net.SplitHostPort(addr)
			return net.Listen(network, net.JoinHostPort(host, port))
		}),
		kfake.DataDir(r.dir),
	}, r.opts...)...)
	if err != nil {
		r.t.Fatalf("starting kfake: %v", err)
	}
	r.cluster = c
}

// Stop stops the brokers, keeping their data on disk.
func (r *Restartable) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cluster != nil {
		r.cluster.Close()
		r.cluster = nil
	}
}

// Cluster is the running cluster, nil while stopped.
func (r *Restartable) Cluster() *kfake.Cluster {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cluster
}

// Committed is the sum over topic's partitions of group's committed offsets
// (a partition without a commit, or a group that never joined, counts 0),
// for waiting until a consumer group has committed everything.
func Committed(t testing.TB, addr, group, topic string) int64 {
	t.Helper()
	var ids []int
	for _, p := range partitions(t, addr, topic) {
		ids = append(ids, p.ID)
	}
	client := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 10 * time.Second}
	resp, err := client.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ids}})
	if err != nil {
		t.Fatalf("fetching the committed offsets of %s on %s: %v", group, topic, err)
	}
	if errors.Is(resp.Error, kafka.GroupIdNotFound) {
		return 0
	}
	if resp.Error != nil {
		t.Fatalf("fetching the committed offsets of %s on %s: %v", group, topic, resp.Error)
	}
	var sum int64
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			t.Fatalf("committed offset of %s on %s/%d: %v", group, topic, p.Partition, p.Error)
		}
		if p.CommittedOffset > 0 {
			sum += p.CommittedOffset
		}
	}
	return sum
}

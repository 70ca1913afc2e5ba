package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/protobuf/proto"
)

// brokerProcess is kfake in a child process (this binary with
// -serve-kafka), which also produces the events on request: the process
// CPU time the bench reads is then the sinker's, not the broker's or the
// producer's.
type brokerProcess struct {
	addr  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

func startBroker(partitions int) (*brokerProcess, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-serve-kafka", strconv.Itoa(partitions))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the broker process: %w", err)
	}
	b := &brokerProcess{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	line, err := b.out.ReadString('\n')
	if err != nil {
		b.stop()
		return nil, fmt.Errorf("reading the broker's address: %w", err)
	}
	b.addr = strings.TrimSpace(line)
	return b, nil
}

// produce asks the child to produce (see produce) and waits until it has.
func (b *brokerProcess) produce(topic string, n, rate int, compress bool) (int, error) {
	if _, err := fmt.Fprintf(b.stdin, "%s %d %d %t\n", topic, n, rate, compress); err != nil {
		return 0, err
	}
	line, err := b.out.ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("broker process: %w", err)
	}
	line = strings.TrimSpace(line)
	if msg, failed := strings.CutPrefix(line, "error "); failed {
		return 0, errors.New(msg)
	}
	return strconv.Atoi(line)
}

func (b *brokerProcess) stop() {
	b.stdin.Close() // the child serves until its stdin closes
	if err := b.cmd.Wait(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: broker process:", err)
	}
}

// serveBroker is the child's side of brokerProcess.
func serveBroker(partitions int) error {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(partitions))
	if err != nil {
		return err
	}
	defer cluster.Close()
	addr := cluster.ListenAddrs()[0]
	fmt.Println(addr)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var (
			topic    string
			n, rate  int
			compress bool
		)
		if _, err := fmt.Sscan(in.Text(), &topic, &n, &rate, &compress); err != nil {
			return fmt.Errorf("reading a produce request: %w", err)
		}
		bytes, err := produce(addr, topic, n, rate, compress)
		if err != nil {
			fmt.Println("error", err)
			continue
		}
		fmt.Println(bytes)
	}
	return in.Err()
}

// enricherBatch is how many events the producer writes per call, as the
// enricher does (its -batch-max-records).
const enricherBatch = 1000

// produce writes events [0, n) to topic as the enricher writes enriched
// events (batches of enricherBatch, acks from all replicas, LZ4 when
// compress), at rate events/s (0: as fast as the broker takes them), and
// returns the record bytes written.
func produce(broker, topic string, n, rate int, compress bool) (int, error) {
	w := &kafka.Writer{Addr: kafka.TCP(broker), Topic: topic, Balancer: &kafka.Murmur2Balancer{},
		BatchSize: enricherBatch, BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	if compress {
		w.Compression = kafka.Lz4
	}
	ctx := context.Background()
	start := time.Now()
	var recordBytes int
	msgs := make([]kafka.Message, 0, enricherBatch)
	for from := 0; from < n; from += enricherBatch {
		if rate > 0 {
			due := start.Add(time.Duration(float64(from) / float64(rate) * float64(time.Second)))
			time.Sleep(time.Until(due))
		}
		msgs = msgs[:0]
		for i := from; i < min(from+enricherBatch, n); i++ {
			v, err := proto.Marshal(event(i))
			if err != nil {
				return 0, err
			}
			recordBytes += len(v)
			msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "v%d", i%50_000), Value: v})
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			return 0, errors.Join(err, w.Close())
		}
	}
	return recordBytes, w.Close()
}

// cpuTime is the CPU time (user and system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

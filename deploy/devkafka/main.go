// Command devkafka runs an embedded Kafka-protocol broker (franz-go's kfake)
// with its data on disk, for `make run` on a machine without Kafka.
// Production runs Apache Kafka; nothing in Alumini depends on this broker.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9092", "address to listen on")
	dataDir := flag.String("data-dir", ".data/kafka", "directory holding the broker's topics and offsets across restarts")
	flag.Parse()

	host, portStr, err := net.SplitHostPort(*addr)
	if err != nil {
		fail("addr %q: %v", *addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		fail("addr %q: port: %v", *addr, err)
	}
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, portStr))
		}),
		kfake.DataDir(*dataDir),
		// Topics are created by the services with their configured layout;
		// auto-creation would hide a missing topic.
		kfake.DefaultNumPartitions(6),
	)
	if err != nil {
		fail("starting broker: %v", err)
	}
	fmt.Printf("devkafka: listening on %s, data in %s\n", cluster.ListenAddrs()[0], *dataDir)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	// Close writes the in-memory state (group offsets, segment tails) to disk.
	cluster.Close()
	fmt.Println("devkafka: stopped")
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "devkafka: "+format+"\n", args...)
	os.Exit(1)
}

// Package chtest gives integration tests a private database on the real
// ClickHouse server that `make test` starts (CLICKHOUSE_ADDR).
package chtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// DefaultAddr is where deploy/clickhouse/clickhouse.sh runs the local server.
const DefaultAddr = "127.0.0.1:19000"

// Addr is the server tests use: CLICKHOUSE_ADDR, or DefaultAddr.
func Addr() string {
	if a := os.Getenv("CLICKHOUSE_ADDR"); a != "" {
		return a
	}
	return DefaultAddr
}

// Database creates a fresh database with a random name, dropped when the test
// ends, and returns its name and a connection whose default database it is.
// It fails the test when no server answers: integration tests must not pass
// by skipping.
func Database(t testing.TB) (string, driver.Conn) {
	t.Helper()
	return database(t, Addr(), "start it with `make clickhouse`, or set CLICKHOUSE_ADDR", "")
}

// ClusterDefaultAddr is where deploy/clickhouse/cluster.sh runs the first
// node of its cluster.
const ClusterDefaultAddr = "127.0.0.1:29000"

// Cluster is the name of that cluster (remote_servers): two shards of one
// replica each, two servers, with ZooKeeper, so replicated tables,
// Distributed tables over several shards and ON CLUSTER DDL work.
const Cluster = "alumini_two"

// ClusterAddr is the cluster server tests use: CLICKHOUSE_CLUSTER_ADDR, or
// ClusterDefaultAddr.
func ClusterAddr() string {
	if a := os.Getenv("CLICKHOUSE_CLUSTER_ADDR"); a != "" {
		return a
	}
	return ClusterDefaultAddr
}

// ClusterShards are the native addresses of the cluster's two nodes, one
// per shard: ClusterAddr, and the port 100 above it, where
// deploy/clickhouse/cluster.sh puts the second.
func ClusterShards() []string {
	first := ClusterAddr()
	host, port, err := net.SplitHostPort(first)
	p, perr := strconv.Atoi(port)
	if err != nil || perr != nil {
		return []string{first}
	}
	return []string{first, net.JoinHostPort(host, strconv.Itoa(p+100))}
}

// ClusterDatabase is Database on every node of the cluster (made and
// dropped ON CLUSTER), with a connection to the first node.
func ClusterDatabase(t testing.TB) (string, driver.Conn) {
	t.Helper()
	return database(t, ClusterAddr(), "start it with `deploy/clickhouse/cluster.sh start .data/cluster`, or set CLICKHOUSE_CLUSTER_ADDR", " ON CLUSTER "+Cluster)
}

// database makes the database on addr; onCluster is "" or the ON CLUSTER
// clause its CREATE and DROP carry.
func database(t testing.TB, addr, hint, onCluster string) (string, driver.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("clickhouse at %s: %v", addr, err)
	}
	if err := admin.Ping(ctx); err != nil {
		t.Fatalf("clickhouse at %s does not answer (%s): %v", addr, hint, err)
	}
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := "test_" + hex.EncodeToString(b)
	if err := admin.Exec(ctx, "CREATE DATABASE "+name+onCluster); err != nil {
		t.Fatalf("creating database %s: %v", name, err)
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Auth: clickhouse.Auth{Database: name}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("clickhouse: %v", err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Logf("closing clickhouse connection: %v", err)
		}
		if err := admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+onCluster); err != nil {
			t.Logf("dropping database %s: %v", name, err)
		}
		if err := admin.Close(); err != nil {
			t.Logf("closing clickhouse connection: %v", err)
		}
	})
	return name, conn
}

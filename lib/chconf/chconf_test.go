package chconf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aluminiapp/pipeline/lib/chtest"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want error
	}{
		{Config{Addr: "127.0.0.1:9000", Database: "alumini"}, nil},
		{Config{Addr: "ch:9000", Database: "_x1"}, nil},
		{Config{Addr: "127.0.0.1:9000", Database: "bad-name"}, ErrBadDatabaseName},
		{Config{Addr: "127.0.0.1:9000", Database: "x; DROP DATABASE y"}, ErrBadDatabaseName},
		{Config{Addr: "127.0.0.1:9000", Database: "1db"}, ErrBadDatabaseName},
		{Config{Addr: "127.0.0.1:9000", Database: ""}, ErrBadDatabaseName},
		{Config{Addr: "127.0.0.1:9000", Database: "alumini", Cluster: "prod-eu_1"}, nil},
		{Config{Addr: "127.0.0.1:9000", Database: "alumini", Cluster: "c` ON CLUSTER x"}, ErrBadClusterName},
	} {
		err := tc.cfg.Validate()
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("Validate(%+v) = %v; want %v", tc.cfg, err, tc.want)
		}
	}
	if err := (&Config{Addr: "no-port", Database: "a"}).Validate(); err == nil {
		t.Error("Validate with an address without port = nil; want an error")
	}
}

// TestCreateDatabaseOnCluster creates the database ON CLUSTER on the two
// shards of deploy/clickhouse/cluster.sh: the cluster DDL that follows runs
// on every node, in this database, so every node must have it.
func TestCreateDatabaseOnCluster(t *testing.T) {
	name := fmt.Sprintf("test_chconf_%d", time.Now().UnixNano())
	c := Config{Addr: chtest.ClusterAddr(), Database: name, Cluster: chtest.Cluster}
	ctx := context.Background()
	if err := c.CreateDatabase(ctx); err != nil {
		t.Fatalf("CreateDatabase on cluster %s: %v", c.Cluster, err)
	}
	conn, err := c.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	defer func() {
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" ON CLUSTER "+chtest.Cluster); err != nil {
			t.Logf("dropping %s: %v", name, err)
		}
	}()
	if err := c.CreateDatabase(ctx); err != nil {
		t.Errorf("CreateDatabase again = %v; want nil (IF NOT EXISTS)", err)
	}
	for _, addr := range chtest.ClusterShards() {
		node := Config{Addr: addr, Database: "default"}
		nc, err := node.Open()
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		err = nc.QueryRow(ctx, "SELECT count() FROM system.databases WHERE name = ?", name).Scan(&n)
		nc.Close()
		if err != nil || n != 1 {
			t.Errorf("databases named %s on %s after CreateDatabase = %d, %v; want 1", name, addr, n, err)
		}
	}
}

// TestTLS connects over the secure native port of the server `make test`
// starts (deploy/clickhouse/clickhouse.sh gives it a self-signed
// certificate), and checks that a client not trusting that certificate is
// refused instead of falling back to plaintext.
func TestTLS(t *testing.T) {
	addr, ca := os.Getenv("CLICKHOUSE_TLS_ADDR"), os.Getenv("CLICKHOUSE_TLS_CA_FILE")
	if addr == "" || ca == "" {
		t.Skip("CLICKHOUSE_TLS_ADDR and CLICKHOUSE_TLS_CA_FILE unset: `make test` sets them for its local server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	good := Config{Addr: addr, Database: "default", User: "default", TLS: true, TLSCAFile: ca}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	conn, err := good.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var one uint8
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 over TLS = %d, %v", one, err)
	}
	untrusting := Config{Addr: addr, Database: "default", User: "default", TLS: true}
	conn2, err := untrusting.Open()
	if err == nil {
		defer conn2.Close()
		err = conn2.Ping(ctx)
	}
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client that does not trust the certificate: %v; want a certificate error", err)
	}
}

func TestTLSValidate(t *testing.T) {
	for _, c := range []Config{
		{Addr: "a:9440", Database: "a", TLSCAFile: "ca.pem"},
		{Addr: "a:9440", Database: "a", TLS: true, TLSCAFile: "/nonexistent/ca.pem"},
	} {
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "clickhouse-tls") {
			t.Errorf("Validate(%+v) = %v; want an error naming the TLS flag", c, err)
		}
	}
}

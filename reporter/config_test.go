package main

import (
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/chtest"
	"github.com/aluminiapp/pipeline/lib/eventually"
	"github.com/aluminiapp/pipeline/lib/service"
)

func parse(t *testing.T, args ...string) *config {
	t.Helper()
	var c config
	fs := flag.NewFlagSet("reporter", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parsing %q: %v", args, err)
	}
	return &c
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // a substring of the error; empty for a valid config
	}{
		{"defaults with a registry", []string{"-clients-file=clients.yaml"}, ""},
		{"no registry", nil, "clients-file is required"},
		{"bad listen addr", []string{"-clients-file=c.yaml", "-listen-addr=8081"}, "listen-addr"},
		{"bad clickhouse addr", []string{"-clients-file=c.yaml", "-clickhouse-addr=localhost"}, "clickhouse-addr"},
		{"empty database", []string{"-clients-file=c.yaml", "-clickhouse-database="}, "clickhouse-database"},
		{"zero query timeout", []string{"-clients-file=c.yaml", "-query-timeout=0s"}, "query-timeout"},
	} {
		err := parse(t, tc.args...).Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: Validate(%q) = %v; want nil", tc.name, tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: Validate(%q) = %v; want an error mentioning %q", tc.name, tc.args, err, tc.want)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	c := parse(t)
	if c.AdminAddr != "127.0.0.1:9103" || c.ListenAddr != "127.0.0.1:8081" || c.ClickHouse.Addr != "127.0.0.1:9000" ||
		c.ClickHouse.Database != "alumini" || c.QueryTimeout != 10*time.Second {
		t.Errorf("defaults = %+v; want admin 127.0.0.1:9103, listen 127.0.0.1:8081, clickhouse 127.0.0.1:9000/alumini, timeout 10s", c)
	}
}

// TestRunBecomesReadyAndStops starts the service against the test
// ClickHouse and checks that it turns ready and stops cleanly on cancel.
func TestRunBecomesReadyAndStops(t *testing.T) {
	db, _ := chtest.Database(t)
	clients := filepath.Join(t.TempDir(), "clients.yaml")
	if err := os.WriteFile(clients, []byte("clients: [{id: shop}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := parse(t, "-clients-file="+clients, "-listen-addr=127.0.0.1:0",
		"-clickhouse-addr="+chtest.Addr(), "-clickhouse-database="+db)
	rt := &service.Runtime{Name: "reporter", Log: zap.NewNop(), Metrics: prometheus.NewRegistry(), Health: service.NewHealth()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.run(ctx, rt) }()

	var failures map[string]string
	ready := eventually.Within(10*time.Second, func() bool {
		select {
		case err := <-done:
			t.Fatalf("run returned before it was ready: %v", err)
		default:
		}
		failures = rt.Health.Ready(context.Background())
		return len(failures) == 0
	})
	if !ready {
		t.Fatalf("not ready after 10s: %v", failures)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after cancel = %v; want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return within 10s of cancel")
	}
}

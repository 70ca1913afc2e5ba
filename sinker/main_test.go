package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/lib/chschema"
	"github.com/aluminiapp/pipeline/lib/chtest"
	"github.com/aluminiapp/pipeline/lib/eventually"
	"github.com/aluminiapp/pipeline/lib/kafkatest"
	"github.com/aluminiapp/pipeline/lib/service"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
	"github.com/aluminiapp/pipeline/sinker/internal/erased/erasedtest"
)

// defaults is the configuration the flags give without arguments.
func defaults(t *testing.T) *config {
	t.Helper()
	var c config
	fs := flag.NewFlagSet("sinker", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	return &c
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(c *config)
		wantErr string // "" means valid
	}{
		{"defaults", func(*config) {}, ""},
		{"database with underscore", func(c *config) { c.ClickHouse.Database = "alumini_eu" }, ""},
		{"no kafka brokers", func(c *config) { c.Brokers = "" }, "kafka-brokers"},
		{"clickhouse addr without port", func(c *config) { c.ClickHouse.Addr = "clickhouse" }, "clickhouse-addr"},
		{"database with dash", func(c *config) { c.ClickHouse.Database = "alumini-eu" }, "clickhouse-database"},
		{"database starting with digit", func(c *config) { c.ClickHouse.Database = "1alumini" }, "clickhouse-database"},
		{"database injection", func(c *config) { c.ClickHouse.Database = "a; DROP DATABASE b" }, "clickhouse-database"},
		{"empty group", func(c *config) { c.GroupID = "" }, "group-id"},
		{"zero rows", func(c *config) { c.BatchMaxRows = 0 }, "batch-max-rows"},
		{"too many rows", func(c *config) { c.BatchMaxRows = 2_000_000 }, "batch-max-rows"},
		{"tiny bytes", func(c *config) { c.BatchMaxBytes = 100 }, "batch-max-bytes"},
		{"zero wait", func(c *config) { c.BatchMaxWait = 0 }, "batch-max-wait"},
		{"hour wait", func(c *config) { c.BatchMaxWait = time.Hour }, "batch-max-wait"},
		{"zero erased refresh", func(c *config) { c.ErasedRefresh = 0 }, "erased-refresh-interval"},
		{"day erased refresh", func(c *config) { c.ErasedRefresh = 24 * time.Hour }, "erased-refresh-interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := defaults(t)
			tt.edit(c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v; want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate() = %v; want an error naming %q", err, tt.wantErr)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := defaults(t)
	got := fmt.Sprintf("%s %s %s %s %d %d %v", c.AdminAddr, c.ClickHouse.Addr, c.ClickHouse.Database, c.GroupID, c.BatchMaxRows, c.BatchMaxBytes, c.BatchMaxWait)
	want := "127.0.0.1:9102 127.0.0.1:9000 alumini alumini-sinker 50000 67108864 1s"
	if got != want {
		t.Errorf("defaults = %q; want %q", got, want)
	}
}

// freshDatabase names a database that does not exist yet and is dropped
// when the test ends.
func freshDatabase(t *testing.T) string {
	t.Helper()
	base, conn := chtest.Database(t)
	name := base + "_sinker"
	t.Cleanup(func() {
		if err := conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name); err != nil {
			t.Logf("dropping database %s: %v", name, err)
		}
	})
	return name
}

func TestMigrateCreatesDatabaseAndSchema(t *testing.T) {
	c := defaults(t)
	c.ClickHouse.Addr = chtest.Addr()
	c.ClickHouse.Database = freshDatabase(t)
	ctx := context.Background()
	for i := range 2 { // a second run finds everything in place
		if err := migrate(ctx, c.ClickHouse, zaptest.NewLogger(t)); err != nil {
			t.Fatalf("migrate run %d = %v; want nil", i+1, err)
		}
	}
	_, conn := chtest.Database(t)
	var version uint32
	if err := conn.QueryRow(ctx, "SELECT max(version) FROM "+c.ClickHouse.Database+".schema_migrations").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if want := chschema.Migrations[len(chschema.Migrations)-1].Version; version != want {
		t.Errorf("schema version = %d; want %d", version, want)
	}
}

// TestRun runs the service's run as service.Main would: ready only after
// startup, events stored, an erasure recorded meanwhile picked up by the
// refresh and its visitor's events dropped, a clean stop on cancel.
func TestRun(t *testing.T) {
	_, addr := kafkatest.Start(t)
	c := defaults(t)
	c.Brokers = addr
	c.ClickHouse.Addr = chtest.Addr()
	c.ClickHouse.Database = freshDatabase(t)
	c.BatchMaxWait = 50 * time.Millisecond
	c.ErasedRefresh = 50 * time.Millisecond
	rt := &service.Runtime{Name: "sinker", Log: zaptest.NewLogger(t), Metrics: service.NewRegistry("sinker"), Health: service.NewHealth()}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.run(ctx, rt) }()
	deadline := time.Now().Add(30 * time.Second)
	var failures map[string]string
	if !eventually.Within(time.Until(deadline), func() bool { failures = rt.Health.Ready(ctx); return len(failures) == 0 }) {
		t.Fatalf("not ready after 30s: %v", failures)
	}

	// The reporter starts and erases visitor 9 of shop.
	_, conn := chtest.Database(t)
	db, err := clickhouse.Open(&clickhouse.Options{Addr: []string{chtest.Addr()}, Auth: clickhouse.Auth{Database: c.ClickHouse.Database}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	}()
	erasedtest.Record(t, db, "shop", 9)
	if !eventually.Within(time.Until(deadline), func() bool { return gaugeValue(t, rt, "alumini_sinker_erased_visitors") == 1 }) {
		t.Fatal("the erasure was not loaded after 30s")
	}

	var msgs []kafka.Message
	for _, ev := range []*aluminiv1.Event{
		{ClientId: "shop", EventId: "erased-1", VisitorId: 9, TimestampMs: time.Now().UnixMilli()},
		{ClientId: "shop", EventId: "run-1", VisitorId: 10, TimestampMs: time.Now().UnixMilli()},
	} {
		value, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		// One key, one partition: erased-1 is handled before run-1.
		msgs = append(msgs, kafka.Message{Key: []byte("k"), Value: value})
	}
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: c.EnrichedTopic, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !eventually.Within(time.Until(deadline), func() bool {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM "+c.ClickHouse.Database+".events WHERE event_id = 'run-1'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}) {
		t.Fatal("event run-1 not stored after 30s")
	}
	var erasedRows uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+c.ClickHouse.Database+".events WHERE event_id = 'erased-1'").Scan(&erasedRows); err != nil || erasedRows != 0 {
		t.Errorf("rows of the erased visitor's event = %d, %v; want 0", erasedRows, err)
	}
	if n, err := testutil.GatherAndCount(rt.Metrics, "alumini_sinker_rows_inserted_total", "alumini_sinker_last_insert_timestamp_seconds"); err != nil || n != 2 {
		t.Errorf("GatherAndCount(sinker metrics) = %d, %v; want 2 series", n, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after cancel = %v; want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return within 30s of cancel")
	}
}

// gaugeValue is the value of the unlabelled gauge name in rt's registry.
func gaugeValue(t *testing.T, rt *service.Runtime, name string) float64 {
	t.Helper()
	mfs, err := rt.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}

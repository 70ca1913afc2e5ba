package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/chconf"
	"github.com/aluminiapp/pipeline/lib/chschema"
	"github.com/aluminiapp/pipeline/lib/chtest"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

func TestOpenCreatesDatabaseAndInserts(t *testing.T) {
	base, admin := chtest.Database(t)
	name := base + "_store"
	ctx := context.Background()
	t.Cleanup(func() {
		if err := admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name); err != nil {
			t.Logf("dropping %s: %v", name, err)
		}
	})
	s, err := Open(ctx, chconf.Config{Addr: chtest.Addr(), Database: name})
	if err != nil {
		t.Fatalf("Open(%q) = %v; want nil", name, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
	})
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping = %v; want nil", err)
	}
	if err := chschema.Apply(ctx, s.Conn(), zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	events := []*aluminiv1.Event{{ClientId: "shop", EventId: "a"}, {ClientId: "shop", EventId: "b"}}
	if err := s.Insert(ctx, events); err != nil {
		t.Fatalf("Insert = %v; want nil", err)
	}
	var n uint64
	if err := admin.QueryRow(ctx, "SELECT count() FROM "+name+".events").Scan(&n); err != nil || n != 2 {
		t.Errorf("rows in %s.events = %d, %v; want 2", name, n, err)
	}
}

// poisonedEvents is a fresh events table that refuses, for its data, any
// block holding an event with the path /poison: a MATERIALIZED column is
// computed before the block is written, and a throwIf in it fails it.
func poisonedEvents(t *testing.T) driver.Conn {
	t.Helper()
	_, conn := chtest.Database(t)
	ctx := context.Background()
	if err := chschema.Apply(ctx, conn, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, "ALTER TABLE events ADD COLUMN poison UInt8 MATERIALIZED throwIf(path = '/poison')"); err != nil {
		t.Fatal(err)
	}
	return conn
}

func TestInsertClassifiesDataErrors(t *testing.T) {
	conn := poisonedEvents(t)
	ctx := context.Background()
	s := New(conn)
	good := &aluminiv1.Event{ClientId: "shop", EventId: "a", Path: "/", Properties: map[string]string{"b": "2", "a": "1"}}
	bad := &aluminiv1.Event{ClientId: "shop", EventId: "b", Path: "/poison"}
	for _, tc := range []struct {
		name     string
		events   []*aluminiv1.Event
		rejected bool
	}{
		{"good", []*aluminiv1.Event{good}, false},
		{"poisoned", []*aluminiv1.Event{good, bad}, true},
	} {
		err := s.Insert(ctx, tc.events)
		if got := errors.Is(err, ErrRejected); got != tc.rejected || (err == nil) == tc.rejected {
			t.Errorf("Insert(%s) = %v; want rejected %v", tc.name, err, tc.rejected)
		}
	}
	var keys, values []string
	if err := conn.QueryRow(ctx, "SELECT prop_keys, prop_values FROM events WHERE event_id = 'a' LIMIT 1").Scan(&keys, &values); err != nil {
		t.Fatal(err)
	}
	if strings.Join(keys, ",") != "a,b" || strings.Join(values, ",") != "1,2" {
		t.Errorf("properties = %v %v; want [a b] [1 2]", keys, values)
	}

	// A server that is down is not the data's fault: the sinker retries.
	down := New(mustOpen(t, "127.0.0.1:1"))
	if err := down.Insert(ctx, []*aluminiv1.Event{good}); err == nil || errors.Is(err, ErrRejected) {
		t.Errorf("Insert to a closed port = %v; want a non-rejection error", err)
	}
}

func mustOpen(t *testing.T, addr string) driver.Conn {
	t.Helper()
	c := chconf.Config{Addr: addr, Database: "default"}
	conn, err := c.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() }) // nothing was ever connected
	return conn
}

// TestInsertOfManyBlocksMakesOnePart: an insert larger than sendBlockRows
// goes out as several native blocks; the server must squash them, so that
// big batches still make one part (what keeps ClickHouse's merges light),
// and a row ClickHouse refuses in the last block keeps the whole insert out.
func TestInsertOfManyBlocksMakesOnePart(t *testing.T) {
	conn := poisonedEvents(t)
	ctx := context.Background()
	if err := conn.Exec(ctx, "SYSTEM STOP MERGES events"); err != nil {
		t.Fatal(err)
	}
	n := 3*sendBlockRows + 5
	events := make([]*aluminiv1.Event, n)
	ts := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC).UnixMilli()
	for i := range events {
		events[i] = &aluminiv1.Event{ClientId: "shop", EventId: fmt.Sprint("e", i), Path: "/", TimestampMs: ts}
	}
	s := New(conn)
	if err := s.Insert(ctx, events); err != nil {
		t.Fatal(err)
	}
	var parts, rows uint64
	if err := conn.QueryRow(ctx, "SELECT count(), sum(rows) FROM system.parts WHERE database = currentDatabase() AND table = 'events' AND active").Scan(&parts, &rows); err != nil {
		t.Fatal(err)
	}
	if parts != 1 || rows != uint64(n) {
		t.Errorf("an insert of %d rows made %d parts of %d rows in all; want 1 part", n, parts, rows)
	}
	events[n-1] = &aluminiv1.Event{ClientId: "shop", EventId: "bad", Path: "/poison", TimestampMs: ts}
	if err := s.Insert(ctx, events); !errors.Is(err, ErrRejected) {
		t.Fatalf("insert with a refused row in its last block = %v; want ErrRejected", err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(), sum(rows) FROM system.parts WHERE database = currentDatabase() AND table = 'events' AND active").Scan(&parts, &rows); err != nil {
		t.Fatal(err)
	}
	if parts != 1 || rows != uint64(n) {
		t.Errorf("after the refused insert: %d parts, %d rows; want the first insert's 1 part of %d rows only", parts, rows, n)
	}
}

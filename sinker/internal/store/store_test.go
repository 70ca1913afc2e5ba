package store

import (
	"errors"
	"strings"

	"context"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"testing"

	"github.com/aluminiapp/pipeline/lib/chconf"
	"github.com/aluminiapp/pipeline/lib/chtest"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
	"github.com/aluminiapp/pipeline/sinker/schema"
	"go.uber.org/zap"
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
	if err := schema.Apply(ctx, s.Conn(), zap.NewNop()); err != nil {
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

func TestInsertClassifiesDataErrors(t *testing.T) {
	_, conn := chtest.Database(t)
	ctx := context.Background()
	if err := schema.Apply(ctx, conn, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	// A MATERIALIZED column is computed before the block is written, so a
	// throwIf in it makes the server refuse the whole block for its data.
	if err := conn.Exec(ctx, "ALTER TABLE events ADD COLUMN poison UInt8 MATERIALIZED throwIf(path = '/poison')"); err != nil {
		t.Fatal(err)
	}
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

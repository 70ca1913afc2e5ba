package store

import (
	"context"
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

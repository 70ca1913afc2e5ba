package query

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/chtest"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
	"github.com/aluminiapp/pipeline/sinker/schema"
)

var march = Range{
	From: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
	To:   time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC),
}

func TestAggregateBindsEveryValue(t *testing.T) {
	sql, args, err := Aggregate("shop", march)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"shop", march.From.Unix(), march.To.Unix()}
	if !reflect.DeepEqual(args, want) {
		t.Errorf("Aggregate(shop, march) args = %v; want %v", args, want)
	}
	if sql != aggregateSQL {
		t.Errorf("Aggregate(shop, march) SQL = %q; want the fixed statement", sql)
	}
}

func TestAggregateRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, client string
		r            Range
		want         error
	}{
		{"no client", "", march, ErrNoClient},
		{"empty range", "shop", Range{From: march.From, To: march.From}, ErrBadRange},
		{"reversed range", "shop", Range{From: march.To, To: march.From}, ErrBadRange},
	} {
		if _, _, err := Aggregate(tc.client, tc.r); !errors.Is(err, tc.want) {
			t.Errorf("%s: Aggregate(%q, %v) = %v; want %v", tc.name, tc.client, tc.r, err, tc.want)
		}
	}
}

func TestStoreAggregateIsScopedToTheClient(t *testing.T) {
	ctx := context.Background()
	_, conn := chtest.Database(t)
	if err := schema.Apply(ctx, conn, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	batch, err := conn.PrepareBatch(ctx, schema.InsertSQL)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 3, 5, 10, 0, 0, 0, time.UTC).UnixMilli()
	for _, ev := range []*aluminiv1.Event{
		{ClientId: "shop", EventId: "a", Type: aluminiv1.EventType_EVENT_TYPE_PAGEVIEW, TimestampMs: ts, VisitorId: 1},
		{ClientId: "shop", EventId: "b", Type: aluminiv1.EventType_EVENT_TYPE_CUSTOM, TimestampMs: ts, VisitorId: 2},
		{ClientId: "blog", EventId: "c", Type: aluminiv1.EventType_EVENT_TYPE_PAGEVIEW, TimestampMs: ts, VisitorId: 3},
	} {
		if err := batch.Append(schema.Values(ev)...); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	store, err := NewStore(conn, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		client string
		want   Totals
	}{
		{"shop", Totals{Pageviews: 1, Visitors: 2, Events: 2}},
		{"blog", Totals{Pageviews: 1, Visitors: 1, Events: 1}},
		// A bound value is data, never SQL.
		{"shop' OR '1'='1", Totals{}},
	} {
		got, err := store.Aggregate(ctx, tc.client, march)
		if err != nil || got != tc.want {
			t.Errorf("Aggregate(%q, march) = %+v, %v; want %+v", tc.client, got, err, tc.want)
		}
	}
}

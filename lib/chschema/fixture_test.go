package chschema

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/chtest"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// fixture is a few days of two clients' traffic: sessions of one to five
// events, several pages and sources, some bots and custom events.
func fixture() []*aluminiv1.Event {
	var evs []*aluminiv1.Event
	start := time.Date(2026, 11, 2, 22, 0, 0, 0, time.UTC)
	paths := []string{"/", "/pricing", "/blog/a", "/blog/b", "/signup"}
	sources := [][2]string{{"", ""}, {"Google", "organic"}, {"news.example", "referral"}, {"Twitter", "social"}}
	n := 0
	for s := 0; s < 120; s++ {
		client := "shop"
		if s%5 == 4 {
			client = "blog"
		}
		visitor := uint64(1 + s%37)
		t := start.Add(time.Duration(s*23) * time.Minute)
		src := sources[s%len(sources)]
		for e := 0; e <= s%5; e++ {
			n++
			typ := aluminiv1.EventType_EVENT_TYPE_PAGEVIEW
			if e == 2 {
				typ = aluminiv1.EventType_EVENT_TYPE_CUSTOM
			}
			evs = append(evs, &aluminiv1.Event{
				ClientId: client, EventId: fmt.Sprintf("ev-%05d", n), Type: typ, Name: map[bool]string{true: "signup"}[e == 2],
				TimestampMs: t.Add(time.Duration(e*97) * time.Second).UnixMilli(), ReceivedAtMs: t.UnixMilli(),
				Hostname: "shop.example", Path: paths[(s+e)%len(paths)], ReferrerSource: src[0], ReferrerMedium: src[1],
				UtmCampaign: map[bool]string{true: "winter"}[s%7 == 0], IsBot: s%11 == 0,
				VisitorId: visitor, SessionId: uint64(1000 + s), IsNewVisitor: e == 0,
				Browser: []string{"Firefox", "Chrome", "Safari"}[s%3], DeviceType: aluminiv1.DeviceType(1 + s%3),
				Properties: map[bool]map[string]string{true: {"plan": []string{"free", "pro"}[s%2]}}[e == 2],
			})
		}
	}
	return evs
}

func insert(t testing.TB, conn driver.Conn, evs []*aluminiv1.Event) {
	t.Helper()
	// On a cluster the insert returns once the shards have the rows, as the
	// sinker's does (store.OnCluster); on one node the setting does nothing.
	ctx := clickhouse.Context(context.Background(), clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1}))
	batch, err := conn.PrepareBatch(ctx, InsertSQL)
	if err != nil {
		t.Fatal(err)
	}
	var b Block
	for _, ev := range evs {
		b.Add(ev)
	}
	if err := b.AppendTo(batch); err != nil {
		t.Fatal(err)
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
}

// dump runs a query and renders its rows as text, one line per row.
func dump(t *testing.T, conn driver.Conn, query string) string {
	t.Helper()
	rows, err := conn.Query(context.Background(), query)
	if err != nil {
		t.Fatalf("%v\n%s", err, query)
	}
	defer rows.Close()
	var out strings.Builder
	for rows.Next() {
		vals := make([]any, len(rows.ColumnTypes()))
		for i, ct := range rows.ColumnTypes() {
			vals[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(vals...); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if i > 0 {
				out.WriteString("\t")
			}
			fmt.Fprint(&out, reflect.ValueOf(v).Elem().Interface())
		}
		out.WriteString("\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// applyUpTo applies the migrations up to version, as a sinker of that
// schema version would.
func applyUpTo(t *testing.T, conn driver.Conn, version uint32, opts ...Option) {
	t.Helper()
	all := Migrations
	defer func() { Migrations = all }()
	Migrations = nil
	for _, m := range all {
		if m.Version <= version {
			Migrations = append(Migrations, m)
		}
	}
	if err := Apply(context.Background(), conn, zap.NewNop(), opts...); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentApply starts four migrations at once on an empty database,
// as four sinkers starting together do.
func TestConcurrentApply(t *testing.T) {
	_, conn := chtest.Database(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = Apply(context.Background(), conn, zap.NewNop())
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Apply %d = %v; want nil", i, err)
		}
	}
	tablesDescribed(t, conn, Target{})
	insert(t, conn, fixture()[:10])
	var n uint64
	if err := conn.QueryRow(context.Background(), "SELECT count() FROM events FINAL").Scan(&n); err != nil || n != 10 {
		t.Errorf("events after concurrent Apply = %d, %v; want 10", n, err)
	}
}

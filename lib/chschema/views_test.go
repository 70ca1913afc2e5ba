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

// reportPairs are the common reports, each computed from the raw table and
// from a view. They must agree row for row.
var reportPairs = []struct{ name, raw, view string }{
	{"hourly by type",
		`SELECT client_id, toStartOfHour(timestamp) AS h, type, uniqExact(event_id), uniqExact(visitor_id), uniqExact(session_id)
FROM events WHERE is_bot = 0 GROUP BY client_id, h, type ORDER BY client_id, h, type`,
		`SELECT client_id, hour AS h, type, uniqExactMerge(events), uniqExactMerge(visitors), uniqExactMerge(sessions)
FROM events_hourly_v2 WHERE is_bot = 0 GROUP BY client_id, h, type ORDER BY client_id, h, type`},
	{"daily page views and visitors",
		`SELECT client_id, toDate(timestamp) AS d, uniqExactIf(event_id, type = 'pageview'), uniqExact(visitor_id)
FROM events WHERE is_bot = 0 GROUP BY client_id, d ORDER BY client_id, d`,
		`SELECT client_id, toDate(hour) AS d, uniqExactMergeIf(events, type = 'pageview'), uniqExactMerge(visitors)
FROM events_hourly_v2 WHERE is_bot = 0 GROUP BY client_id, d ORDER BY client_id, d`},
	{"visitors over the whole range, bots included",
		`SELECT client_id, uniqExact(visitor_id), uniqExact(session_id), uniqExact(event_id) FROM events GROUP BY client_id ORDER BY client_id`,
		`SELECT client_id, uniqExactMerge(visitors), uniqExactMerge(sessions), uniqExactMerge(events) FROM events_hourly_v2 GROUP BY client_id ORDER BY client_id`},
	{"sessions, bounces, durations per day",
		`SELECT client_id, d, count(), countIf(pv = 1), sum(dur), max(dur) FROM (
  SELECT client_id, toDate(timestamp) AS d, session_id, uniqExactIf(event_id, type = 'pageview') AS pv, max(timestamp) - min(timestamp) AS dur
  FROM events WHERE is_bot = 0 GROUP BY client_id, d, session_id) GROUP BY client_id, d ORDER BY client_id, d`,
		`SELECT client_id, d, count(), countIf(pv = 1), sum(dur), max(dur) FROM (
  SELECT client_id, day AS d, session_id, uniqExactIfMerge(pageviews) AS pv, maxMerge(ended) - minMerge(started) AS dur
  FROM sessions_daily_v2 WHERE is_bot = 0 GROUP BY client_id, d, session_id) GROUP BY client_id, d ORDER BY client_id, d`},
	{"top pages",
		`SELECT client_id, path, uniqExact(event_id) AS pv, uniqExact(visitor_id) FROM events
WHERE type = 'pageview' AND is_bot = 0 GROUP BY client_id, path ORDER BY client_id, pv DESC, path`,
		`SELECT client_id, path, uniqExactMerge(pageviews) AS pv, uniqExactMerge(visitors) FROM pages_daily_v2
WHERE is_bot = 0 GROUP BY client_id, path ORDER BY client_id, pv DESC, path`},
	{"sources",
		`SELECT client_id, referrer_source, referrer_medium, utm_campaign, uniqExact(event_id), uniqExact(visitor_id), uniqExact(session_id) FROM events
WHERE type = 'pageview' AND is_bot = 0 GROUP BY client_id, referrer_source, referrer_medium, utm_campaign ORDER BY client_id, referrer_source, referrer_medium, utm_campaign`,
		`SELECT client_id, referrer_source, referrer_medium, utm_campaign, uniqExactMerge(pageviews), uniqExactMerge(visitors), uniqExactMerge(sessions) FROM sources_daily_v2
WHERE is_bot = 0 GROUP BY client_id, referrer_source, referrer_medium, utm_campaign ORDER BY client_id, referrer_source, referrer_medium, utm_campaign`},
}

// TestViewsEqualRaw inserts part of the fixture before the views existed,
// part into the String-id views of migration 2, then upgrades to the
// event_key views of migration 4 with three sinkers migrating at once (the
// backfill covers all of it), inserts the rest (the views cover it), and
// then replays a batch, as a sinker does after a crash between insert and
// commit. Every report from a view must equal the report from raw.
func TestViewsEqualRaw(t *testing.T) {
	_, conn := chtest.Database(t)
	ctx := context.Background()
	evs := fixture()
	upTo := func(version uint32) { applyUpTo(t, conn, version) }
	upTo(1)
	// Merges stay off until the reports were compared once: the replayed
	// rows must still be there, as they are before a merge in production.
	if err := conn.Exec(ctx, "SYSTEM STOP MERGES events"); err != nil {
		t.Fatal(err)
	}
	insert(t, conn, evs[:60])
	upTo(3)
	insert(t, conn, evs[60:100])
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = Apply(ctx, conn, zap.NewNop())
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Apply %d of migration 4 = %v; want nil", i, err)
		}
	}
	var left uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name IN ('events_hourly', 'sessions_daily', 'pages_daily', 'sources_daily', 'events_hourly_mv', 'sessions_daily_mv', 'pages_daily_mv', 'sources_daily_mv')").Scan(&left); err != nil || left != 0 {
		t.Errorf("String-id views left after migration 4 = %d, %v; want 0", left, err)
	}
	for _, table := range ViewNames {
		if err := conn.Exec(ctx, "SYSTEM STOP MERGES "+table); err != nil {
			t.Fatal(err)
		}
	}
	insert(t, conn, evs[100:250])
	insert(t, conn, evs[250:])
	insert(t, conn, evs[80:200]) // the replay: old and new rows again

	var rows, uniq uint64
	if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(event_id) FROM events").Scan(&rows, &uniq); err != nil {
		t.Fatal(err)
	}
	if uniq != uint64(len(evs)) || rows != uniq+120 {
		t.Fatalf("events holds %d rows, %d distinct; want %d distinct and the 120 replayed duplicates", rows, uniq, len(evs))
	}
	// event_key (migration 3) is computed for rows written before it too,
	// and counts what event_id counts, replays included.
	var byKey, keyed uint64
	if err := conn.QueryRow(ctx, "SELECT uniqExact(event_key), countIf(event_key = cityHash64(event_id)) FROM events").Scan(&byKey, &keyed); err != nil {
		t.Fatal(err)
	}
	if byKey != uniq || keyed != rows {
		t.Errorf("uniqExact(event_key) = %d, rows keyed right = %d; want %d and %d", byKey, keyed, uniq, rows)
	}
	viewsEqualRaw(t, conn, "")
	// Merges must not change the answers either.
	for _, table := range append([]string{"events"}, ViewNames...) {
		if err := conn.Exec(ctx, "SYSTEM START MERGES "+table); err != nil {
			t.Fatal(err)
		}
		if err := conn.Exec(ctx, "OPTIMIZE TABLE "+table+" FINAL"); err != nil {
			t.Fatal(err)
		}
	}
	viewsEqualRaw(t, conn, " after OPTIMIZE FINAL")
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

// viewsEqualRaw checks that every report from a view equals the report
// from raw (and that there is something to report); when says at what
// point of the test.
func viewsEqualRaw(t *testing.T, conn driver.Conn, when string) {
	t.Helper()
	for _, p := range reportPairs {
		raw, view := dump(t, conn, p.raw), dump(t, conn, p.view)
		if raw == "" {
			t.Errorf("%s%s: raw report is empty", p.name, when)
		}
		if raw != view {
			t.Errorf("%s%s: view report differs from raw\nraw:\n%s\nview:\n%s", p.name, when, raw, view)
		}
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
	var tables uint64
	if err := conn.QueryRow(context.Background(), "SELECT count() FROM system.tables WHERE database = currentDatabase()").Scan(&tables); err != nil {
		t.Fatal(err)
	}
	// events, schema_migrations, a table and a view per report view, and
	// the rolled-up sessions' two tables.
	if want := uint64(2 + 2*len(ViewNames) + 2); tables != want {
		t.Errorf("tables after concurrent Apply = %d; want %d", tables, want)
	}
	insert(t, conn, fixture()[:10])
	var n uint64
	if err := conn.QueryRow(context.Background(), "SELECT uniqExactMerge(events) FROM events_hourly_v2").Scan(&n); err != nil || n != 10 {
		t.Errorf("events through the views after concurrent Apply = %d, %v; want 10 (each view exactly once)", n, err)
	}
}

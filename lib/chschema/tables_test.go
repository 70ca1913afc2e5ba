package chschema

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/chtest"
)

// tablesDescribed walks every table of conn's database (system.tables) and
// fails for each that Tables does not describe, and for each described
// one that is missing, as target lays them out.
func tablesDescribed(t *testing.T, conn driver.Conn, target Target) {
	t.Helper()
	var have []string
	for line := range strings.Lines(dump(t, conn, "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name")) {
		have = append(have, strings.TrimSpace(line))
	}
	want := target.TableNames()
	for _, name := range have {
		if !slices.Contains(want, name) {
			t.Errorf("table %s is in the migrated database but not described in Tables", name)
		}
	}
	for _, name := range want {
		if !slices.Contains(have, name) {
			t.Errorf("table %s is described in Tables but not in the migrated database (it has %v)", name, have)
		}
	}
}

// TestTablesAreDescribed migrates a fresh database and finds every table
// in it in the package's description.
func TestTablesAreDescribed(t *testing.T) {
	_, conn := chtest.Database(t)
	if err := Apply(context.Background(), conn, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	tablesDescribed(t, conn, Target{})
}

// erasedShapes are erased_visitors as the reporter made it before schema
// version 6: its first version, and the one of the last release.
var erasedShapes = []struct{ name, ddl, insert string }{
	{"first version", `CREATE TABLE erased_visitors (client_id String, visitor_id UInt64, requested_at DateTime('UTC'), mutations Array(String))
ENGINE = ReplacingMergeTree ORDER BY (client_id, visitor_id)`,
		"INSERT INTO erased_visitors (client_id, visitor_id, requested_at, mutations)"},
	{"last release", `CREATE TABLE IF NOT EXISTS erased_visitors (
    client_id String,
    visitor_id UInt64,
    requested_at DateTime('UTC'),
    mutations Array(String),
    first_day Date,
    last_day Date,
    views_rebuilt UInt8
) ENGINE = ReplacingMergeTree ORDER BY (client_id, visitor_id)`,
		"INSERT INTO erased_visitors (client_id, visitor_id, requested_at, mutations)"},
}

// TestUpgradeKeepsData builds the schema of the last release (migrations
// 1 to 5, and the erasure table the reporter made itself) with events and
// erasures in it, applies the new migrations, and checks that every row is
// still there, that the erasure table has its final columns, and that the
// report views are gone.
func TestUpgradeKeepsData(t *testing.T) {
	for _, shape := range erasedShapes {
		t.Run(shape.name, func(t *testing.T) {
			_, conn := chtest.Database(t)
			ctx := context.Background()
			applyUpTo(t, conn, 5)
			// Migration 5 as it shipped ended by making the report views'
			// materialized views again on the new events table.
			for _, v := range views(Target{Version: Oldest}) {
				if err := conn.Exec(ctx, v.materialized(Target{})); err != nil {
					t.Fatal(err)
				}
			}
			if err := conn.Exec(ctx, shape.ddl); err != nil {
				t.Fatal(err)
			}
			evs := fixture()
			insert(t, conn, evs)
			at := time.Date(2026, 11, 4, 12, 0, 0, 0, time.UTC)
			batch, err := conn.PrepareBatch(ctx, shape.insert)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range []uint64{5, 6} {
				if err := batch.Append("shop", v, at, []string{"events\x00mutation_1.txt"}); err != nil {
					t.Fatal(err)
				}
			}
			if err := batch.Send(); err != nil {
				t.Fatal(err)
			}
			if views := dump(t, conn, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name LIKE '%_v2%'"); views != "8\n" {
				t.Fatalf("tables of the report views before the upgrade = %s; want 8 (the test would prove nothing)", views)
			}
			if n := dump(t, conn, "SELECT toString(uniqExactMerge(events)) FROM events_hourly_v2"); n != fmt.Sprintf("%d\n", len(evs)) {
				t.Fatalf("events through the views before the upgrade = %s; want %d, as the last release fills them", n, len(evs))
			}

			if err := Apply(ctx, conn, zap.NewNop()); err != nil {
				t.Fatalf("Apply from version 5 = %v; want nil", err)
			}
			if v, err := Applied(ctx, conn); err != nil || v != Migrations[len(Migrations)-1].Version {
				t.Errorf("Applied after the upgrade = %d, %v; want %d", v, err, Migrations[len(Migrations)-1].Version)
			}
			tablesDescribed(t, conn, Target{})
			var rows, uniq uint64
			if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(event_key) FROM events").Scan(&rows, &uniq); err != nil {
				t.Fatal(err)
			}
			if rows != uint64(len(evs)) || uniq != uint64(len(evs)) {
				t.Errorf("events after the upgrade: %d rows, %d distinct; want each of the %d once", rows, uniq, len(evs))
			}
			cols := dump(t, conn, "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = 'erased_visitors' ORDER BY name")
			if want := "client_id\tString\nfirst_day\tDate\nlast_day\tDate\nmutations\tArray(String)\nrequested_at\tDateTime('UTC')\nviews_rebuilt\tUInt8\nvisitor_id\tUInt64\n"; cols != want {
				t.Errorf("erased_visitors columns after the upgrade:\n%s\nwant\n%s", cols, want)
			}
			erased := dump(t, conn, "SELECT client_id, visitor_id, toString(requested_at), mutations, views_rebuilt FROM erased_visitors ORDER BY visitor_id")
			if want := "shop\t5\t2026-11-04 12:00:00\t[events\x00mutation_1.txt]\t0\nshop\t6\t2026-11-04 12:00:00\t[events\x00mutation_1.txt]\t0\n"; erased != want {
				t.Errorf("erased_visitors after the upgrade:\n%q\nwant\n%q", erased, want)
			}
			// Inserts after the upgrade reach events alone.
			insert(t, conn, evs[:10])
			if err := conn.QueryRow(ctx, "SELECT count() FROM events").Scan(&rows); err != nil || rows != uint64(len(evs)+10) {
				t.Errorf("events after inserting 10 more = %d, %v; want %d", rows, err, len(evs)+10)
			}
		})
	}
}

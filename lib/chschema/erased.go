package chschema

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"go.uber.org/zap"
)

// Migration 6 takes over the erasure table, which the reporter created and
// patched itself before schema version 6: erasure requests, the tombstones
// every scoped read excludes (and the sinker drops replays of), and the
// audit record of each request. An erasure is recorded up to three times
// under the same requested_at: when asked (hiding the visitor), with its
// mutations, and once it is finished (views_rebuilt = 1, a name from when
// finishing meant rebuilding the report views that migration 7 dropped);
// the reporter reads the latest record.
//
// On a cluster every node holds all of it (one replicated table whose
// replicas are all the nodes: the path has no {shard}), so the sinkers on
// every node drop replays of erased visitors, and scoped reads, whose
// exclusion runs on each shard, find it there.
//
// A database the reporter already made the table in keeps it and its rows:
// the CREATE is IF NOT EXISTS, and a table of the reporter's first version
// gains the columns it lacks (erasedColumnsAdded).

// erasedVisitors is migration 6's statement on a fresh database.
func erasedVisitors(t Target) []string {
	engine := "ReplacingMergeTree"
	if t.Cluster != "" {
		engine = "ReplicatedReplacingMergeTree(" + QuoteString("/clickhouse/tables/all/"+t.Database+"/"+ErasedVisitors) + ", '{shard}-{replica}')"
	}
	return []string{`CREATE TABLE IF NOT EXISTS ` + t.Everywhere(ErasedVisitors) + ` (
    client_id String,
    visitor_id UInt64,
    requested_at DateTime('UTC'),
    mutations Array(String),
    first_day Date,
    last_day Date,
    views_rebuilt UInt8
) ENGINE = ` + engine + ` ORDER BY (client_id, visitor_id)`}
}

// erasedColumnsAdded are the columns the reporter's table gained after its
// first version; 18.16 has no ADD COLUMN IF NOT EXISTS, so
// upgradeErasedVisitors looks first.
var erasedColumnsAdded = []struct{ name, typ string }{
	{"first_day", "Date"}, {"last_day", "Date"}, {"views_rebuilt", "UInt8"},
}

// upgradeErasedVisitors runs migration 6: it creates the table, or brings
// one the reporter made to the final shape.
func upgradeErasedVisitors(ctx context.Context, conn driver.Conn, t Target, _ *zap.Logger) error {
	if err := execAll(ctx, conn, erasedVisitors(t)); err != nil {
		return err
	}
	if t.Cluster != "" {
		return nil // the reporter made it with every column: cluster mode came after them
	}
	rows, err := conn.Query(ctx, "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = ?", ErasedVisitors)
	if err != nil {
		return fmt.Errorf("reading the columns of %s: %w", ErasedVisitors, err)
	}
	have := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return fmt.Errorf("reading the columns of %s: %w", ErasedVisitors, err)
		}
		have[name] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading the columns of %s: %w", ErasedVisitors, err)
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("reading the columns of %s: %w", ErasedVisitors, err)
	}
	for _, c := range erasedColumnsAdded {
		// exec takes a column that another run added meanwhile as done.
		if !have[c.name] {
			if err := exec(ctx, conn, "ALTER TABLE "+ErasedVisitors+" ADD COLUMN "+c.name+" "+c.typ); err != nil {
				return fmt.Errorf("adding %s.%s: %w", ErasedVisitors, c.name, err)
			}
		}
	}
	return nil
}

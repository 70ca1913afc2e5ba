package chschema

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// RebuildViews re-aggregates one client's report views for the UTC days
// from..to (inclusive) from what the events table holds now. Erasure needs
// it: three of the views keep visitor ids inside uniqExact states, which no
// DELETE can reach, so after a visitor's events are deleted (and that
// mutation has finished) the affected days are rebuilt without them.
//
// Order matters and makes it safe while inserts go on: the DELETE
// mutation of the old view rows applies only to parts that exist when it
// is issued, so the rows re-aggregated right after it survive; until the
// mutation finishes the old and the new rows overlap, which idempotent
// aggregates absorb; live inserts meanwhile land in the views as usual.
// It rebuilds the current views (ViewNames). On a cluster (t.Cluster) the
// DELETE runs on every shard's local view table, ON CLUSTER, and the new
// rows go in through the Distributed view table, which returns once the
// shards hold them; they are aggregated from the Distributed events table,
// so over every shard.
func RebuildViews(ctx context.Context, conn driver.Conn, t Target, clientID string, from, to time.Time) error {
	start := from.UTC().Truncate(24 * time.Hour)
	end := to.UTC().Truncate(24*time.Hour).AddDate(0, 0, 1)
	client := quoteString(clientID)
	// Literals, not bound parameters: the values are quoted here, and an
	// INSERT sent as a query must carry no arguments on 18.16.
	lo, hi := fmt.Sprintf("toDateTime(%d)", start.Unix()), fmt.Sprintf("toDateTime(%d)", end.Unix())
	source := withEventKey(fmt.Sprintf("events WHERE client_id = %s AND timestamp >= %s AND timestamp < %s", client, lo, hi))
	shardsCtx := AwaitShards(ctx)
	for _, v := range views(Target{Version: Oldest}) {
		when := fmt.Sprintf("day >= toDate(%s) AND day < toDate(%s)", lo, hi)
		if v.bucket == "hour" {
			when = fmt.Sprintf("hour >= %s AND hour < %s", lo, hi)
		}
		if err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s DELETE WHERE client_id = %s AND %s", t.Mutable(v.name), client, when)); err != nil {
			return fmt.Errorf("clearing %s: %w", v.name, err)
		}
		if err := conn.Exec(shardsCtx, v.fill(Target{}, source)); err != nil {
			return fmt.Errorf("re-aggregating %s: %w", v.name, err)
		}
	}
	return nil
}

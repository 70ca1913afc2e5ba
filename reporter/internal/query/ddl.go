package query

import (
	"context"
	"fmt"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/aluminiapp/pipeline/lib/chschema"
)

// erasedDDL is the reporter's own table: erasure requests, the tombstones
// every scoped read excludes, and the audit record of each request. An
// erasure is recorded up to three times under the same requested_at: when
// asked (hiding the visitor), with its mutations, and once the aggregate
// views were rebuilt (views_rebuilt = 1, with the views' mutations too);
// the latest record wins (erasureSQL).
//
// On a cluster every node holds all of it (one replicated table whose
// replicas are all the nodes: the path has no {shard}), so the sinkers on
// every node drop replays of erased visitors, and scoped reads, whose
// exclusion runs on each shard, find it there.
func erasedDDL(l chschema.Target) string {
	engine := "ReplacingMergeTree"
	if l.Cluster != "" {
		engine = "ReplicatedReplacingMergeTree('/clickhouse/tables/all/" + l.Database + "/" + erasedTable + "', '{shard}-{replica}')"
	}
	return `CREATE TABLE IF NOT EXISTS ` + l.Everywhere(erasedTable) + ` (
    client_id String,
    visitor_id UInt64,
    requested_at DateTime('UTC'),
    mutations Array(String),
    first_day Date,
    last_day Date,
    views_rebuilt UInt8
) ENGINE = ` + engine + ` ORDER BY (client_id, visitor_id)`
}

// erasedColumnsAdded are the columns erasedDDL gained after its first
// version, added to tables made by that one (18.16 has no ADD COLUMN IF
// NOT EXISTS, so Init looks first).
var erasedColumnsAdded = []struct{ name, typ string }{
	{"first_day", "Date"}, {"last_day", "Date"}, {"views_rebuilt", "UInt8"},
}

// Init creates the reporter's erasure table when it is missing and adds
// the columns an older one lacks.
func (s *Store) Init(ctx context.Context) error {
	if err := s.conn.Exec(ctx, erasedDDL(s.layout)); err != nil {
		return fmt.Errorf("creating %s: %w", erasedTable, err)
	}
	if s.layout.Cluster != "" {
		return nil // made with every column: cluster mode came after them
	}
	have := map[string]bool{}
	err := s.rows(ctx, "init", Query{SQL: "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = '" + erasedTable + "'"},
		func(r driver.Rows) error {
			var name string
			err := r.Scan(&name)
			have[name] = true
			return err
		})
	if err != nil {
		return err
	}
	for _, c := range erasedColumnsAdded {
		if have[c.name] {
			continue
		}
		// A second reporter starting at the same moment may have added it.
		if err := s.conn.Exec(ctx, "ALTER TABLE "+erasedTable+" ADD COLUMN "+c.name+" "+c.typ); err != nil && !strings.Contains(err.Error(), "already exists") {
			return fmt.Errorf("adding %s.%s: %w", erasedTable, c.name, err)
		}
	}
	return nil
}

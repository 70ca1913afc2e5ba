// Package erasedtest fills the erasure table (chschema.ErasedVisitors) in
// tests, the way the reporter does.
package erasedtest

import (
	"context"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/aluminiapp/pipeline/sinker/internal/erased"
)

// Record erases a visitor the way the reporter's Erase writes the
// table: a batch insert, two records under one requested_at.
func Record(t testing.TB, conn driver.Conn, client string, visitor uint64) {
	t.Helper()
	ctx := context.Background()
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+erased.Table+" (client_id, visitor_id, requested_at, mutations, views_rebuilt)")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Truncate(time.Second)
	for rebuilt := range uint8(2) {
		if err := b.Append(client, visitor, at, []string{}, rebuilt); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatalf("recording the erasure of %s/%d: %v", client, visitor, err)
	}
}

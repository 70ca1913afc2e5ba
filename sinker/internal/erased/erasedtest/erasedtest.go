// Package erasedtest creates and fills the reporter's erasure table in
// tests, the way the reporter does.
package erasedtest

import (
	"context"
	_ "embed"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/aluminiapp/pipeline/sinker/internal/erased"
)

// ReporterDDL is the reporter's erasedDDL (reporter/internal/query/store.go),
// which the sinker cannot import from the reporter's internal package; for
// tests only (TestReporterKeepsTheContract checks the parts the sinker
// reads).
//
//go:embed testdata/erased_visitors.sql
var ReporterDDL string

// Create creates the table as the reporter does. The sinker itself
// never creates it.
func Create(t testing.TB, conn driver.Conn) {
	t.Helper()
	if err := conn.Exec(context.Background(), ReporterDDL); err != nil {
		t.Fatalf("creating %s: %v", erased.Table, err)
	}
}

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

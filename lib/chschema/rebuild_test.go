package chschema

import (
	"context"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/chtest"
)

// TestRebuildViewsAfterErasure erases one visitor from events, rebuilds the
// views and checks that every report from a view again equals the report
// from raw, which no longer has the visitor.
func TestRebuildViewsAfterErasure(t *testing.T) {
	_, conn := chtest.Database(t)
	ctx := context.Background()
	if err := Apply(ctx, conn, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	insert(t, conn, fixture())
	totals := reportPairs[2] // visitors, sessions, events per client
	before := dump(t, conn, totals.view)
	if err := conn.Exec(ctx, "ALTER TABLE events DELETE WHERE client_id = 'shop' AND visitor_id = 5"); err != nil {
		t.Fatal(err)
	}
	waitMutations(t, conn)
	if raw, view := dump(t, conn, totals.raw), dump(t, conn, totals.view); raw == view {
		t.Fatalf("before the rebuild the views already match raw after the erasure; the test proves nothing:\n%s", raw)
	}
	if err := RebuildViews(ctx, conn, Target{}, "shop", time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 5, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	waitMutations(t, conn)
	if after := dump(t, conn, totals.view); after == before {
		t.Errorf("visitor totals from the views unchanged by erasure and rebuild:\n%s", after)
	}
	for _, p := range reportPairs {
		if raw, view := dump(t, conn, p.raw), dump(t, conn, p.view); raw != view {
			t.Errorf("%s after erasure and rebuild: view differs from raw\nraw:\n%s\nview:\n%s", p.name, raw, view)
		}
	}
}

func waitMutations(t *testing.T, conn driver.Conn) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var pending uint64
		if err := conn.QueryRow(context.Background(), "SELECT count() FROM system.mutations WHERE database = currentDatabase() AND is_done = 0").Scan(&pending); err != nil {
			t.Fatal(err)
		}
		if pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d mutations still running after 20s", pending)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

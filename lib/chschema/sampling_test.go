package chschema

import (
	"context"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/chtest"
)

// TestSamplingMigrationResumes stops migration 5 right after its swap, as
// a crash would, with events stored before it: the next Apply must copy
// them into the new table and drop the old one, so that nothing is lost
// (and then go on with the later migrations).
func TestSamplingMigrationResumes(t *testing.T) {
	_, conn := chtest.Database(t)
	ctx := context.Background()
	applyUpTo(t, conn, 4)
	evs := fixture()
	insert(t, conn, evs[:200])
	target := Target{Version: Oldest}
	for _, stmt := range append(sampling(target).create, sampling(target).swap...) {
		if err := exec(ctx, conn, stmt); err != nil {
			t.Fatalf("%v\n%s", err, stmt)
		}
	}
	// The crash: the views still read the old table, renamed; these rows
	// reach the new table and no view.
	insert(t, conn, evs[200:250])
	if err := Apply(ctx, conn, zap.NewNop()); err != nil {
		t.Fatalf("Apply after the interrupted migration = %v; want nil", err)
	}
	insert(t, conn, evs[250:])

	var rows, uniq uint64
	if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(event_id) FROM events").Scan(&rows, &uniq); err != nil {
		t.Fatal(err)
	}
	if rows != uint64(len(evs)) || uniq != uint64(len(evs)) {
		t.Errorf("events holds %d rows, %d distinct; want each of the %d events once", rows, uniq, len(evs))
	}
	if left := dump(t, conn, "SELECT name FROM system.tables WHERE database = currentDatabase() AND name IN ('events_sampled', 'events_unsampled')"); left != "" {
		t.Errorf("tables left by migration 5: %s", left)
	}
	sampleKeepsWholeVisitors(t, conn, "")
}

// sampleKeepsWholeVisitors checks what the reporter's sampled reports rely
// on: SAMPLE 1/2 on events takes some visitors, not all, and every event
// of each visitor it takes (on a cluster: from every shard).
func sampleKeepsWholeVisitors(t *testing.T, conn driver.Conn, when string) {
	t.Helper()
	perVisitor := func(sample string) map[string]string {
		out := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(dump(t, conn, "SELECT visitor_id, count() FROM events "+sample+" GROUP BY visitor_id")), "\n") {
			if id, n, ok := strings.Cut(line, "\t"); ok {
				out[id] = n
			}
		}
		return out
	}
	all, half := perVisitor(""), perVisitor("SAMPLE 1/2")
	if len(half) == 0 || len(half) == len(all) {
		t.Fatalf("SAMPLE 1/2%s took %d of %d visitors; want some, not all", when, len(half), len(all))
	}
	for id, n := range half {
		if all[id] != n {
			t.Errorf("SAMPLE 1/2%s took %s of visitor %s's %s events; want all of them", when, n, id, all[id])
		}
	}
}

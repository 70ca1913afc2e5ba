package chschema

import (
	"context"
	"sync"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/chtest"
)

// TestClusterModeOnARealCluster runs the cluster DDL on a real cluster: the
// two shards of deploy/clickhouse/cluster.sh (ZooKeeper, replicated
// tables, ON CLUSTER DDL). Two sinkers migrate at once; events go in
// through the Distributed table, a batch twice (a replay); reads through
// the Distributed tables must see each event once with FINAL, event_key
// must work, the report views must be gone from every shard, and SAMPLE
// must take whole visitors from both shards. Part of the events are
// stored before migration 5, which copies them through the shards.
// Golden files check the DDL's text; this checks that a server runs it.
func TestClusterModeOnARealCluster(t *testing.T) {
	db, conn := chtest.ClusterDatabase(t)
	ctx := context.Background()
	applyUpTo(t, conn, 4, OnCluster(chtest.Cluster))
	// Stored before migration 5, which copies them into its new table.
	evs := fixture()
	insert(t, conn, evs[:150])
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() { errs[i] = Apply(ctx, conn, zap.NewNop(), OnCluster(chtest.Cluster)) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Apply %d on cluster %s = %v; want nil", i, chtest.Cluster, err)
		}
	}
	if err := Apply(ctx, conn, zap.NewNop(), OnCluster(chtest.Cluster)); err != nil {
		t.Fatalf("Apply again = %v; want nil", err)
	}
	// Migration 7 dropped the report views, on every shard.
	tablesDescribed(t, conn, Target{Cluster: chtest.Cluster})
	engines := dump(t, conn, "SELECT name, engine FROM system.tables WHERE database = currentDatabase() AND name IN ('events', 'events_local', 'erased_visitors') ORDER BY name")
	if want := "erased_visitors\tReplicatedReplacingMergeTree\nevents\tDistributed\nevents_local\tReplicatedReplacingMergeTree\n"; engines != want {
		t.Fatalf("tables of database %s:\n%s\nwant\n%s", db, engines, want)
	}

	insert(t, conn, evs[150:])
	insert(t, conn, evs[80:200]) // a replay
	var rows, final, keys uint64
	if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(event_key) FROM events").Scan(&rows, &keys); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT count() FROM events FINAL").Scan(&final); err != nil {
		t.Fatal(err)
	}
	if rows != uint64(len(evs)+120) || final != uint64(len(evs)) || keys != uint64(len(evs)) {
		t.Errorf("events: %d rows, %d with FINAL, %d distinct event_key; want %d, %d and %d", rows, final, keys, len(evs)+120, len(evs), len(evs))
	}
	// The events are spread over both shards: the reads above merged them.
	for _, addr := range chtest.ClusterShards() {
		shard, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Auth: clickhouse.Auth{Database: db}})
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		err = shard.QueryRow(ctx, "SELECT count() FROM events_local").Scan(&n)
		var views uint64
		if err == nil {
			err = shard.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name LIKE '%_v2%'").Scan(&views)
		}
		shard.Close()
		if err != nil || n == 0 || n == rows {
			t.Errorf("events_local on shard %s holds %d of %d rows (%v); want some, not all", addr, n, rows, err)
		}
		if views != 0 {
			t.Errorf("shard %s still has %d tables of the report views; want none", addr, views)
		}
	}
	sampleKeepsWholeVisitors(t, conn, " on the cluster")
}

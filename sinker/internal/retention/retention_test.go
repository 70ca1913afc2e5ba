package retention

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/aluminiapp/pipeline/lib/chschema"
	"github.com/aluminiapp/pipeline/lib/chtest"
	"github.com/aluminiapp/pipeline/lib/eventually"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
	"github.com/aluminiapp/pipeline/sinker/internal/store"
)

func TestOnceDeletesOnlyExpiredEventsOfClientsWithRetention(t *testing.T) {
	t.Run("one node", func(t *testing.T) {
		db, conn := chtest.Database(t)
		testRetention(t, conn, chschema.Target{Database: db}, store.New(conn))
	})
	// On a cluster the mutations go to the shards' local tables, ON CLUSTER
	// (a Distributed table takes none).
	t.Run("cluster", func(t *testing.T) {
		db, conn := chtest.ClusterDatabase(t)
		st := store.New(conn)
		st.OnCluster()
		testRetention(t, conn, chschema.Target{Database: db, Cluster: chtest.Cluster}, st)
	})
}

func testRetention(t *testing.T, conn driver.Conn, target chschema.Target, st *store.Store) {
	ctx := context.Background()
	var opts []chschema.Option
	if target.Cluster != "" {
		opts = append(opts, chschema.OnCluster(target.Cluster))
	}
	if err := chschema.Apply(ctx, conn, zap.NewNop(), opts...); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 25, 15, 0, 0, 0, time.UTC)
	var evs []*aluminiv1.Event
	for _, client := range []string{"shop", "blog", "gone"} {
		for age := 0; age < 40; age += 3 { // days old
			ts := now.AddDate(0, 0, -age)
			evs = append(evs, &aluminiv1.Event{ClientId: client, EventId: fmt.Sprintf("%s-%d", client, age), Type: aluminiv1.EventType_EVENT_TYPE_PAGEVIEW,
				TimestampMs: ts.UnixMilli(), ReceivedAtMs: ts.UnixMilli(), VisitorId: uint64(age), SessionId: uint64(age)})
		}
	}
	if err := st.Insert(ctx, evs); err != nil {
		t.Fatal(err)
	}
	periods := func(id string) (int, error) {
		switch id {
		case "shop":
			return 10, nil // keeps 2026-11-15 and later
		case "blog":
			return 0, nil // forever
		}
		return 0, fmt.Errorf("client %s not found", id)
	}
	c := New(conn, target, periods, zaptest.NewLogger(t))
	c.now = func() time.Time { return now }
	if err := c.Once(ctx); err != nil {
		t.Fatal(err)
	}
	// Mutations are asynchronous, and on a cluster each shard runs its own:
	// wait until no expired event of shop is left on any shard (events is
	// the Distributed table there) and this node's mutations are done.
	eventually.True(t, 20*time.Second, "the expired events of shop deleted", func() bool {
		var expired, pending uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM events WHERE client_id = 'shop' AND timestamp < toDateTime('2026-11-15 00:00:00')").Scan(&expired); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.mutations WHERE database = currentDatabase() AND is_done = 0").Scan(&pending); err != nil {
			t.Fatal(err)
		}
		return expired == 0 && pending == 0
	})
	for _, tc := range []struct {
		query string
		want  string
	}{
		// Ages 0..39 step 3 = 14 events; shop keeps ages 0..9 (0,3,6,9).
		{"SELECT toString(uniqExact(event_id)) FROM events WHERE client_id = 'shop'", "4"},
		{"SELECT toString(min(timestamp)) FROM events WHERE client_id = 'shop'", "2026-11-16 15:00:00"},
		{"SELECT toString(uniqExact(event_id)) FROM events WHERE client_id = 'blog'", "14"},
		{"SELECT toString(uniqExact(event_id)) FROM events WHERE client_id = 'gone'", "14"},
	} {
		var got string
		if err := conn.QueryRow(ctx, tc.query).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%s = %s; want %s", tc.query, got, tc.want)
		}
	}
	// Nothing left to delete: no new mutation.
	var before, after uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.mutations WHERE database = currentDatabase()").Scan(&before); err != nil {
		t.Fatal(err)
	}
	if err := c.Once(ctx); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.mutations WHERE database = currentDatabase()").Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("a second Once issued %d mutations; want none (nothing expired)", after-before)
	}
}

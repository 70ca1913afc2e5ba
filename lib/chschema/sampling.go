package chschema

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"go.uber.org/zap"
)

// Migration 5 gives the events table a sampling key: sample_key, a 32-bit
// hash of the visitor, in the sorting key right after the day, and SAMPLE
// BY sample_key. A report over a large client can then read `SAMPLE 1/k`:
// ClickHouse reads only the part of each (client, day) range whose
// visitors hash into the first k-th of the key space, so it reads k times
// fewer rows, and because the sample is made of whole visitors, their
// visits, bounces, durations and entry pages stay intact and scale by k.
// On 2 cores and 18.16 the largest benchmark client's reports went from
// 0.9-2.7 s to 0.06-0.28 s at 1/20 (docs/bench/reporter.md). Analysts
// can use SAMPLE too (docs/schema.md).
//
// A sorting key cannot be altered to put a column in the middle, so the
// table is made again: a new table with the new key takes the name events
// (one RENAME, so inserts never find no events table), the old rows are
// copied into it, the old table is dropped, and the report views'
// materialized views are dropped. Replays and the sorting key: the copies
// of an event carry the same visitor, so the same sample_key, and still
// collapse. Rows are copied after the swap, so while a large table is
// copied reports miss the older rows.
//
// As first shipped, migration 5 also made the report views again on the
// new table and refilled them. Migration 7 drops them, and every run that
// applies 5 applies 7 after it (Apply runs the list to its end), so 5 now
// only drops their materialized views: a run of 5 that falls behind
// another run's 7 then cannot bring back a view whose table is gone,
// which would fail every insert into events.
//
// Idempotent as a whole but not statement by statement (the swap cannot
// be repeated), so it is run by resample, which looks at what an
// interrupted or concurrent run already did.

// samplingStatements are migration 5's statements in the order a fresh
// run executes them, grouped so that resample can skip what is done.
type samplingStatements struct {
	create, swap, copy, dropOld, dropViews []string
}

func (s samplingStatements) all() []string {
	var out []string
	for _, g := range [][]string{s.create, s.swap, s.copy, s.dropOld, s.dropViews} {
		out = append(out, g...)
	}
	return out
}

// samplingTables are the names migration 5 uses besides events.
const (
	sampledEvents   = "events_sampled"   // the new table until the swap
	swappingEvents  = "events_swapping"  // the new table during it
	unsampledEvents = "events_unsampled" // the old one after it
)

func sampling(t Target) samplingStatements {
	var s samplingStatements
	s.create = []string{`
CREATE TABLE IF NOT EXISTS ` + t.Everywhere(t.Local(sampledEvents)) + `
(
` + eventsColumns(t) + `,
    event_key UInt64 MATERIALIZED cityHash64(event_id),
    sample_key UInt32 MATERIALIZED intHash32(visitor_id)
)
ENGINE = ` + t.engine("Replacing", sampledEvents) + `
PARTITION BY toYYYYMM(timestamp)
ORDER BY (client_id, toDate(timestamp), sample_key, event_id)
SAMPLE BY sample_key`}
	// One statement swaps the tables: there is always a table named events.
	// 18.16 renames one pair after the other and stops at the first that
	// fails, so the new table moves first: a run that comes late, after
	// another one swapped (and renamed the new table away), fails on that
	// first pair and renames nothing, instead of renaming events away and
	// leaving no events table. (One that made a new table after the other
	// swapped swaps its empty table in and copies the other's back: slower,
	// nothing lost.)
	r := func(from, to string) string { return t.ref(t.Local(from)) + " TO " + t.ref(t.Local(to)) }
	s.swap = []string{"RENAME TABLE " + r(sampledEvents, swappingEvents) + ", " + r("events", unsampledEvents) + ", " +
		r(swappingEvents, "events") + t.onCluster()}
	for _, v := range views(t) {
		s.dropViews = append(s.dropViews, v.dropMaterialized(t))
	}
	cols := strings.Join(Columns, ", ")
	if d := t.distributed(unsampledEvents, "cityHash64(event_id)"); d != "" {
		// On a cluster the old rows are read through a Distributed table
		// over the old local tables and written through events, whose
		// sharding key sends each row back to the shard it came from.
		s.copy = append(s.copy, d)
	}
	s.copy = append(s.copy, fmt.Sprintf("INSERT INTO %s (%s)\nSELECT %s FROM %s", t.ref("events"), cols, cols, t.ref(unsampledEvents)))
	if t.Cluster != "" {
		s.dropOld = append(s.dropOld, "DROP TABLE IF EXISTS "+t.Everywhere(unsampledEvents))
	}
	s.dropOld = append(s.dropOld, "DROP TABLE IF EXISTS "+t.Everywhere(t.Local(unsampledEvents)))
	return s
}

// samplingKey lists migration 5's statements for the golden files and the
// current-engine check.
func samplingKey(t Target) []string { return sampling(t).all() }

// resample runs migration 5 on conn's server. Several sinkers may run it
// at once, or one again after a crash, so it looks before each step: the
// swap is skipped once events has its sampling key; the copy when the old
// table is gone, and by a run that did not swap, while another one's copy
// is running. The one that swaps drops the old table as soon as it has
// copied it, so the others find nothing left to copy.
func resample(ctx context.Context, conn driver.Conn, t Target, log *zap.Logger) error {
	s := sampling(t)
	// Inserts wait for the shards, like the sinker's.
	shards := AwaitShards(ctx)
	sampled, err := hasSamplingKey(ctx, conn, t)
	if err != nil {
		return err
	}
	swapped := false
	if !sampled {
		if err := execAll(ctx, conn, s.create); err != nil {
			return err
		}
		if err := execAll(ctx, conn, s.swap); err != nil {
			// Another sinker may have swapped first.
			if again, _ := hasSamplingKey(ctx, conn, t); !again {
				return err
			}
		} else {
			swapped = true
		}
	}
	if !swapped {
		if err := awaitCopy(ctx, conn, t); err != nil {
			return err
		}
	}
	old, err := tableExists(ctx, conn, t.Local(unsampledEvents))
	if err != nil {
		return err
	}
	if old {
		log.Info("schema migration 5: copying the events into the table with the sampling key")
		if err := execAll(shards, conn, s.copy); err != nil {
			// Another run copied it all and dropped it meanwhile (one that
			// waited longer than copyStart for the other's copy copies too).
			if still, _ := tableExists(ctx, conn, t.Local(unsampledEvents)); still || !unknownTable(err) {
				return err
			}
		}
		if err := execAll(ctx, conn, s.dropOld); err != nil {
			return err
		}
	}
	// Stray new tables: this run created one after another one's swap, or
	// its swap stopped halfway.
	for _, stray := range []string{sampledEvents, swappingEvents} {
		if err := exec(ctx, conn, "DROP TABLE IF EXISTS "+t.Everywhere(t.Local(stray))); err != nil {
			return err
		}
	}
	return execAll(ctx, conn, s.dropViews)
}

// copyStart is how long a run that did not swap waits for the swapping
// run's copy to show up in system.processes, or for it to drop the old
// table after its copy, before it copies itself.
const copyStart = 2 * time.Second

// awaitCopy waits while another run copies the old table: until the old
// table is gone, or no copy was seen running for copyStart.
func awaitCopy(ctx context.Context, conn driver.Conn, t Target) error {
	processes, args := "system.processes", []any{}
	if t.Cluster != "" {
		processes, args = "cluster(?, system, processes)", []any{t.Cluster}
	}
	// Statements that start with INSERT: this SELECT holds the patterns too.
	q := "SELECT count() FROM " + processes + " WHERE query LIKE 'INSERT INTO %' AND query LIKE ?"
	args = append(args, "%FROM %"+unsampledEvents+"%")
	lastSeen := time.Now()
	for {
		old, err := tableExists(ctx, conn, t.Local(unsampledEvents))
		if err != nil || !old {
			return err
		}
		var n uint64
		if err := conn.QueryRow(ctx, q, args...).Scan(&n); err != nil {
			return fmt.Errorf("looking for a running copy: %w", err)
		}
		switch {
		case n > 0:
			lastSeen = time.Now()
		case time.Since(lastSeen) > copyStart:
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// hasSamplingKey reports whether the events table (the local one on a
// cluster) has a sampling key.
func hasSamplingKey(ctx context.Context, conn driver.Conn, t Target) (bool, error) {
	var key string
	err := tablesRow(ctx, conn, "SELECT sampling_key FROM system.tables WHERE database = currentDatabase() AND name = ?", t.Local("events"), &key)
	if err != nil {
		return false, fmt.Errorf("reading the sampling key of %s: %w", t.Local("events"), err)
	}
	return key != "", nil
}

func tableExists(ctx context.Context, conn driver.Conn, name string) (bool, error) {
	var n uint64
	if err := tablesRow(ctx, conn, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = ?", name, &n); err != nil {
		return false, fmt.Errorf("looking for table %s: %w", name, err)
	}
	return n > 0, nil
}

// tablesRow reads one row about the table name from system.tables into
// dest. 18.16 fails such a read with UNKNOWN_TABLE when another table of
// the database is renamed or dropped meanwhile, as concurrent runs of
// migration 5 do: it is tried again.
func tablesRow(ctx context.Context, conn driver.Conn, q, name string, dest any) error {
	for attempt := 1; ; attempt++ {
		err := conn.QueryRow(ctx, q, name).Scan(dest)
		if !unknownTable(err) || attempt == 5 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

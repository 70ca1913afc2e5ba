package query

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/aluminiapp/pipeline/lib/chschema"
)

// Rolled-up sessions (chschema.SessionsTable): the unfiltered aggregate,
// time series and visit-level breakdowns read them instead of events, and
// count exactly in a fraction of the time (docs/reporter.md, "Exact
// reports and sampling"). The background loop rolls each finished UTC day
// of every client into rows of one visit, hour and set of visit-level
// dimensions, computed from events FINAL, and records the roll only after
// its rows are in. A report reads, for each day of its range, the rows of
// that day's latest recorded roll, and counts the days without one (today,
// or any day not rolled yet) from events, in the same statement.
//
// A roll stays right while its day's events do not change. The loop
// compares each day's events rows (copies included) with the number the
// roll recorded and rolls a day again when they differ: late events, a
// replay's copies, an erasure's or retention's DELETE all change it. Until
// the run that sees it (the next for recent days, within rollFullEvery
// for older ones), a report over the day misses events that arrived after
// the roll; a replay's copies change nothing, since a roll reads FINAL.

// rollSettle is how long after its end a UTC day is rolled: events of the
// day that reach ClickHouse within it are in the first roll.
const rollSettle = time.Hour

// rollGrace is how long a superseded roll's rows are kept: a report that
// read the roll versions just before the new roll was recorded still
// finds its rows.
const rollGrace = 10 * time.Minute

// rollRecent and rollFullEvery: each Roll compares the events of the
// last rollRecent days with their rolls, and of all days every
// rollFullEvery: counting all of them reads every row's client and time,
// too much for every minute on a large table (docs/bench/reporter.md).
const (
	rollRecent    = 3 * 24 * time.Hour
	rollFullEvery = time.Hour
)

// rollBudget bounds one Roll: a first roll of a large database takes many
// runs, each leaving ClickHouse to the reports in between.
const rollBudget = 30 * time.Second

// RollUp makes the store roll up sessions (Roll) and answer reports from
// them, exactly up to DefaultSampleRolledAbove events (see
// SampleRolledAbove), and reports whether it does: not on a cluster, nor
// on a database without the tables (Init makes them). Call it after Init,
// before the store serves reports. Without it reports read events only.
func (s *Store) RollUp(ctx context.Context) (bool, error) {
	if s.layout.Cluster != "" {
		return false, nil
	}
	var n uint64
	err := s.rows(ctx, "init", Query{SQL: rollTablesSQL}, func(r driver.Rows) error { return r.Scan(&n) })
	if err != nil {
		return false, err
	}
	s.rollup, s.sampleRolledAbove = n == 2, DefaultSampleRolledAbove
	return s.rollup, nil
}

// rollTablesSQL counts the roll-up tables of the database.
const rollTablesSQL = "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name IN ('" +
	chschema.SessionsTable + "', '" + chschema.SessionRollsTable + "')"

// rolls reports whether reports read rolled-up sessions.
func (s *Store) rolls() bool { return s.rollup && s.layout.Cluster == "" }

// dayKey is one client's UTC day.
type dayKey struct {
	client string
	day    uint32 // days since 1970-01-01
}

const (
	// rollCountsSQL counts every client's events rows per UTC day, copies
	// included, up to the last day that may be rolled.
	rollCountsSQL = "SELECT client_id, toUInt32(toDate(timestamp)) AS d, count() FROM events WHERE timestamp >= toDateTime(?) AND timestamp < toDateTime(?) GROUP BY client_id, d"
	// rollsSQL lists the latest roll of every client's day and the events
	// rows it saw.
	rollsSQL = "SELECT client_id, toUInt32(day), argMax(rows, roll), max(roll) FROM " + chschema.SessionRollsTable + " GROUP BY client_id, day"
	// supersededSQL lists the rolls whose rows a newer roll of the same
	// client and day replaced before a time.
	supersededSQL = `SELECT client_id, roll FROM (SELECT DISTINCT client_id, day, roll FROM ` + chschema.SessionsTable + `) AS kept
ANY INNER JOIN (SELECT client_id, day, max(roll) AS latest FROM ` + chschema.SessionRollsTable + ` GROUP BY client_id, day) AS latest_rolls USING (client_id, day)
WHERE roll < latest AND latest < ?`
	recordRollSQL = "INSERT INTO " + chschema.SessionRollsTable + " (client_id, day, roll, rows)"
)

// Roll rolls up the UTC days whose events changed since their last roll
// (all of them, the first time), oldest first, for at most rollBudget, and
// deletes rows of rolls replaced more than rollGrace ago. It returns the
// number of client days still to roll. Run it from one reporter per
// database, in the loop that finishes erasures: a roll reads the erased
// visitors when it starts, so an erasure's DELETE, started by the same
// loop, never runs in the middle of a roll that still holds the visitor.
//
// Roll is not safe for concurrent use.
func (s *Store) Roll(ctx context.Context, now time.Time) (int, error) {
	if !s.rolls() {
		return 0, nil
	}
	todo, counts, last, err := s.daysToRoll(ctx, now)
	if err != nil {
		return 0, err
	}
	days := map[uint32][]string{}
	for _, k := range todo {
		days[k.day] = append(days[k.day], k.client)
	}
	order := make([]uint32, 0, len(days))
	for d := range days {
		order = append(order, d)
	}
	sort.Slice(order, func(i, j int) bool { return order[i] < order[j] })
	start, left := time.Now(), len(todo)
	for _, d := range order {
		clients := days[d]
		sort.Strings(clients)
		for _, batch := range rollBatches(d, clients, counts) {
			if time.Since(start) > rollBudget {
				return left, nil
			}
			// Versions increase with now, and strictly, whatever the clocks.
			last = max(uint64(now.UnixNano()), last+1)
			if err := s.rollDay(ctx, d, batch, counts, last); err != nil {
				return left, err
			}
			left -= len(batch)
		}
	}
	return left, s.dropSuperseded(ctx, now)
}

// rollBatch bounds the events one roll statement reads, so that a
// statement of a busy day stays short: the clients of a day are rolled in
// batches of at most rollBatch events (a client with more, alone).
const rollBatch = 500_000

// rollBatches splits the clients of day into batches of at most rollBatch
// events, in order.
func rollBatches(day uint32, clients []string, counts map[dayKey]uint64) [][]string {
	var out [][]string
	var n uint64
	for _, c := range clients {
		m := counts[dayKey{c, day}]
		if len(out) == 0 || n+m > rollBatch {
			out, n = append(out, nil), 0
		}
		out[len(out)-1] = append(out[len(out)-1], c)
		n += m
	}
	return out
}

// daysToRoll returns the client days whose events rows differ from what
// their latest roll saw, the rows each has now, and the latest roll's
// version.
func (s *Store) daysToRoll(ctx context.Context, now time.Time) ([]dayKey, map[dayKey]uint64, uint64, error) {
	until := now.UTC().Add(-rollSettle).Truncate(24 * time.Hour)
	// Counting means reading every row's client and time: the recent
	// days every run, all of them every rollFullEvery.
	since := time.Unix(0, 0)
	full := now.Sub(s.rollFullAt) >= rollFullEvery || now.Before(s.rollFullAt)
	if !full {
		since = until.Add(-rollRecent)
	}
	counts := map[dayKey]uint64{}
	err := s.rows(ctx, "roll", Query{SQL: rollCountsSQL, Args: []any{since.Unix(), until.Unix()}}, func(r driver.Rows) error {
		var k dayKey
		var n uint64
		err := r.Scan(&k.client, &k.day, &n)
		counts[k] = n
		return err
	})
	if err != nil {
		return nil, nil, 0, err
	}
	rolled := map[dayKey]uint64{}
	var last uint64
	err = s.rows(ctx, "roll", Query{SQL: rollsSQL}, func(r driver.Rows) error {
		var k dayKey
		var n, roll uint64
		err := r.Scan(&k.client, &k.day, &n, &roll)
		rolled[k], last = n, max(last, roll)
		return err
	})
	if err != nil {
		return nil, nil, 0, err
	}
	var todo []dayKey
	for k, n := range counts {
		if seen, ok := rolled[k]; !ok || seen != n {
			todo = append(todo, k)
		}
	}
	// A day whose events are all gone (erased, expired) rolls to no rows.
	first := uint32(since.Unix() / 86400)
	for k, n := range rolled {
		if _, ok := counts[k]; !ok && n != 0 && k.day >= first {
			todo = append(todo, k)
		}
	}
	if full {
		s.rollFullAt = now
	}
	return todo, counts, last, nil
}

// rollDay rolls one UTC day of clients as version roll and records it with the
// events rows each client's day had before (counts): rows inserted since
// make the next Roll roll the day again.
func (s *Store) rollDay(ctx context.Context, day uint32, clients []string, counts map[dayKey]uint64, roll uint64) error {
	start := time.Now()
	err := s.conn.Exec(ctx, rollDaySQL(day, clients, roll))
	s.observe("roll", start, err)
	if err != nil {
		return fmt.Errorf("rolling up %s: %w", dayString(day), err)
	}
	batch, err := s.conn.PrepareBatch(ctx, recordRollSQL)
	if err != nil {
		return fmt.Errorf("recording the roll of %s: %w", dayString(day), err)
	}
	for _, c := range clients {
		if err := batch.Append(c, time.Unix(int64(day)*86400, 0).UTC(), roll, counts[dayKey{c, day}]); err != nil {
			return errors.Join(fmt.Errorf("recording the roll of %s: %w", dayString(day), err), batch.Abort())
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("recording the roll of %s: %w", dayString(day), err)
	}
	return nil
}

func dayString(day uint32) string {
	return time.Unix(int64(day)*86400, 0).UTC().Format(time.DateOnly)
}

// rollDaySQL is the statement writing the rolled-up sessions of one UTC
// day of clients, as roll. Values are literals: an INSERT sent as a query
// carries no arguments on 18.16; the client ids are quoted, the numbers
// the store's own. A row is one visit's events of one hour with the same
// visit-level dimensions; spans marks the rows a report must fold with
// others of their visit: the visit has several rows that day, or its row
// lies in the day's first or last hour, next to the neighbouring day's
// roll. The rows are grouped per visit into an array and spread out again,
// which counts a visit's rows in the same pass over events FINAL instead
// of joining a second pass. Erased visitors are left out.
func rollDaySQL(day uint32, clients []string, roll uint64) string {
	dims := strings.Join(chschema.SessionDimensions, ", ")
	quoted := make([]string, len(clients))
	for i, c := range clients {
		quoted[i] = chschema.QuoteString(c)
	}
	from := int64(day) * 86400
	where := fmt.Sprintf("timestamp >= toDateTime(%d) AND timestamp < toDateTime(%d) AND client_id IN (%s)"+
		" AND (client_id, visitor_id) NOT IN (SELECT client_id, visitor_id FROM %s)",
		from, from+86400, strings.Join(quoted, ", "), erasedTable)
	row := append([]string{"hour", "is_bot", "visitor_id"}, chschema.SessionDimensions...)
	row = append(row, "pageviews", "events", "started", "ended", "entry", "entry_at", "exit", "exit_at")
	elems := make([]string, len(row))
	for i := range row {
		elems[i] = "r." + strconv.Itoa(i+1)
	}
	return `INSERT INTO ` + chschema.SessionsTable + ` (client_id, session_id, day, roll, spans, ` + strings.Join(row, ", ") + `)
SELECT client_id, session_id, toDate(r.1), toUInt64(` + strconv.FormatUint(roll, 10) + `), toUInt8(n > 1 OR toHour(r.1) IN (0, 23)),
    ` + strings.Join(elems, ", ") + `
FROM (SELECT client_id, session_id, count() AS n, groupArray(tuple(` + strings.Join(row, ", ") + `)) AS rows
  FROM (SELECT client_id, toStartOfHour(timestamp) AS hour, is_bot, session_id, visitor_id, ` + dims + `,
      toUInt32(countIf(type = 'pageview')) AS pageviews, toUInt32(count()) AS events,
      min(timestamp) AS started, max(timestamp) AS ended,
      argMinIf(path, timestamp, type = 'pageview') AS entry, minIf(timestamp, type = 'pageview') AS entry_at,
      argMaxIf(path, timestamp, type = 'pageview') AS exit, maxIf(timestamp, type = 'pageview') AS exit_at
    FROM events FINAL WHERE ` + where + `
    GROUP BY client_id, hour, is_bot, session_id, visitor_id, ` + dims + `)
  GROUP BY client_id, session_id)
ARRAY JOIN rows AS r`
}

// dropSuperseded deletes, in one mutation, the rows of rolls that newer
// rolls of their client and day replaced more than rollGrace ago.
func (s *Store) dropSuperseded(ctx context.Context, now time.Time) error {
	byClient := map[string][]string{}
	err := s.rows(ctx, "roll", Query{SQL: supersededSQL, Args: []any{uint64(now.Add(-rollGrace).UnixNano())}}, func(r driver.Rows) error {
		var client string
		var roll uint64
		err := r.Scan(&client, &roll)
		byClient[client] = append(byClient[client], strconv.FormatUint(roll, 10))
		return err
	})
	if err != nil || len(byClient) == 0 {
		return err
	}
	start := time.Now()
	err = s.conn.Exec(ctx, dropSupersededSQL(byClient))
	s.observe("roll", start, err)
	if err != nil {
		return fmt.Errorf("deleting superseded rolls: %w", err)
	}
	return nil
}

// dropSupersededSQL deletes the rolls of each client (decimal roll
// versions, the store's own numbers; client ids quoted).
func dropSupersededSQL(byClient map[string][]string) string {
	clients := make([]string, 0, len(byClient))
	for c := range byClient {
		clients = append(clients, c)
	}
	sort.Strings(clients)
	conds := make([]string, len(clients))
	for i, c := range clients {
		conds[i] = "(client_id = " + chschema.QuoteString(c) + " AND roll IN (" + strings.Join(byClient[c], ", ") + "))"
	}
	return "ALTER TABLE " + chschema.SessionsTable + " DELETE WHERE " + strings.Join(conds, " OR ")
}

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

// Report is what a report computes, for Exact: the aggregate (the zero
// Report), a time series (Interval set) or a breakdown (Dimension set).
type Report struct {
	Interval  Interval
	Dimension *Dimension
}

// Exact reports whether the store answers r over p from the rolled-up
// sessions, exactly and without a sample: unfiltered, no goal, a range of
// whole UTC hours (and, for a time series, buckets starting on them), and
// for a breakdown a visit-level dimension.
func (s *Store) Exact(p Params, r Report) bool {
	if !s.rolls() || len(p.Filters) > 0 || p.Where != nil || p.Goal != "" || p.Range.check() != nil ||
		!wholeHour(p.Range.From) || !wholeHour(p.Range.To) {
		return false
	}
	if r.Dimension != nil && !r.Dimension.visitLevel() {
		return false
	}
	if r.Interval != "" {
		if _, ok := bucketFuncs[r.Interval]; !ok {
			return false // the statement over events refuses it
		}
		loc := p.Location
		if loc == nil {
			loc = time.UTC
		}
		buckets, err := Buckets(p.Range, r.Interval, loc)
		if err != nil {
			return false
		}
		for i, b := range buckets {
			if i > 0 && !wholeHour(b) {
				return false
			}
		}
	}
	return true
}

func wholeHour(t time.Time) bool { return t.Unix()%3600 == 0 }

// visitLevel reports whether the rolled-up sessions hold the dimension:
// entry and exit pages, and the dimensions whose columns are all
// chschema.SessionDimensions.
func (d Dimension) visitLevel() bool {
	switch d.name {
	case "entry_page", "exit_page":
		return true
	case "page", "event_name", "prop", "":
		return false
	}
	return true
}

// rolledDays are the latest roll of each rolled UTC day of a range.
type rolledDays struct {
	rolls []uint64
	// tail are the parts of the range without a roll: [from, to) pairs of
	// Unix seconds, counted from events.
	tail [][2]int64
}

// rolledDaysSQL lists the latest roll of each of a client's days.
const rolledDaysSQL = "SELECT toUInt32(day), max(roll) FROM " + chschema.SessionRollsTable +
	" WHERE client_id = ? AND day >= toDate(toDateTime(?)) AND day <= toDate(toDateTime(?)) GROUP BY day"

// rolled looks up which days of p's range are rolled up.
func (s *Store) rolled(ctx context.Context, sc Scope, r Range) (rolledDays, error) {
	have := map[uint32]uint64{}
	err := s.rows(ctx, "rolls", Query{SQL: rolledDaysSQL, Args: []any{sc.clientID, r.From.Unix(), r.To.Unix() - 1}}, func(rows driver.Rows) error {
		var day uint32
		var roll uint64
		err := rows.Scan(&day, &roll)
		have[day] = roll
		return err
	})
	if err != nil {
		return rolledDays{}, err
	}
	return rolledDaysOf(r, have), nil
}

// rolledDaysOf splits r into the UTC days with a roll (have: day → latest
// roll) and the parts without, merged where they touch.
func rolledDaysOf(r Range, have map[uint32]uint64) rolledDays {
	var out rolledDays
	from, to := r.From.Unix(), r.To.Unix()
	for day := from / 86400; day*86400 < to; day++ {
		if roll, ok := have[uint32(day)]; ok {
			out.rolls = append(out.rolls, roll)
			continue
		}
		lo, hi := max(from, day*86400), min(to, (day+1)*86400)
		if n := len(out.tail); n > 0 && out.tail[n-1][1] == lo {
			out.tail[n-1][1] = hi
		} else {
			out.tail = append(out.tail, [2]int64{lo, hi})
		}
	}
	return out
}

// tailVolume counts the client's events in the days of r without a roll,
// bots and copies included.
func (s *Store) tailVolume(ctx context.Context, sc Scope, r Range) (uint64, error) {
	rd, err := s.rolled(ctx, sc, r)
	if err != nil || len(rd.tail) == 0 {
		return 0, err
	}
	var b stmt
	b.sql("SELECT count() FROM events WHERE client_id = ").bind(sc.clientID)
	b.inTail(rd)
	var n uint64
	err = s.rows(ctx, "volume", b.query(), func(r driver.Rows) error { return r.Scan(&n) })
	return n, err
}

// fromRolled writes the FROM and WHERE of the rolled-up sessions of p's
// range: scope, hours, the latest rolls, bots and erased visitors.
func (b *stmt) fromRolled(s Scope, p Params, rd rolledDays) {
	b.sql("FROM " + chschema.SessionsTable + " WHERE client_id = ").bind(s.clientID).
		sql(" AND hour >= toDateTime(").bind(p.Range.From.Unix()).sql(") AND hour < toDateTime(").bind(p.Range.To.Unix()).sql(")")
	b.sql(" AND roll IN (")
	bindEach(b, rd.rolls).sql(")")
	if !p.IncludeBots {
		b.sql(" AND is_bot = 0")
	}
	b.sql(" AND visitor_id NOT IN (SELECT visitor_id FROM " + erasedTable + " WHERE client_id = ").bind(s.clientID).sql(")")
}

// fromTail writes the FROM and WHERE of the events of the range's days
// without a roll.
func (b *stmt) fromTail(s Scope, p Params, rd rolledDays) {
	b.fromTable("events FINAL", 1, s, &p.Range, p.IncludeBots)
	b.inTail(rd)
}

// inTail writes the condition keeping the events of the tail's days.
func (b *stmt) inTail(rd rolledDays) {
	b.sql(" AND (")
	for i, t := range rd.tail {
		if i > 0 {
			b.sql(" OR ")
		}
		b.sql("(timestamp >= toDateTime(").bind(t[0]).sql(") AND timestamp < toDateTime(").bind(t[1]).sql("))")
	}
	b.sql(")")
}

// parts writes the rolled rows' SELECT and the tail's, joined by UNION
// ALL, leaving either out when the range has none. rolled and tail write
// the select lists and whatever follows the WHERE.
func (b *stmt) parts(s Scope, p Params, rd rolledDays, rolled, rolledAfter, tail, tailAfter string) {
	if len(rd.rolls) > 0 {
		b.sql("SELECT " + rolled + " ")
		b.fromRolled(s, p, rd)
		b.sql(rolledAfter)
	}
	if len(rd.tail) > 0 {
		if len(rd.rolls) > 0 {
			b.sql("\n  UNION ALL\n  ")
		}
		b.sql("SELECT " + tail + " ")
		b.fromTail(s, p, rd)
		b.sql(tailAfter)
	}
}

// rolledAggregate is Aggregate over the rolled-up sessions: a visit of one
// row is counted from it; the rows of visits that span several (and the
// tail's visits) are folded per visit first. A bounce is a visit of one
// event, a page view. Conversions are 0: a goal is never rolled.
func (s Scope) rolledAggregate(p Params, rd rolledDays) Query {
	var b stmt
	b.sql(`SELECT uniqExact(visitor), count(), sum(pv), sum(ev), countIf(ev = 1 AND pv = 1), sum(dur), toUInt64(0)
FROM (`)
	if len(rd.rolls) > 0 {
		b.sql("SELECT visitor_id AS visitor, toUInt64(pageviews) AS pv, toUInt64(events) AS ev, toUInt64(toUInt64(ended) - toUInt64(started)) AS dur ")
		b.fromRolled(s, p, rd)
		b.sql(" AND spans = 0\n  UNION ALL\n  ")
	}
	b.sql(`SELECT any(visitor) AS visitor, sum(pv) AS pv, sum(ev) AS ev, toUInt64(toUInt64(max(e)) - toUInt64(min(st))) AS dur FROM (`)
	b.parts(s, p, rd,
		"session_id, visitor_id AS visitor, toUInt64(pageviews) AS pv, toUInt64(events) AS ev, started AS st, ended AS e", " AND spans = 1",
		"session_id, any(visitor_id) AS visitor, countIf(type = 'pageview') AS pv, count() AS ev, min(timestamp) AS st, max(timestamp) AS e", " GROUP BY session_id")
	b.sql(`)
  GROUP BY session_id)`)
	return b.query()
}

// visitsOfRows counts the visits of rolled-up rows (and tail events,
// whose spans is 1) grouped by a value or bucket: a row with spans = 0 is
// the only row of its visit, so it is counted as it is, and only the
// others, a small share, need a distinct count.
const visitsOfRows = "countIf(spans = 0) + uniqExactIf(session, spans = 1)"

// rolledTimeseries is Timeseries over the rolled-up sessions: the buckets
// start on whole hours (Exact), so each row lies in one.
func (s Scope) rolledTimeseries(p Params, iv Interval, rd rolledDays) Query {
	var b stmt
	b.sql("SELECT toString(" + bucketFuncs[iv] + "(toDateTime(hour, ").bind(p.tz()).sql(`))) AS bucket,
    uniqExact(visitor), ` + visitsOfRows + `, sum(pv), sum(ev)
FROM (`)
	b.parts(s, p, rd,
		"hour, visitor_id AS visitor, session_id AS session, spans, toUInt64(pageviews) AS pv, toUInt64(events) AS ev", "",
		"toStartOfHour(timestamp) AS hour, visitor_id AS visitor, session_id AS session, toUInt8(1) AS spans, toUInt64(type = 'pageview') AS pv, toUInt64(1) AS ev", "")
	b.sql(`)
GROUP BY bucket ORDER BY bucket`)
	return b.query()
}

// rolledBreakdown is Breakdown of a visit-level dimension over the
// rolled-up sessions.
func (s Scope) rolledBreakdown(p Params, d Dimension, limit int, rd rolledDays) Query {
	var b stmt
	if d.isSession() {
		// Entry and exit pages: from the row of a one-row visit, folded
		// over the rows of the others.
		page, at, pick, edge := "entry", "entry_at", "argMin", "min"
		if d.name == "exit_page" {
			page, at, pick, edge = "exit", "exit_at", "argMax", "max"
		}
		b.sql(`SELECT value, uniqExact(visitor) AS visitors, count() AS visits, sum(pv) AS pageviews, sum(pv) AS events
FROM (`)
		if len(rd.rolls) > 0 {
			b.sql("SELECT " + page + " AS value, visitor_id AS visitor, toUInt64(pageviews) AS pv ")
			b.fromRolled(s, p, rd)
			b.sql(" AND spans = 0 AND pageviews > 0\n  UNION ALL\n  ")
		}
		b.sql(`SELECT ` + pick + `(page, at) AS value, any(visitor) AS visitor, sum(pv) AS pv FROM (`)
		b.parts(s, p, rd,
			"session_id, visitor_id AS visitor, "+page+" AS page, "+at+" AS at, toUInt64(pageviews) AS pv", " AND spans = 1 AND pageviews > 0",
			"session_id, any(visitor_id) AS visitor, "+d.def().session+"(path, timestamp) AS page, "+edge+"(timestamp) AS at, count() AS pv", " AND type = 'pageview' GROUP BY session_id")
		b.sql(`)
  GROUP BY session_id)`)
	} else {
		b.sql(`SELECT value, uniqExact(visitor) AS visitors, ` + visitsOfRows + ` AS visits, sum(pv) AS pageviews, sum(ev) AS events
FROM (`)
		expr := d.def().expr
		b.parts(s, p, rd,
			expr+" AS value, visitor_id AS visitor, session_id AS session, spans, toUInt64(pageviews) AS pv, toUInt64(events) AS ev", "",
			expr+" AS value, visitor_id AS visitor, session_id AS session, toUInt8(1) AS spans, toUInt64(type = 'pageview') AS pv, toUInt64(1) AS ev", "")
		b.sql(")")
	}
	b.sql(`
GROUP BY value ORDER BY visitors DESC, events DESC, value LIMIT `).bind(limit)
	return b.query()
}

// Statement is the statement Aggregate, Timeseries or Breakdown runs for
// r over p (a breakdown's top limit rows): over the rolled-up sessions
// when the store answers r from them (Exact) and p reads no sample, else
// over events.
func (s *Store) Statement(ctx context.Context, sc Scope, p Params, r Report, limit int) (Query, error) {
	var raw func() (Query, error)
	var rolled func(rolledDays) Query
	switch {
	case r.Dimension != nil:
		d := *r.Dimension
		raw = func() (Query, error) { return sc.Breakdown(p, d, limit) }
		rolled = func(rd rolledDays) Query { return sc.rolledBreakdown(p, d, limit, rd) }
	case r.Interval != "":
		raw = func() (Query, error) { return sc.Timeseries(p, r.Interval) }
		rolled = func(rd rolledDays) Query { return sc.rolledTimeseries(p, r.Interval, rd) }
	default:
		raw = func() (Query, error) { return sc.Aggregate(p) }
		rolled = func(rd rolledDays) Query { return sc.rolledAggregate(p, rd) }
	}
	if p.Sample > 1 || !s.Exact(p, r) {
		return raw() // Sample picks 1 for rolled reports up to SampleRolledAbove
	}
	if err := sc.check(); err != nil {
		return Query{}, err
	}
	rd, err := s.rolled(ctx, sc, p.Range)
	if err != nil {
		return Query{}, err
	}
	return rolled(rd), nil
}

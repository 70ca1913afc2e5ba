package query

import (
	"context"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/aluminiapp/pipeline/lib/chschema"
)

// Reports from rolled-up sessions: which reports the store answers from
// them (Exact), the rolled days of a range, and the statements that read
// the latest roll of each day and count the days not rolled from events.

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

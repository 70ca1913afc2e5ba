package query

import (
	"fmt"
	"time"
)

// The report statements below must count a replayed event once even
// before ClickHouse merged its copies (the events table is a
// ReplacingMergeTree). Those that count events read `events FINAL`, which
// collapses the copies while reading, and then count rows; on 2 cores and
// 18.16 that measured 2-5x faster than a distinct count of event ids,
// whose hash set over millions of strings was most of each report's time
// (docs/bench/reporter.md). Statements that only count visitors and
// visits read without FINAL: a distinct count is unchanged by copies.
//
// A visit is a session_id: the enricher derives it from the visitor and
// the visit's start (a 64-bit hash), so within a client it names one visit
// of one visitor, and counting one UInt64 avoids the 128-bit hashing of a
// (visitor_id, session_id) pair. event_key is the schema's 64-bit hash of
// event_id. Two visits (or events) of one report share a key with
// probability about n²/2^65 (2·10⁻⁷ for 3 million), undercounting by one.
// ClickHouse 18.16 has no {name:Type} parameters and compares DateTime
// only with DateTime, hence `?` and toDateTime of Unix seconds.

// Aggregate is the totals statement: visitors, visits, pageviews, events,
// bounces, total duration (s), converted visitors. Its first half counts
// page views and events on events FINAL. Its second half folds each visit
// into one row without a distinct count per visit: a visit bounced when it
// holds exactly one distinct event, i.e. its smallest and largest
// event_key are equal (copies repeat the key), and that event is a page
// view. Both halves read the same rows.
func (s Scope) Aggregate(p Params) (Query, error) {
	var b stmt
	b.sql(`SELECT visitors, visits, pageviews, events, bounces, duration, converted
FROM (SELECT countIf(type = 'pageview') AS pageviews, count() AS events
  `)
	if err := b.scopedFinal(s, p); err != nil {
		return Query{}, err
	}
	b.sql(`) AS counted
CROSS JOIN (SELECT uniqExact(visitor) AS visitors, count() AS visits, countIf(lo = hi AND pv = 1) AS bounces, sum(dur) AS duration,
    uniqExactIf(visitor, conv = 1) AS converted
  FROM (SELECT any(visitor_id) AS visitor, min(event_key) AS lo, max(event_key) AS hi, max(type = 'pageview') AS pv,
      toUInt64(toUInt64(max(timestamp)) - toUInt64(min(timestamp))) AS dur,
      max(type = 'custom' AND name = `).bind(p.Goal).sql(`) AS conv
    `)
	if err := b.scoped(s, p); err != nil {
		return Query{}, err
	}
	b.sql(`
    GROUP BY session_id)) AS folded`)
	return b.query(), nil
}

// Interval is the width of a time-series bucket.
type Interval string

// Intervals of a time series.
const (
	Hour  Interval = "hour"
	Day   Interval = "day"
	Week  Interval = "week"
	Month Interval = "month"
)

var bucketFuncs = map[Interval]string{
	Hour: "toStartOfHour", Day: "toStartOfDay", Week: "toMonday", Month: "toStartOfMonth",
}

// Timeseries is the per-bucket statement: bucket start as local time text
// in p.Location, visitors, visits, pageviews, events.
func (s Scope) Timeseries(p Params, iv Interval) (Query, error) {
	fn, ok := bucketFuncs[iv]
	if !ok {
		return Query{}, fmt.Errorf("%w: interval %q; want hour, day, week or month", ErrBadParam, truncate(string(iv)))
	}
	var b stmt
	b.sql("SELECT toString(" + fn + "(toDateTime(timestamp, ").bind(p.tz()).sql(`))) AS bucket,
    uniqExact(visitor_id), uniqExact(session_id), countIf(type = 'pageview'), count()
  `)
	if err := b.scopedFinal(s, p); err != nil {
		return Query{}, err
	}
	b.sql(`
  GROUP BY bucket ORDER BY bucket`)
	return b.query(), nil
}

// Breakdown is the top-values statement of one dimension: value, visitors,
// visits, pageviews, events, ordered by visitors, at most limit rows.
func (s Scope) Breakdown(p Params, d Dimension, limit int) (Query, error) {
	if d.name == "" {
		return Query{}, fmt.Errorf("%w: no dimension", ErrBadParam)
	}
	if limit < 1 {
		return Query{}, fmt.Errorf("%w: limit must be positive", ErrBadParam)
	}
	var b stmt
	if d.isSession() {
		// Entry and exit pages are properties of a visit: fold each visit's
		// page views into one row first.
		b.sql(`SELECT value, uniqExact(visitor) AS visitors, count() AS visits, sum(pv) AS pageviews, sum(pv) AS events
FROM (SELECT any(visitor_id) AS visitor, ` + d.def().session + `(path, timestamp) AS value, count() AS pv
  `)
		if err := b.scopedFinal(s, p); err != nil {
			return Query{}, err
		}
		b.sql(` AND type = 'pageview'
  GROUP BY session_id)`)
	} else {
		b.sql("SELECT ")
		d.value(&b)
		b.sql(` AS value, uniqExact(visitor_id) AS visitors, uniqExact(session_id) AS visits,
    countIf(type = 'pageview') AS pageviews, count() AS events
  `)
		if err := b.scopedFinal(s, p); err != nil {
			return Query{}, err
		}
		d.rowCondition(&b)
	}
	b.sql(`
GROUP BY value ORDER BY visitors DESC, events DESC, value LIMIT `).bind(limit)
	return b.query(), nil
}

// Volume is the statement counting the client's events in r, bots and
// copies included: what a report over r would read, to choose its sample.
func (s Scope) Volume(r Range) (Query, error) {
	var b stmt
	b.sql("SELECT count() ")
	if err := b.scoped(s, Params{Range: r, IncludeBots: true}); err != nil {
		return Query{}, err
	}
	return b.query(), nil
}

// CurrentVisitors is the statement counting visitors seen in [since, until).
func (s Scope) CurrentVisitors(since, until time.Time) (Query, error) {
	var b stmt
	b.sql("SELECT uniqExact(visitor_id) ")
	if err := b.scoped(s, Params{Range: Range{From: since, To: until}}); err != nil {
		return Query{}, err
	}
	return b.query(), nil
}

// StepKind says what a funnel step matches.
type StepKind string

// Funnel step kinds.
const (
	StepPage  StepKind = "page"
	StepEvent StepKind = "event"
)

// Step is one funnel step: a page view of a path or a custom event name.
type Step struct {
	Kind  StepKind
	Value string
}

// Funnel limits.
const (
	MaxSteps  = 8
	MaxWindow = 90 * 24 * time.Hour
)

// Funnel is the statement of an ordered funnel: for each visitor the
// furthest step reached in order within window (windowFunnel), then the
// number of visitors per furthest step.
func (s Scope) Funnel(p Params, steps []Step, window time.Duration) (Query, error) {
	if len(steps) < 2 || len(steps) > MaxSteps {
		return Query{}, fmt.Errorf("%w: a funnel has 2-%d steps", ErrBadParam, MaxSteps)
	}
	if window < time.Second || window > MaxWindow {
		return Query{}, fmt.Errorf("%w: window must be between 1s and %s", ErrBadParam, MaxWindow)
	}
	var b stmt
	b.sql("SELECT level, count() FROM (SELECT visitor_id, windowFunnel(").bind(int64(window / time.Second)).sql(")(timestamp")
	for _, st := range steps {
		if len(st.Value) > maxValueLen {
			return Query{}, fmt.Errorf("%w: step values must be at most %d bytes", ErrBadParam, maxValueLen)
		}
		switch st.Kind {
		case StepPage:
			b.sql(", type = 'pageview' AND path = ").bind(st.Value)
		case StepEvent:
			b.sql(", type = 'custom' AND name = ").bind(st.Value)
		default:
			return Query{}, fmt.Errorf("%w: step kind %q; want page or event", ErrBadParam, truncate(string(st.Kind)))
		}
	}
	b.sql(") AS level\n  ")
	if err := b.scoped(s, p); err != nil {
		return Query{}, err
	}
	b.sql("\n  GROUP BY visitor_id) GROUP BY level ORDER BY level")
	return b.query(), nil
}

// Retention is the cohort statement: each visitor's first week in the
// range (Monday, in p.Location), every week they came back, and the number
// of visitors per (cohort, week).
func (s Scope) Retention(p Params) (Query, error) {
	var b stmt
	b.sql(`SELECT toString(cohort), toString(week), count() FROM (
  SELECT visitor_id, min(w) AS cohort, groupUniqArray(w) AS weeks FROM (
    SELECT visitor_id, toMonday(toDateTime(timestamp, `).bind(p.tz()).sql(")) AS w\n    ")
	if err := b.scoped(s, p); err != nil {
		return Query{}, err
	}
	b.sql(`)
  GROUP BY visitor_id)
ARRAY JOIN weeks AS week
GROUP BY cohort, week ORDER BY cohort, week`)
	return b.query(), nil
}

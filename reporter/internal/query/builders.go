package query

import (
	"fmt"
	"time"
)

// The statements below count distinct event ids rather than rows: the
// events table is a ReplacingMergeTree, so a replayed event stays a
// duplicate row until its parts merge, and only uniqExact counts it once
// before that. A visit is a (visitor_id, session_id) pair. ClickHouse
// 18.16 has no {name:Type} parameters and compares DateTime only with
// DateTime, hence `?` and toDateTime of Unix seconds.

// Aggregate is the totals statement. Its inner query folds each visit into
// one row; the outer one sums the visits. Columns: visitors, visits,
// pageviews, events, bounces, total duration (s), converted visitors.
func (s Scope) Aggregate(p Params) (Query, error) {
	var b stmt
	b.sql(`SELECT uniqExact(visitor_id), count(), sum(pv), sum(ev), countIf(pv = 1 AND ev = 1), sum(dur), uniqExactIf(visitor_id, conv = 1)
FROM (SELECT visitor_id, session_id,
    uniqExactIf(event_id, type = 'pageview') AS pv,
    uniqExact(event_id) AS ev,
    toUInt64(toUInt64(max(timestamp)) - toUInt64(min(timestamp))) AS dur,
    max(type = 'custom' AND name = `).bind(p.Goal).sql(`) AS conv
  `)
	if err := b.scoped(s, p); err != nil {
		return Query{}, err
	}
	b.sql(`
  GROUP BY visitor_id, session_id)`)
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
    uniqExact(visitor_id), uniqExact(visitor_id, session_id), uniqExactIf(event_id, type = 'pageview'), uniqExact(event_id)
  `)
	if err := b.scoped(s, p); err != nil {
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
		b.sql(`SELECT value, uniqExact(visitor_id) AS visitors, count() AS visits, sum(pv) AS pageviews, sum(pv) AS events
FROM (SELECT visitor_id, session_id, ` + d.def().session + `(path, timestamp) AS value, uniqExact(event_id) AS pv
  `)
		if err := b.scoped(s, p); err != nil {
			return Query{}, err
		}
		b.sql(` AND type = 'pageview'
  GROUP BY visitor_id, session_id)`)
	} else {
		b.sql("SELECT ")
		d.value(&b)
		b.sql(` AS value, uniqExact(visitor_id) AS visitors, uniqExact(visitor_id, session_id) AS visits,
    uniqExactIf(event_id, type = 'pageview') AS pageviews, uniqExact(event_id) AS events
  `)
		if err := b.scoped(s, p); err != nil {
			return Query{}, err
		}
		d.rowCondition(&b)
	}
	b.sql(`
GROUP BY value ORDER BY visitors DESC, events DESC, value LIMIT `).bind(limit)
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

package query

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Metrics are the headline numbers of one range. Rates are percentages
// rounded to two decimals; the duration is the mean visit length in whole
// seconds (last event minus first).
type Metrics struct {
	Visitors      uint64  `json:"visitors"`
	Visits        uint64  `json:"visits"`
	Pageviews     uint64  `json:"pageviews"`
	ViewsPerVisit float64 `json:"views_per_visit"`
	BounceRate    float64 `json:"bounce_rate"`
	VisitDuration float64 `json:"visit_duration"`
	Events        uint64  `json:"events"`
	// Conversions and ConversionRate are set when a goal was asked for.
	Conversions    *uint64  `json:"conversions,omitempty"`
	ConversionRate *float64 `json:"conversion_rate,omitempty"`
}

func ratio(n, d uint64, scale float64) float64 {
	if d == 0 {
		return 0
	}
	return math.Round(float64(n)/float64(d)*scale*100) / 100
}

// Aggregate returns the metrics of the scope over p.
func (s *Store) Aggregate(ctx context.Context, sc Scope, p Params) (Metrics, error) {
	q, err := s.Statement(ctx, sc, p, Report{}, 0)
	if err != nil {
		return Metrics{}, err
	}
	var visitors, visits, pv, ev, bounces, dur, conv uint64
	err = s.rows(ctx, "aggregate", q, func(r driver.Rows) error {
		return r.Scan(&visitors, &visits, &pv, &ev, &bounces, &dur, &conv)
	})
	if err != nil {
		return Metrics{}, err
	}
	k := p.Sample
	visitors, visits, pv, ev, bounces, dur, conv = scaled(visitors, k), scaled(visits, k), scaled(pv, k), scaled(ev, k), scaled(bounces, k), scaled(dur, k), scaled(conv, k)
	m := Metrics{
		Visitors: visitors, Visits: visits, Pageviews: pv, Events: ev,
		ViewsPerVisit: ratio(pv, visits, 1),
		BounceRate:    ratio(bounces, visits, 100),
		VisitDuration: math.Round(ratio(dur, visits, 1)),
	}
	if p.Goal != "" {
		rate := ratio(conv, visitors, 100)
		m.Conversions, m.ConversionRate = &conv, &rate
	}
	return m, nil
}

// Point is one bucket of a time series; Time is the bucket's start in the
// report's time zone, RFC 3339 with offset.
type Point struct {
	Time string `json:"time"`
	Counts
}

// Counts are the numbers of a time-series point or a breakdown row.
type Counts struct {
	Visitors  uint64 `json:"visitors"`
	Visits    uint64 `json:"visits"`
	Pageviews uint64 `json:"pageviews"`
	Events    uint64 `json:"events"`
}

// scale scales counts of a one-in-k sample to the whole.
func (c *Counts) scale(k uint64) {
	c.Visitors, c.Visits, c.Pageviews, c.Events = scaled(c.Visitors, k), scaled(c.Visits, k), scaled(c.Pageviews, k), scaled(c.Events, k)
}

// MaxPoints bounds a time series, so an hourly series of two years cannot
// be asked for.
const MaxPoints = 1000

// Buckets returns the starts of the buckets of interval iv covering r in
// loc, or ErrTooLarge beyond MaxPoints.
func Buckets(r Range, iv Interval, loc *time.Location) ([]time.Time, error) {
	if loc == nil {
		loc = time.UTC
	}
	start := bucketStart(r.From.In(loc), iv)
	var out []time.Time
	for t := start; t.Before(r.To); t = nextBucket(t, iv) {
		if len(out) == MaxPoints {
			return nil, fmt.Errorf("%w: more than %d %s buckets; choose a wider interval or a shorter range", ErrTooLarge, MaxPoints, iv)
		}
		out = append(out, t)
	}
	return out, nil
}

func bucketStart(t time.Time, iv Interval) time.Time {
	y, m, d := t.Date()
	loc := t.Location()
	switch iv {
	case Hour:
		return time.Date(y, m, d, t.Hour(), 0, 0, 0, loc)
	case Week:
		wd := (int(t.Weekday()) + 6) % 7 // days since Monday
		return time.Date(y, m, d-wd, 0, 0, 0, 0, loc)
	case Month:
		return time.Date(y, m, 1, 0, 0, 0, 0, loc)
	default:
		return time.Date(y, m, d, 0, 0, 0, 0, loc)
	}
}

func nextBucket(t time.Time, iv Interval) time.Time {
	switch iv {
	case Hour:
		// Absolute hours, re-truncated: correct across DST changes.
		return bucketStart(t.Add(time.Hour), Hour)
	case Week:
		return bucketStart(t.AddDate(0, 0, 7), Week)
	case Month:
		return bucketStart(t.AddDate(0, 1, 0), Month)
	default:
		return bucketStart(t.AddDate(0, 0, 1), Day)
	}
}

// parseLocal reads ClickHouse's text of a Date or DateTime in loc.
func parseLocal(s string, loc *time.Location) (time.Time, error) {
	layout := time.DateTime
	if len(s) == len(time.DateOnly) {
		layout = time.DateOnly
	}
	return time.ParseInLocation(layout, s, loc)
}

// Timeseries returns one point per bucket of p's range, empty buckets
// included, so charts need no gap filling.
func (s *Store) Timeseries(ctx context.Context, sc Scope, p Params, iv Interval) ([]Point, error) {
	q, err := s.Statement(ctx, sc, p, Report{Interval: iv}, 0)
	if err != nil {
		return nil, err
	}
	loc := p.Location
	if loc == nil {
		loc = time.UTC
	}
	buckets, err := Buckets(p.Range, iv, loc)
	if err != nil {
		return nil, err
	}
	got := map[int64]Point{}
	err = s.rows(ctx, "timeseries", q, func(r driver.Rows) error {
		var bucket string
		var pt Point
		if err := r.Scan(&bucket, &pt.Visitors, &pt.Visits, &pt.Pageviews, &pt.Events); err != nil {
			return err
		}
		pt.Counts.scale(p.Sample)
		t, err := parseLocal(bucket, loc)
		if err != nil {
			return fmt.Errorf("bucket %q: %w", bucket, err)
		}
		got[t.Unix()] = pt
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]Point, len(buckets))
	for i, t := range buckets {
		pt := got[t.Unix()]
		pt.Time = t.Format(time.RFC3339)
		out[i] = pt
	}
	return out, nil
}

// Row is one value of a breakdown.
type Row struct {
	Value string `json:"value"`
	Counts
}

// Breakdown returns the top limit values of d.
func (s *Store) Breakdown(ctx context.Context, sc Scope, p Params, d Dimension, limit int) ([]Row, error) {
	q, err := s.Statement(ctx, sc, p, Report{Dimension: &d}, limit)
	if err != nil {
		return nil, err
	}
	out := []Row{}
	err = s.rows(ctx, "breakdown", q, func(r driver.Rows) error {
		var row Row
		if err := r.Scan(&row.Value, &row.Visitors, &row.Visits, &row.Pageviews, &row.Events); err != nil {
			return err
		}
		row.Counts.scale(p.Sample)
		out = append(out, row)
		return nil
	})
	return out, err
}

// CurrentVisitors returns the number of visitors seen in the window before
// now.
func (s *Store) CurrentVisitors(ctx context.Context, sc Scope, now time.Time, window time.Duration) (uint64, error) {
	// One second past now: events stamped "now" by a fast pipeline count.
	q, err := sc.CurrentVisitors(now.Add(-window), now.Add(time.Second))
	if err != nil {
		return 0, err
	}
	var n uint64
	err = s.rows(ctx, "current_visitors", q, func(r driver.Rows) error { return r.Scan(&n) })
	return n, err
}

// FunnelStep is the outcome of one funnel step.
type FunnelStep struct {
	Kind     StepKind `json:"kind"`
	Value    string   `json:"value"`
	Visitors uint64   `json:"visitors"`
	// ConversionRate is the percentage of the first step's visitors who
	// reached this step; DropOff those of the previous step who did not.
	ConversionRate float64 `json:"conversion_rate"`
	DropOff        uint64  `json:"drop_off"`
	DropOffRate    float64 `json:"drop_off_rate"`
}

// Funnel returns the visitors reaching each step in order within window.
func (s *Store) Funnel(ctx context.Context, sc Scope, p Params, steps []Step, window time.Duration) ([]FunnelStep, error) {
	q, err := sc.Funnel(p, steps, window)
	if err != nil {
		return nil, err
	}
	atLevel := make([]uint64, len(steps)+1)
	err = s.rows(ctx, "funnel", q, func(r driver.Rows) error {
		var level uint8
		var n uint64
		if err := r.Scan(&level, &n); err != nil {
			return err
		}
		if int(level) < len(atLevel) {
			atLevel[level] = n
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]FunnelStep, len(steps))
	for i := len(steps) - 1; i >= 0; i-- {
		// Visitors who reached step i+1 got at least that far.
		out[i] = FunnelStep{Kind: steps[i].Kind, Value: steps[i].Value, Visitors: atLevel[i+1]}
		if i+1 < len(steps) {
			out[i].Visitors += out[i+1].Visitors
		}
	}
	for i := range out {
		out[i].ConversionRate = ratio(out[i].Visitors, out[0].Visitors, 100)
		if i > 0 {
			out[i].DropOff = out[i-1].Visitors - out[i].Visitors
			out[i].DropOffRate = ratio(out[i].DropOff, out[i-1].Visitors, 100)
		}
	}
	return out, nil
}

// Cohort is the visitors first seen in one week and how many of them came
// back in each later week: Returning[0] is the cohort week itself.
type Cohort struct {
	Week      string    `json:"week"`
	Visitors  uint64    `json:"visitors"`
	Returning []uint64  `json:"returning"`
	Rates     []float64 `json:"rates"`
}

// Retention returns the weekly cohorts of p's range.
func (s *Store) Retention(ctx context.Context, sc Scope, p Params) ([]Cohort, error) {
	q, err := sc.Retention(p)
	if err != nil {
		return nil, err
	}
	loc := p.Location
	if loc == nil {
		loc = time.UTC
	}
	weeks, err := Buckets(p.Range, Week, loc)
	if err != nil {
		return nil, err
	}
	index := map[string]int{}
	out := make([]Cohort, len(weeks))
	for i, w := range weeks {
		out[i] = Cohort{Week: w.Format(time.DateOnly), Returning: make([]uint64, len(weeks)-i), Rates: make([]float64, len(weeks)-i)}
		index[out[i].Week] = i
	}
	err = s.rows(ctx, "retention", q, func(r driver.Rows) error {
		var cohort, week string
		var n uint64
		if err := r.Scan(&cohort, &week, &n); err != nil {
			return err
		}
		ci, ok1 := index[cohort]
		wi, ok2 := index[week]
		if ok1 && ok2 && wi >= ci {
			out[ci].Returning[wi-ci] = n
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Visitors = out[i].Returning[0]
		for j, n := range out[i].Returning {
			out[i].Rates[j] = ratio(n, out[i].Visitors, 100)
		}
	}
	return out, nil
}

// Event is one exported event: column name to text, or to a list for the
// property arrays.
type Event map[string]any

// Export returns every event of one visitor of the scope's client, or
// ErrTooLarge beyond max events.
func (s *Store) Export(ctx context.Context, sc Scope, visitorID uint64, max int) ([]Event, error) {
	q, err := sc.Export(visitorID, max+1)
	if err != nil {
		return nil, err
	}
	out := []Event{}
	err = s.rows(ctx, "export", q, func(r driver.Rows) error {
		if len(out) == max {
			return fmt.Errorf("%w: visitor has more than %d events", ErrTooLarge, max)
		}
		dest := make([]any, len(exportColumns))
		for i, c := range exportColumns {
			if isArrayColumn(c) {
				dest[i] = new([]string)
			} else {
				dest[i] = new(string)
			}
		}
		if err := r.Scan(dest...); err != nil {
			return err
		}
		ev := Event{}
		for i, c := range exportColumns {
			switch v := dest[i].(type) {
			case *string:
				ev[c] = *v
			case *[]string:
				ev[c] = *v
			}
		}
		out = append(out, ev)
		return nil
	})
	return out, err
}

// Trend is one value's share of all visitors across clients.
type Trend struct {
	Value    string  `json:"value"`
	Clients  uint64  `json:"clients"`
	Visitors uint64  `json:"visitors"`
	Share    float64 `json:"share"`
}

// Trends returns the cross-client shares of d over r, hiding values seen
// by fewer than minClients clients.
func (s *Store) Trends(ctx context.Context, o Operator, r Range, d Dimension, minClients, limit int) ([]Trend, uint64, error) {
	q, err := o.Trends(r, d, minClients, limit)
	if err != nil {
		return nil, 0, err
	}
	out := []Trend{}
	var total uint64
	err = s.rows(ctx, "trends", q, func(rows driver.Rows) error {
		var t Trend
		var isTotal uint8
		if err := rows.Scan(&t.Value, &t.Clients, &t.Visitors, &isTotal); err != nil {
			return err
		}
		if isTotal == 1 {
			total = t.Visitors
			return nil
		}
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Visitors > out[j].Visitors })
	for i := range out {
		out[i].Share = ratio(out[i].Visitors, total, 100)
	}
	return out, total, nil
}

package query

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/maypok86/otter/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/aluminiapp/pipeline/sinker/schema"
)

// ErrTooLarge is returned when a result would exceed the configured size.
var ErrTooLarge = errors.New("result too large")

// Store runs report queries on a ClickHouse connection and times them.
type Store struct {
	conn     driver.Conn
	timeout  time.Duration
	duration *prometheus.HistogramVec
	// layout is where erasure's mutations and tables go: one node, or the
	// local tables of a cluster (see OnCluster).
	layout schema.Target
	// sampleAbove is the number of events above which reports read a
	// sample (SampleAbove); 0 never samples.
	sampleAbove uint64
	// volumes holds the event counts Sample looked up, for volumeTTL: the
	// dashboard asks a dozen reports of one range at once and again every
	// minute, and a sample one step off for a few minutes changes nothing.
	volumes *otter.Cache[volumeKey, uint64]
}

// volumeKey is a client's range whose events Sample counted.
type volumeKey struct {
	client   string
	from, to int64
}

const volumeTTL = 5 * time.Minute

// DefaultSampleAbove is the reporter's -sample-above-events: sized for a
// 2-core server running ClickHouse 18.16 (docs/reporter.md); larger
// servers can count a few million events exactly within the same time.
const DefaultSampleAbove = 200_000

// SampleAbove makes reports over more than rows events (of the client, in
// the range) read a sample of the visitors, see Sample; 0 (the zero Store)
// always reads every event. Call it before the store serves reports.
func (s *Store) SampleAbove(rows uint64) {
	s.sampleAbove = rows
	s.volumes = otter.Must(&otter.Options[volumeKey, uint64]{
		MaximumSize: 10_000, ExpiryCalculator: otter.ExpiryWriting[volumeKey, uint64](volumeTTL),
	})
}

// sampleSteps are the sample sizes Sample picks from: one in 2, 5, 10, ...
// visitors, so that a sample rate reads as a round number.
var sampleSteps = []uint64{2, 5, 10, 20, 50, 100, 200, 500, 1000}

// Sample returns the one-in-k sample of visitors the aggregate, time
// series and breakdowns of p should read: 1 (every event) when the client
// has at most SampleAbove events in p's range, else the smallest step
// that brings the events read under it. ClickHouse then reads k times
// fewer rows, and the counts, scaled by k, carry a sampling error of
// about 1/sqrt(visitors in the sample) (docs/reporter.md). Counting the
// range first costs one scan of the timestamp column over the client's
// range, the primary key's (40 ms for 3 million events here); the count
// is kept for a few minutes per client and range.
func (s *Store) Sample(ctx context.Context, sc Scope, p Params) (uint64, error) {
	if s.sampleAbove == 0 {
		return 1, nil
	}
	// The dashboard's reports of one range arrive together: one of them
	// counts, the others wait for its count.
	key := volumeKey{sc.clientID, p.Range.From.Unix(), p.Range.To.Unix()}
	n, err := s.volumes.Get(ctx, key, otter.LoaderFunc[volumeKey, uint64](func(ctx context.Context, _ volumeKey) (uint64, error) {
		q, err := sc.Volume(p.Range)
		if err != nil {
			return 0, err
		}
		var n uint64
		err = s.rows(ctx, "volume", q, func(r driver.Rows) error { return r.Scan(&n) })
		return n, err
	}))
	if err != nil {
		return 0, err
	}
	if n <= s.sampleAbove {
		return 1, nil
	}
	for _, k := range sampleSteps {
		if n/k <= s.sampleAbove {
			return k, nil
		}
	}
	return sampleSteps[len(sampleSteps)-1], nil
}

// scaled is n counted in a one-in-k sample, scaled to the whole.
func scaled(n, k uint64) uint64 {
	if k > 1 {
		return n * k
	}
	return n
}

// OnCluster tells the store that the tables are laid out as the sinker's
// cluster mode lays them out on cluster (in database): Init makes the
// erasure table on every node, replicated to all of them, and erasure
// deletes on every shard, ON CLUSTER. Call it before Init.
func (s *Store) OnCluster(database, cluster string) {
	s.layout = schema.Target{Database: database, Cluster: cluster}
}

// NewStore returns a Store on conn whose query durations are registered
// with reg as alumini_reporter_clickhouse_query_duration_seconds. timeout
// is also sent to ClickHouse as max_execution_time, so a query the
// reporter gave up on stops using the server too.
func NewStore(conn driver.Conn, reg prometheus.Registerer, timeout time.Duration) (*Store, error) {
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "alumini_reporter_clickhouse_query_duration_seconds",
		Help:    "Time ClickHouse took to answer a report query, by query and outcome.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"query", "outcome"})
	if err := reg.Register(duration); err != nil {
		return nil, fmt.Errorf("registering query metrics: %w", err)
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &Store{conn: conn, timeout: timeout, duration: duration}, nil
}

// erasedDDL is the reporter's own table: erasure requests, the tombstones
// every scoped read excludes, and the audit record of each request. An
// erasure is recorded up to three times under the same requested_at: when
// asked (hiding the visitor), with its mutations, and once the aggregate
// views were rebuilt (views_rebuilt = 1, with the views' mutations too);
// the latest record wins (erasureSQL).
//
// On a cluster every node holds all of it (one replicated table whose
// replicas are all the nodes: the path has no {shard}), so the sinkers on
// every node drop replays of erased visitors, and scoped reads, whose
// exclusion runs on each shard, find it there.
func erasedDDL(l schema.Target) string {
	engine := "ReplacingMergeTree"
	if l.Cluster != "" {
		engine = "ReplicatedReplacingMergeTree('/clickhouse/tables/all/" + l.Database + "/" + erasedTable + "', '{shard}-{replica}')"
	}
	return `CREATE TABLE IF NOT EXISTS ` + l.Everywhere(erasedTable) + ` (
    client_id String,
    visitor_id UInt64,
    requested_at DateTime('UTC'),
    mutations Array(String),
    first_day Date,
    last_day Date,
    views_rebuilt UInt8
) ENGINE = ` + engine + ` ORDER BY (client_id, visitor_id)`
}

// erasedColumnsAdded are the columns erasedDDL gained after its first
// version, added to tables made by that one (18.16 has no ADD COLUMN IF
// NOT EXISTS, so Init looks first).
var erasedColumnsAdded = []struct{ name, typ string }{
	{"first_day", "Date"}, {"last_day", "Date"}, {"views_rebuilt", "UInt8"},
}

// Init creates the reporter's erasure table when it is missing and adds
// the columns an older one lacks.
func (s *Store) Init(ctx context.Context) error {
	if err := s.conn.Exec(ctx, erasedDDL(s.layout)); err != nil {
		return fmt.Errorf("creating %s: %w", erasedTable, err)
	}
	if s.layout.Cluster != "" {
		return nil // made with every column: cluster mode came after them
	}
	have := map[string]bool{}
	err := s.rows(ctx, "init", Query{SQL: "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = '" + erasedTable + "'"},
		func(r driver.Rows) error {
			var name string
			err := r.Scan(&name)
			have[name] = true
			return err
		})
	if err != nil {
		return err
	}
	for _, c := range erasedColumnsAdded {
		if have[c.name] {
			continue
		}
		// A second reporter starting at the same moment may have added it.
		if err := s.conn.Exec(ctx, "ALTER TABLE "+erasedTable+" ADD COLUMN "+c.name+" "+c.typ); err != nil && !strings.Contains(err.Error(), "already exists") {
			return fmt.Errorf("adding %s.%s: %w", erasedTable, c.name, err)
		}
	}
	return nil
}

func (s *Store) ctx(ctx context.Context) context.Context {
	secs := int(math.Ceil(s.timeout.Seconds()))
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_execution_time": secs}))
}

func (s *Store) observe(name string, start time.Time, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	s.duration.WithLabelValues(name, outcome).Observe(time.Since(start).Seconds())
}

// rows runs q and calls scan for each row.
func (s *Store) rows(ctx context.Context, name string, q Query, scan func(driver.Rows) error) (err error) {
	start := time.Now()
	defer func() { s.observe(name, start, err) }()
	rows, err := s.conn.Query(s.ctx(ctx), q.SQL, q.Args...)
	if err != nil {
		return fmt.Errorf("%s query: %w", name, err)
	}
	for rows.Next() {
		if err := scan(rows); err != nil {
			return errors.Join(fmt.Errorf("%s query: %w", name, err), rows.Close())
		}
	}
	if err := rows.Err(); err != nil {
		return errors.Join(fmt.Errorf("%s query: %w", name, err), rows.Close())
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("%s query: %w", name, err)
	}
	return nil
}

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
	q, err := sc.Aggregate(p)
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
	q, err := sc.Timeseries(p, iv)
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
	q, err := sc.Breakdown(p, d, limit)
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

// Erasure is the state of one visitor's erasure.
type Erasure struct {
	ClientID    string `json:"client_id"`
	VisitorID   uint64 `json:"visitor_id"`
	RequestedAt string `json:"requested_at"`
	// State is pending (waiting for the next batch of mutations),
	// running (mutations or the views' rebuild not done) or done.
	State string `json:"state"`
	// Done is true once every mutation is done and the aggregate views
	// were rebuilt without the visitor (ViewsRebuilt) and those rebuilds'
	// own mutations are done too.
	Done         bool       `json:"done"`
	ViewsRebuilt bool       `json:"views_rebuilt"`
	Mutations    []Mutation `json:"mutations"`
}

// Mutation is one ClickHouse mutation of an erasure.
type Mutation struct {
	Table      string `json:"table"`
	MutationID string `json:"mutation_id"`
	Done       bool   `json:"done"`
}

// erasureTargets lists the MergeTree tables of the database that hold a
// client's visitors, so erasure covers the events table and whatever the
// storage adds later without a change here. A table with a plain UInt64
// visitor_id is erased by visitor; one with a UInt64 session_id but an
// aggregated visitor_id (the sinker's sessions_daily_v2) by the visitor's
// sessions. Tables holding visitor ids only inside aggregate states
// (uniqExact per hour or day) cannot lose one visitor row by row: once the
// events mutation is done, ErasureStatus rebuilds the affected days of
// every aggregate view from events (schema.RebuildViews).
const erasureColumnsSQL = `SELECT c.table, c.name, c.type FROM system.columns AS c
ALL INNER JOIN (SELECT name AS table FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree') AS t USING table
WHERE c.database = currentDatabase() AND c.name IN ('client_id', 'visitor_id', 'session_id') AND c.table != '` + erasedTable + `'
ORDER BY c.table`

// The erasure's own statements; named, so the current-engine test can run
// them too. Each is scoped by its client_id argument.
const (
	// visitorSessionsSQL reads a visitor's sessions and the days of their
	// events directly, not through the scoped builder, which already hides
	// erased visitors.
	visitorSessionsSQL = "SELECT session_id, toString(min(toDate(timestamp))), toString(max(toDate(timestamp))) FROM events WHERE client_id = ? AND visitor_id = ? GROUP BY session_id"
	// latestMutationSQL finds the mutation just made on a table: the
	// newest one whose command names the client.
	latestMutationSQL = `SELECT mutation_id FROM system.mutations WHERE database = currentDatabase() AND table = ? AND position(command, ?) > 0
ORDER BY create_time DESC, mutation_id DESC LIMIT 1`
	recordErasureSQL = "INSERT INTO " + erasedTable + " (client_id, visitor_id, requested_at, mutations, first_day, last_day, views_rebuilt)"
	erasureSQL       = `SELECT toString(requested_at), mutations, toUInt16(first_day), toUInt16(last_day), views_rebuilt FROM ` + erasedTable + ` WHERE client_id = ? AND visitor_id = ?
ORDER BY requested_at DESC, views_rebuilt DESC, length(mutations) DESC LIMIT 1`
	mutationDoneSQL = "SELECT is_done FROM system.mutations WHERE database = currentDatabase() AND table = ? AND mutation_id = ?"
	// clusterMutationsPendingSQL counts, over one replica of every shard,
	// the table's mutations naming the client that are not done.
	clusterMutationsPendingSQL = "SELECT count() FROM cluster(?, system, mutations) WHERE database = ? AND table = ? AND is_done = 0 AND position(command, ?) > 0"
)

type erasureTarget struct {
	table     string
	bySession bool
}

func (s *Store) erasureTargets(ctx context.Context) ([]erasureTarget, error) {
	cols := map[string]map[string]string{}
	var order []string
	err := s.rows(ctx, "erase_tables", Query{SQL: erasureColumnsSQL}, func(r driver.Rows) error {
		var t, name, typ string
		if err := r.Scan(&t, &name, &typ); err != nil {
			return err
		}
		if cols[t] == nil {
			cols[t] = map[string]string{}
			order = append(order, t)
		}
		cols[t][name] = typ
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []erasureTarget
	for _, t := range order {
		c := cols[t]
		switch {
		case c["client_id"] == "":
		case c["visitor_id"] == "UInt64":
			out = append(out, erasureTarget{table: t})
		case c["session_id"] == "UInt64":
			out = append(out, erasureTarget{table: t, bySession: true})
		}
	}
	return out, nil
}

// erasureRecord is one row of erasedTable.
type erasureRecord struct {
	requestedAt       time.Time
	mutations         []string  // "table\x00mutation_id"
	firstDay, lastDay time.Time // UTC days of the visitor's events; zero when none
	viewsRebuilt      bool
}

// Erase records the erasure of one visitor (hiding them from every read at
// once), starts a DELETE mutation on every table holding visitors, and
// returns the erasure's state. The aggregate views follow once those
// mutations are done (see ErasureStatus).
func (s *Store) Erase(ctx context.Context, sc Scope, visitorID uint64, now time.Time) (Erasure, error) {
	if err := sc.check(); err != nil {
		return Erasure{}, err
	}
	if err := s.checkLayout(ctx); err != nil {
		return Erasure{}, err
	}
	// The visitor's days, read before the events go: the views are
	// rebuilt for those days.
	rec := erasureRecord{requestedAt: now.UTC().Truncate(time.Second)}
	err := s.rows(ctx, "erase_sessions", Query{
		SQL:  visitorSessionsSQL,
		Args: []any{sc.clientID, visitorID},
	}, func(r driver.Rows) error {
		var id uint64
		var first, last string
		if err := r.Scan(&id, &first, &last); err != nil {
			return err
		}
		f, err1 := time.Parse(time.DateOnly, first)
		l, err2 := time.Parse(time.DateOnly, last)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		if rec.firstDay.IsZero() || f.Before(rec.firstDay) {
			rec.firstDay = f
		}
		if l.After(rec.lastDay) {
			rec.lastDay = l
		}
		return nil
	})
	if err != nil {
		return Erasure{}, err
	}
	// requested_at has whole seconds, and of records with the same one the
	// finished record wins (erasureSQL): a second request within the
	// second of the last (the background loop erasing replayed rows right
	// after an erasure finished) would report that one as its own state.
	switch prev, err := s.erasureRecord(ctx, sc, visitorID); {
	case errors.Is(err, ErrNoErasure):
	case err != nil:
		return Erasure{}, err
	case !rec.requestedAt.After(prev.requestedAt):
		rec.requestedAt = prev.requestedAt.Add(time.Second)
	}
	// The tombstone hides the visitor from every read at once; the
	// mutations follow in the next batch (FinishErasures). A visitor with
	// no stored events needs none: the erasure is done as recorded, and
	// the sinker drops their events from now on.
	rec.viewsRebuilt = rec.firstDay.IsZero()
	if err := s.recordErasure(ctx, sc, visitorID, rec); err != nil {
		return Erasure{}, err
	}
	return s.ErasureStatus(ctx, sc, visitorID)
}

// mutate runs one ALTER ... DELETE of the scope's client on table and
// returns its mutation id.
func (s *Store) mutate(ctx context.Context, sc Scope, table string, q Query) (string, error) {
	before, err := s.latestMutation(ctx, sc, table)
	if err != nil {
		return "", err
	}
	start := time.Now()
	err = s.conn.Exec(ctx, q.SQL, q.Args...)
	s.observe("erase", start, err)
	if err != nil {
		return "", err
	}
	return s.newMutation(ctx, sc, table, before)
}

// newMutation waits for the mutation of the client on table that follows
// before (the newest one listed before the ALTER) and returns its id. A
// MergeTree lists its mutation at once; a replicated table once it loaded
// it from ZooKeeper, shortly after the ALTER returned.
func (s *Store) newMutation(ctx context.Context, sc Scope, table, before string) (string, error) {
	// Bounded also when the caller's context is not (the background loop).
	ctx, cancel := context.WithTimeout(ctx, mutationShowTimeout)
	defer cancel()
	for {
		id, err := s.latestMutation(ctx, sc, table)
		if err != nil || id != before {
			return id, err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("the mutation of %s did not show in system.mutations: %w", table, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// mutationShowTimeout bounds the wait for a mutation to be listed.
const mutationShowTimeout = 30 * time.Second

func (s *Store) latestMutation(ctx context.Context, sc Scope, table string) (string, error) {
	var id string
	err := s.rows(ctx, "erase", Query{
		SQL:  latestMutationSQL,
		Args: []any{table, quoteLiteral(sc.clientID)},
	}, func(r driver.Rows) error { return r.Scan(&id) })
	return id, err
}

func (s *Store) recordErasure(ctx context.Context, sc Scope, visitorID uint64, rec erasureRecord) error {
	batch, err := s.conn.PrepareBatch(ctx, recordErasureSQL)
	if err != nil {
		return fmt.Errorf("recording erasure: %w", err)
	}
	if err := batch.Append(erasureRow(sc.clientID, visitorID, rec)...); err != nil {
		return errors.Join(fmt.Errorf("recording erasure: %w", err), batch.Abort())
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("recording erasure: %w", err)
	}
	return nil
}

// ErrLayoutMismatch is returned by Erase when the events table is laid out
// for a cluster and the reporter is not (or the other way round): its
// mutations would miss the shards, or name tables that do not exist.
var ErrLayoutMismatch = errors.New("erasure refused: the reporter's -clickhouse-cluster does not match the events table (set it as for the sinker)")

// eventsEngineSQL reads the engine of the events table.
const eventsEngineSQL = "SELECT engine FROM system.tables WHERE database = currentDatabase() AND name = 'events'"

// ErrNoErasure is returned for the status of a visitor never erased.
var ErrNoErasure = errors.New("no erasure requested for this visitor")

// ReplayWindow is how long after an erasure its visitor's events may come
// back: a Kafka replay (an offset reset, a new consumer group) re-inserts
// what the topics still hold, and the pipeline's topics keep records for
// seven days by default. The sinker drops events of erased visitors; this
// catches the ones inserted before it learned of the erasure.
const ReplayWindow = 7 * 24 * time.Hour

// recentErasuresSQL lists the erasures done (views rebuilt for the latest
// request) and requested since a time, and returnedEventsSQL counts a
// visitor's rows that are back in the events table. Both are scoped by
// their client_id argument or by the erasure records themselves.
const (
	recentErasuresSQL = `SELECT client_id, visitor_id FROM ` + erasedTable + `
GROUP BY client_id, visitor_id
HAVING max(requested_at) >= toDateTime(?) AND maxIf(requested_at, views_rebuilt = 1) = max(requested_at)`
	returnedEventsSQL = "SELECT count() FROM events WHERE client_id = ? AND visitor_id = ?"
)

// EraseReturned erases again every visitor erased within ReplayWindow
// before now whose events are back in the events table, and returns how
// many it erased again.
func (s *Store) EraseReturned(ctx context.Context, now time.Time) (int, error) {
	list, err := s.visitors(ctx, "recent_erasures", Query{
		SQL:  recentErasuresSQL,
		Args: []any{now.Add(-ReplayWindow).UTC().Format(time.DateTime)},
	})
	if err != nil {
		return 0, err
	}
	again := 0
	var errs []error
	for _, e := range list {
		var n uint64
		err := s.rows(ctx, "returned_events", Query{SQL: returnedEventsSQL, Args: []any{e.client, e.visitor}},
			func(r driver.Rows) error { return r.Scan(&n) })
		if err == nil && n > 0 {
			_, err = s.Erase(ctx, Scope{clientID: e.client}, e.visitor, now)
			again++
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("client %s visitor %d: %w", e.client, e.visitor, err))
		}
	}
	return again, errors.Join(errs...)
}

// erasedVisitor is one visitor of one client, as the erasure queries list
// them.
type erasedVisitor struct {
	client  string
	visitor uint64
}

// visitors runs q, which selects client_id and visitor_id.
func (s *Store) visitors(ctx context.Context, name string, q Query) ([]erasedVisitor, error) {
	var list []erasedVisitor
	err := s.rows(ctx, name, q, func(r driver.Rows) error {
		var v erasedVisitor
		err := r.Scan(&v.client, &v.visitor)
		list = append(list, v)
		return err
	})
	return list, err
}

func (s *Store) erasureRecord(ctx context.Context, sc Scope, visitorID uint64) (erasureRecord, error) {
	var rec erasureRecord
	var found bool
	err := s.rows(ctx, "erasure_status", Query{
		SQL:  erasureSQL,
		Args: []any{sc.clientID, visitorID},
	}, func(r driver.Rows) error {
		found = true
		var at string
		var first, last uint16 // days since 1970-01-01; 0 when the visitor had no events
		var rebuilt uint8
		if err := r.Scan(&at, &rec.mutations, &first, &last, &rebuilt); err != nil {
			return err
		}
		var err error
		rec.requestedAt, err = time.Parse(time.DateTime, at)
		if first != 0 {
			rec.firstDay, rec.lastDay = time.Unix(int64(first)*86400, 0).UTC(), time.Unix(int64(last)*86400, 0).UTC()
		}
		rec.viewsRebuilt = rebuilt == 1
		return err
	})
	if err != nil {
		return erasureRecord{}, err
	}
	if !found {
		return erasureRecord{}, ErrNoErasure
	}
	return rec, nil
}

// erasureState reads the state of rec's mutations. Done means the
// mutations are; the caller adds the views' part.
func (s *Store) erasureState(ctx context.Context, sc Scope, visitorID uint64, rec erasureRecord) (Erasure, error) {
	e := Erasure{ClientID: sc.clientID, VisitorID: visitorID, RequestedAt: rec.requestedAt.Format(time.DateTime),
		ViewsRebuilt: rec.viewsRebuilt, Mutations: []Mutation{}, Done: true}
	for _, m := range rec.mutations {
		table, id, _ := strings.Cut(m, "\x00")
		mu := Mutation{Table: table, MutationID: id, Done: true}
		err := s.rows(ctx, "erasure_status", Query{
			SQL:  mutationDoneSQL,
			Args: []any{table, id},
		}, func(r driver.Rows) error {
			var done uint8
			if err := r.Scan(&done); err != nil {
				return err
			}
			mu.Done = done == 1
			return nil
		})
		if err != nil {
			return Erasure{}, err
		}
		if mu.Done && s.layout.Cluster != "" {
			// Each shard numbers its mutations; the one recorded is this
			// node's. The others are done when no shard has one of the
			// client's mutations of the table pending (a later one of the
			// same client may keep it pending longer, never shorter).
			err := s.rows(ctx, "erasure_status", Query{
				SQL:  clusterMutationsPendingSQL,
				Args: []any{s.layout.Cluster, s.layout.Database, table, quoteLiteral(sc.clientID)},
			}, func(r driver.Rows) error {
				var pending uint64
				err := r.Scan(&pending)
				mu.Done = pending == 0
				return err
			})
			if err != nil {
				return Erasure{}, err
			}
		}
		e.Done = e.Done && mu.Done
		e.Mutations = append(e.Mutations, mu)
	}
	return e, nil
}

// quoteLiteral renders s as ClickHouse shows a string literal in a
// mutation's command.
func quoteLiteral(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
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

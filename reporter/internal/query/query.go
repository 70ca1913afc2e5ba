// Package query builds and runs the reporter's ClickHouse queries, always
// scoped to one client and one time range, with every value bound as a
// parameter.
package query

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrNoClient is returned when a query is built without a client id: every
// query the reporter runs must be scoped to exactly one client.
var ErrNoClient = errors.New("query: client id is required")

// ErrBadRange is returned when a range does not end after it starts.
var ErrBadRange = errors.New("query: range must end after it starts")

// Range is the half-open time interval [From, To). The events table stores
// whole seconds, so both ends are compared in Unix seconds.
type Range struct {
	From, To time.Time
}

// Totals are the aggregate counts of one client over one range.
type Totals struct {
	// Pageviews is the number of distinct page view events.
	Pageviews uint64 `json:"pageviews"`
	// Visitors is the number of distinct visitor ids.
	Visitors uint64 `json:"visitors"`
	// Events is the number of distinct events of every type.
	Events uint64 `json:"events"`
}

// aggregateSQL counts distinct event ids rather than rows: the events table
// is a ReplacingMergeTree, so a replayed event stays a duplicate row until
// its parts merge, and only uniqExact counts it once before that. Bots are
// excluded from every report. ClickHouse 18.16 has no {name:Type}
// parameters and compares DateTime only with DateTime, hence `?` and
// toDateTime of Unix seconds.
const aggregateSQL = `SELECT
    uniqExactIf(event_id, type = 'pageview') AS pageviews,
    uniqExact(visitor_id) AS visitors,
    uniqExact(event_id) AS events
FROM events
WHERE client_id = ?
  AND timestamp >= toDateTime(?) AND timestamp < toDateTime(?)
  AND is_bot = 0`

// Aggregate returns the SQL and bound arguments of the totals query for
// clientID over r. The client id is a required argument so that no caller
// can forget the tenant filter.
func Aggregate(clientID string, r Range) (string, []any, error) {
	if clientID == "" {
		return "", nil, ErrNoClient
	}
	if !r.To.After(r.From) {
		return "", nil, fmt.Errorf("%w: from %s, to %s", ErrBadRange, r.From.Format(time.RFC3339), r.To.Format(time.RFC3339))
	}
	return aggregateSQL, []any{clientID, r.From.Unix(), r.To.Unix()}, nil
}

// Store runs report queries on a ClickHouse connection and times them.
type Store struct {
	conn     driver.Conn
	duration *prometheus.HistogramVec
}

// NewStore returns a Store on conn whose query durations are registered
// with reg as alumini_reporter_clickhouse_query_duration_seconds.
func NewStore(conn driver.Conn, reg prometheus.Registerer) (*Store, error) {
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "alumini_reporter_clickhouse_query_duration_seconds",
		Help:    "Time ClickHouse took to answer a report query, by query and outcome.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"query", "outcome"})
	if err := reg.Register(duration); err != nil {
		return nil, fmt.Errorf("registering query metrics: %w", err)
	}
	return &Store{conn: conn, duration: duration}, nil
}

// Aggregate returns the totals of clientID over r.
func (s *Store) Aggregate(ctx context.Context, clientID string, r Range) (Totals, error) {
	sql, args, err := Aggregate(clientID, r)
	if err != nil {
		return Totals{}, err
	}
	start := time.Now()
	var t Totals
	err = s.conn.QueryRow(ctx, sql, args...).Scan(&t.Pageviews, &t.Visitors, &t.Events)
	s.observe("aggregate", start, err)
	if err != nil {
		return Totals{}, fmt.Errorf("aggregate query for client %s: %w", clientID, err)
	}
	return t, nil
}

func (s *Store) observe(query string, start time.Time, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	s.duration.WithLabelValues(query, outcome).Observe(time.Since(start).Seconds())
}

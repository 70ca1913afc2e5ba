package query

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/maypok86/otter/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/chschema"
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
	layout chschema.Target
	// sampleAbove is the number of events above which reports read a
	// sample (SampleAbove); 0 never samples.
	sampleAbove uint64
	// volumes holds the event counts Sample looked up, for volumeTTL: the
	// dashboard asks a dozen reports of one range at once and again every
	// minute, and a sample one step off for a few minutes changes nothing.
	volumes *otter.Cache[volumeKey, uint64]
	// rollup makes reports read the rolled-up sessions where they can
	// (RollUp), exactly up to sampleRolledAbove events.
	rollup            bool
	sampleRolledAbove uint64
	// rollFullAt is when Roll last compared every day's events.
	rollFullAt time.Time
}

// OnCluster tells the store that the tables are laid out as the sinker's
// cluster mode lays them out on cluster (in database): Init migrates ON
// CLUSTER, and erasure deletes on every shard, ON CLUSTER. Call it before
// Init.
func (s *Store) OnCluster(database, cluster string) {
	s.layout = chschema.Target{Database: database, Cluster: cluster}
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

// Init brings the database's schema up to date (chschema.Apply), as the
// sinker does when it starts: the erasure table the reporter writes is
// part of it, and whichever service starts first migrates. Call it after
// OnCluster.
func (s *Store) Init(ctx context.Context, log *zap.Logger) error {
	var opts []chschema.Option
	if s.layout.Cluster != "" {
		opts = append(opts, chschema.OnCluster(s.layout.Cluster))
	}
	if err := chschema.Apply(ctx, s.conn, log, opts...); err != nil {
		return fmt.Errorf("migrating the database: %w", err)
	}
	return nil
}

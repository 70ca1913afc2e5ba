// Package erased keeps the sinker's copy of the visitors whose erasure was
// requested, so that a Kafka replay cannot store their events again.
//
// The table is chschema.ErasedVisitors, which the reporter writes (Erase).
// The sinker reads only its client_id and visitor_id: one or more rows per
// erased visitor, rows never deleted. The sinker's migrations create it, so
// it is missing only from a database not migrated yet.
package erased

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/chschema"
	"github.com/aluminiapp/pipeline/lib/periodic"
)

// Table is the erasure table the set is loaded from.
const Table = chschema.ErasedVisitors

// loadSQL reads every erased pair. The table holds up to three records per
// erasure (see the reporter's Store.Erase); the map absorbs the repeats,
// so the server streams rows without building a hash table for DISTINCT.
const loadSQL = "SELECT client_id, visitor_id FROM " + Table

// WarnAbove is the size past which the set is logged as suspicious:
// erasures are rare, and every sinker holds each pair in memory (some
// tens of bytes).
const WarnAbove = 1_000_000

// refreshTimeout bounds one load.
const refreshTimeout = time.Minute

// codeUnknownTable is ClickHouse's UNKNOWN_TABLE.
const codeUnknownTable = 60

// ErrNoTable is what Load returns while the database has no table (not
// migrated to schema version 6 yet); the set stays as it was.
var ErrNoTable = errors.New(Table + " does not exist yet")

// Set is the erased (client_id, visitor_id) pairs, swapped whole on every
// refresh. Lookups take no lock and are safe from any goroutine.
type Set struct {
	conn driver.Conn
	log  *zap.Logger
	// Client ids map to their erased visitors: a lookup for a client with
	// no erasures is one miss in a small map, and each client id is held
	// once rather than once per visitor.
	pairs atomic.Pointer[map[string]map[uint64]struct{}]

	size         prometheus.Gauge
	refreshFails prometheus.Counter
	lastRefresh  prometheus.Gauge
	warned       bool // the size warning was logged; used by the refreshing goroutine only
	tableSeen    bool // same
}

// New returns an empty Set loaded from conn's default database, with its
// metrics registered on reg.
func New(conn driver.Conn, log *zap.Logger, reg prometheus.Registerer) *Set {
	s := &Set{
		conn: conn,
		log:  log.Named("erased"),
		size: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "alumini_sinker_erased_visitors",
			Help: "Erased (client, visitor) pairs whose events the sinker drops.",
		}),
		refreshFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alumini_sinker_erased_refresh_failures_total",
			Help: "Loads of " + Table + " that failed for a reason other than the table not existing yet.",
		}),
		lastRefresh: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "alumini_sinker_erased_refresh_timestamp_seconds",
			Help: "Unix time of the last load of " + Table + " that succeeded (or found no table).",
		}),
	}
	reg.MustRegister(s.size, s.refreshFails, s.lastRefresh)
	return s
}

// Contains reports whether the visitor of the client was erased.
func (s *Set) Contains(clientID string, visitorID uint64) bool {
	p := s.pairs.Load()
	if p == nil {
		return false
	}
	_, ok := (*p)[clientID][visitorID]
	return ok
}

// Len is the number of erased pairs.
func (s *Set) Len() int {
	p := s.pairs.Load()
	if p == nil {
		return 0
	}
	n := 0
	for _, v := range *p {
		n += len(v)
	}
	return n
}

// Load reads the table and replaces the set. On any failure, ErrNoTable
// included, the set keeps what it held: an erasure is never forgotten
// because a read failed. Load must not be called concurrently with itself.
func (s *Set) Load(ctx context.Context) error {
	rows, err := s.conn.Query(ctx, loadSQL)
	if err != nil {
		var ex *clickhouse.Exception
		if errors.As(err, &ex) && ex.Code == codeUnknownTable {
			return ErrNoTable
		}
		return fmt.Errorf("loading %s: %w", Table, err)
	}
	next := map[string]map[uint64]struct{}{}
	n := 0
	for rows.Next() {
		var client string
		var visitor uint64
		if err := rows.Scan(&client, &visitor); err != nil {
			return errors.Join(fmt.Errorf("loading %s: %w", Table, err), rows.Close())
		}
		vs := next[client]
		if vs == nil {
			vs = map[uint64]struct{}{}
			next[client] = vs
		}
		if _, dup := vs[visitor]; !dup {
			vs[visitor] = struct{}{}
			n++
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("loading %s: %w", Table, err)
	}
	s.pairs.Store(&next)
	s.size.Set(float64(n))
	if n > WarnAbove && !s.warned {
		s.log.Warn("the erased-visitor set is unexpectedly large; each sinker holds it in memory",
			zap.Int("pairs", n), zap.Int("warn_above", WarnAbove))
	}
	s.warned = n > WarnAbove
	return nil
}

// Refresh is Load with the failures handled as Run does: a missing table
// means nobody was erased yet, and other failures keep the
// last set and are retried at the next interval.
func (s *Set) Refresh(ctx context.Context) {
	// A hung connection turns into a failed refresh, retried next time.
	lctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	err := s.Load(lctx)
	cancel()
	switch {
	case err == nil:
		if !s.tableSeen {
			s.log.Info("erased visitors loaded", zap.Int("pairs", s.Len()))
		}
		s.tableSeen = true
		s.lastRefresh.SetToCurrentTime()
	case errors.Is(err, ErrNoTable):
		// Migration 6 creates the table; until then nobody was erased.
		s.log.Debug("no erased visitors yet", zap.Error(err))
		s.lastRefresh.SetToCurrentTime()
	case ctx.Err() != nil:
	default:
		s.refreshFails.Inc()
		s.log.Warn("refreshing erased visitors failed; keeping the last set", zap.Int("pairs", s.Len()), zap.Error(err))
	}
}

// Run refreshes the set every interval until ctx ends. The first refresh
// is the caller's (Refresh before consuming), so Run waits one interval
// before its own.
func (s *Set) Run(ctx context.Context, interval time.Duration) {
	periodic.Run(ctx, interval, func() { s.Refresh(ctx) })
}

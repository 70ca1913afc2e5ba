package query

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/aluminiapp/pipeline/lib/chschema"
)

// Erasure is the state of one visitor's erasure.
type Erasure struct {
	ClientID    string `json:"client_id"`
	VisitorID   uint64 `json:"visitor_id"`
	RequestedAt string `json:"requested_at"`
	// State is pending (waiting for the next batch of mutations),
	// running (mutations not done) or done.
	State string `json:"state"`
	// Done is true once every mutation is done and the erasure was
	// recorded as finished.
	Done      bool       `json:"done"`
	Mutations []Mutation `json:"mutations"`
}

// Mutation is one ClickHouse mutation of an erasure.
type Mutation struct {
	Table      string `json:"table"`
	MutationID string `json:"mutation_id"`
	Done       bool   `json:"done"`
}

// erasureTargets lists the MergeTree tables of the database that hold a
// client's visitors (a client_id and a plain UInt64 visitor_id), so
// erasure covers the events table and whatever the storage adds later
// without a change here. A table holding visitor ids only inside aggregate
// states could not lose one visitor row by row; the schema has none since
// migration 7 dropped the report views.
const erasureColumnsSQL = `SELECT c.table, c.name, c.type FROM system.columns AS c
ALL INNER JOIN (SELECT name AS table FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree') AS t USING table
WHERE c.database = currentDatabase() AND c.name IN ('client_id', 'visitor_id') AND c.table != '` + erasedTable + `'
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

func (s *Store) erasureTargets(ctx context.Context) ([]string, error) {
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
	var out []string
	for _, t := range order {
		if c := cols[t]; c["client_id"] != "" && c["visitor_id"] == "UInt64" {
			out = append(out, t)
		}
	}
	return out, nil
}

// erasureRecord is one row of erasedTable.
type erasureRecord struct {
	requestedAt       time.Time
	mutations         []string  // "table\x00mutation_id"
	firstDay, lastDay time.Time // UTC days of the visitor's events; zero when none
	// finished is the record that closes the erasure, stored in the
	// column views_rebuilt: finishing an erasure meant rebuilding the
	// report views until migration 7 dropped them.
	finished bool
}

// Erase records the erasure of one visitor (hiding them from every read at
// once), starts a DELETE mutation on every table holding visitors, and
// returns the erasure's state (see ErasureStatus).
func (s *Store) Erase(ctx context.Context, sc Scope, visitorID uint64, now time.Time) (Erasure, error) {
	if err := sc.check(); err != nil {
		return Erasure{}, err
	}
	if err := s.checkLayout(ctx); err != nil {
		return Erasure{}, err
	}
	// The visitor's days, read before the events go, for the record; a
	// visitor with none has nothing to delete.
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
	rec.finished = rec.firstDay.IsZero()
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
		Args: []any{table, chschema.QuoteString(sc.clientID)},
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

// recentErasuresSQL lists the erasures finished (the latest request has a
// finished record) and requested since a time, and returnedEventsSQL counts a
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
		rec.finished = rebuilt == 1
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
// mutations are; the caller adds whether the erasure was finished.
func (s *Store) erasureState(ctx context.Context, sc Scope, visitorID uint64, rec erasureRecord) (Erasure, error) {
	e := Erasure{ClientID: sc.clientID, VisitorID: visitorID, RequestedAt: rec.requestedAt.Format(time.DateTime),
		Mutations: []Mutation{}, Done: true}
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
				Args: []any{s.layout.Cluster, s.layout.Database, table, chschema.QuoteString(sc.clientID)},
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

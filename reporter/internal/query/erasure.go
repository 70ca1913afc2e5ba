package query

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/aluminiapp/pipeline/lib/chschema"
)

// Erasures are carried out in batches so that no client can make the
// database rewrite everyone's rows at will: a request only records the
// visitor (hidden from every read at once), and FinishErasures, which the
// reporter runs every -erasure-interval, starts at most one DELETE
// mutation per table for all the visitors recorded meanwhile, and records
// the erasures whose mutations are done as finished.

// DefaultErasureInterval is the reporter's -erasure-interval.
const DefaultErasureInterval = time.Minute

// maxErasureBatch bounds the visitors one batch names, which keeps the
// statement well under ClickHouse's max_query_size (256 KiB); the rest
// wait for the next batch.
const maxErasureBatch = 2000

// Erasure states (Erasure.State).
const (
	ErasurePending = "pending"
	ErasureRunning = "running"
	ErasureDone    = "done"
)

// pendingErasuresSQL lists the erasures not finished yet: the latest
// request of each visitor has no finished record (views_rebuilt, see
// erasureRecord).
const pendingErasuresSQL = `SELECT client_id, visitor_id FROM ` + erasedTable + `
GROUP BY client_id, visitor_id HAVING maxIf(requested_at, views_rebuilt = 1) < max(requested_at)
ORDER BY min(requested_at), client_id, visitor_id`

// ErasureStatus reports the state of a visitor's latest erasure, from
// system.mutations. It changes nothing: FinishErasures moves erasures on,
// so polling the status cannot start mutations. A mutation ClickHouse no
// longer lists (it forgets finished ones after a while) counts as done.
func (s *Store) ErasureStatus(ctx context.Context, sc Scope, visitorID uint64) (Erasure, error) {
	if err := sc.check(); err != nil {
		return Erasure{}, err
	}
	rec, err := s.erasureRecord(ctx, sc, visitorID)
	if err != nil {
		return Erasure{}, err
	}
	e, err := s.erasureState(ctx, sc, visitorID, rec)
	if err != nil {
		return Erasure{}, err
	}
	switch {
	case !rec.finished && len(rec.mutations) == 0:
		e.State, e.Done = ErasurePending, false
	case !rec.finished || !e.Done:
		e.State, e.Done = ErasureRunning, false
	default:
		e.State = ErasureDone
	}
	return e, nil
}

// pendingErasure is a visitor whose erasure is not finished, with its
// latest record.
type pendingErasure struct {
	erasedVisitor
	rec erasureRecord
}

// FinishErasures moves the pending erasures on, with at most one mutation
// per table: one DELETE per table holding visitor rows covers every
// visitor recorded since the last batch, and the erasures whose rows are
// gone are recorded as finished. It returns how many erasures are still
// pending.
func (s *Store) FinishErasures(ctx context.Context) (int, error) {
	list, err := s.visitors(ctx, "pending_erasures", Query{SQL: pendingErasuresSQL})
	if err != nil {
		return 0, err
	}
	var fresh, deleted []pendingErasure
	var errs []error
	finished := 0
	for _, v := range list {
		sc := Scope{clientID: v.client}
		rec, err := s.erasureRecord(ctx, sc, v.visitor)
		if err != nil {
			errs = append(errs, fmt.Errorf("client %s visitor %d: %w", v.client, v.visitor, err))
			continue
		}
		p := pendingErasure{v, rec}
		if len(rec.mutations) == 0 {
			if len(fresh) < maxErasureBatch {
				fresh = append(fresh, p)
			}
			continue
		}
		e, err := s.erasureState(ctx, sc, v.visitor, rec)
		if err != nil {
			errs = append(errs, fmt.Errorf("client %s visitor %d: %w", v.client, v.visitor, err))
			continue
		}
		if e.Done {
			deleted = append(deleted, p)
		}
	}
	if err := s.recordFinished(ctx, deleted); err != nil {
		errs = append(errs, err)
	} else {
		finished = len(deleted)
	}
	if err := s.deleteErased(ctx, fresh); err != nil {
		errs = append(errs, err)
	}
	return len(list) - finished, errors.Join(errs...)
}

// deleteErased starts one DELETE per table holding visitor rows for all of
// batch and records the mutations with each erasure.
func (s *Store) deleteErased(ctx context.Context, batch []pendingErasure) error {
	if len(batch) == 0 {
		return nil
	}
	if err := s.checkLayout(ctx); err != nil {
		return err
	}
	targets, err := s.erasureTargets(ctx)
	if err != nil {
		return err
	}
	var mutations []string
	for _, table := range targets {
		q, err := s.eraseVisitorsBatch(table, batch)
		if err != nil {
			return err
		}
		id, err := s.mutate(ctx, Scope{clientID: batch[0].client}, table, q)
		if err != nil {
			return fmt.Errorf("erasing %d visitors from %s: %w", len(batch), table, err)
		}
		mutations = append(mutations, table+"\x00"+id)
	}
	// The events table is always among the targets, so every record
	// now has a mutation and is no longer pending.
	for i := range batch {
		batch[i].rec.mutations = mutations
	}
	return s.recordErasures(ctx, batch)
}

// recordFinished records the erasures of deleted, whose visitors' rows
// are gone, as finished.
func (s *Store) recordFinished(ctx context.Context, deleted []pendingErasure) error {
	for i := range deleted {
		deleted[i].rec.finished = true
	}
	return s.recordErasures(ctx, deleted)
}

// checkLayout refuses erasure when the events table is laid out for a
// cluster and the reporter is not, or the other way round.
func (s *Store) checkLayout(ctx context.Context) error {
	var engine string
	if err := s.rows(ctx, "erase_engine", Query{SQL: eventsEngineSQL}, func(r driver.Rows) error { return r.Scan(&engine) }); err != nil {
		return err
	}
	if (engine == "Distributed") != (s.layout.Cluster != "") {
		return fmt.Errorf("%w: events is a %s table, the reporter runs with -clickhouse-cluster=%q", ErrLayoutMismatch, engine, s.layout.Cluster)
	}
	return nil
}

// byClient groups batch's visitors by client, in the batch's order.
func byClient(batch []pendingErasure) ([]string, map[string][]uint64) {
	var clients []string
	ids := map[string][]uint64{}
	for _, p := range batch {
		if ids[p.client] == nil {
			clients = append(clients, p.client)
		}
		ids[p.client] = append(ids[p.client], p.visitor)
	}
	return clients, ids
}

// eraseVisitorsBatch is the mutation deleting batch's visitors from table.
func (s *Store) eraseVisitorsBatch(table string, batch []pendingErasure) (Query, error) {
	clients, ids := byClient(batch)
	return batchDelete(s.layout, table, "visitor_id", clients, ids)
}

// batchDelete is the mutation deleting from table the rows whose column
// (visitor_id) is one of ids[c] of client c, for each client: every id
// only under its own client.
func batchDelete(l chschema.Target, table, column string, clients []string, ids map[string][]uint64) (Query, error) {
	if len(clients) == 0 {
		return Query{}, errors.New("erase: nothing to delete")
	}
	target, err := alterTarget(l, table)
	if err != nil {
		return Query{}, err
	}
	var b stmt
	b.sql("ALTER TABLE " + target + " DELETE WHERE ")
	for i, c := range clients {
		if c == "" {
			return Query{}, errors.New("erase: empty client id")
		}
		if i > 0 {
			b.sql(" OR ")
		}
		b.sql("(client_id = ").bind(c).sql(" AND " + column + " IN (")
		for j, id := range ids[c] {
			if j > 0 {
				b.sql(", ")
			}
			b.bind(id)
		}
		b.sql("))")
	}
	return b.query(), nil
}

// recordErasures writes the records of many erasures in one insert.
func (s *Store) recordErasures(ctx context.Context, list []pendingErasure) error {
	if len(list) == 0 {
		return nil
	}
	batch, err := s.conn.PrepareBatch(ctx, recordErasureSQL)
	if err != nil {
		return fmt.Errorf("recording erasures: %w", err)
	}
	for _, p := range list {
		if err := batch.Append(erasureRow(p.client, p.visitor, p.rec)...); err != nil {
			return errors.Join(fmt.Errorf("recording erasures: %w", err), batch.Abort())
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("recording erasures: %w", err)
	}
	return nil
}

// erasureRow is rec as the columns of recordErasureSQL.
func erasureRow(client string, visitorID uint64, rec erasureRecord) []any {
	mutations := rec.mutations
	if mutations == nil {
		mutations = []string{}
	}
	var rebuilt uint8
	if rec.finished {
		rebuilt = 1
	}
	// Date columns take the zero time as 1970-01-01: "no events".
	first, last := rec.firstDay, rec.lastDay
	if first.IsZero() {
		first, last = time.Unix(0, 0).UTC(), time.Unix(0, 0).UTC()
	}
	return []any{client, visitorID, rec.requestedAt, mutations, first, last, rebuilt}
}

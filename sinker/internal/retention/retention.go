// Package retention deletes each client's events older than the client's
// retention period from the events table.
//
// ClickHouse 18.16 has no TTL, and a TTL could not be per client anyway
// without a retention column in every row (the registry, not the event,
// knows the period, and it may change). So the sinker runs a scheduled
// cleanup on every server version: per client, one ALTER TABLE ... DELETE
// mutation, issued only when there is something old to delete, cut at a
// UTC day boundary, so a report of whole days never shows a partial one.
package retention

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/chschema"
)

// Periods returns a client's retention in days; 0 keeps its events forever.
type Periods func(clientID string) (days int, err error)

// Cleaner deletes expired events.
type Cleaner struct {
	conn    driver.Conn
	target  chschema.Target
	periods Periods
	log     *zap.Logger
	now     func() time.Time
}

// New returns a Cleaner over conn's default database, laid out as target
// says (one node or a cluster).
func New(conn driver.Conn, target chschema.Target, periods Periods, log *zap.Logger) *Cleaner {
	return &Cleaner{conn: conn, target: target, periods: periods, log: log, now: time.Now}
}

// Run cleans once per interval until ctx ends. Failures are logged and
// retried at the next interval: a late deletion is not worth stopping the
// sinker for.
func (c *Cleaner) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := c.Once(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("retention cleanup failed; retrying at the next interval", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Once deletes, for every client with a retention period, what is older
// than the start of the UTC day `days` days ago.
func (c *Cleaner) Once(ctx context.Context) error {
	rows, err := c.conn.Query(ctx, "SELECT DISTINCT client_id FROM events")
	if err != nil {
		return fmt.Errorf("listing clients: %w", err)
	}
	var clients []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return errors.Join(err, rows.Close())
		}
		clients = append(clients, id)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("listing clients: %w", err)
	}
	var errs []error
	for _, id := range clients {
		days, err := c.periods(id)
		if err != nil || days <= 0 {
			// An unknown client (removed from the registry) keeps its data:
			// deleting is for an explicit retention period only.
			continue
		}
		cutoff := c.now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -days).Unix()
		if err := c.clean(ctx, id, cutoff); err != nil {
			errs = append(errs, fmt.Errorf("client %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

func (c *Cleaner) clean(ctx context.Context, clientID string, cutoff int64) error {
	var old uint64
	if err := c.conn.QueryRow(ctx, "SELECT count() FROM events WHERE client_id = ? AND timestamp < toDateTime(?)", clientID, cutoff).Scan(&old); err != nil {
		return err
	}
	if old == 0 {
		return nil // a mutation rewrites parts: never issue one for nothing
	}
	// Mutations run asynchronously; a second sinker issuing the same one
	// meanwhile deletes nothing more. Bound arguments are substituted by the
	// driver, so ALTER ... DELETE with ? is safe on 18.16 (only INSERT
	// VALUES waits for a data block).
	if err := c.conn.Exec(ctx, "ALTER TABLE "+c.target.Mutable("events")+" DELETE WHERE client_id = ? AND timestamp < toDateTime(?)", clientID, cutoff); err != nil {
		return err
	}
	c.log.Info("retention: deleting expired events", zap.String("client_id", clientID),
		zap.Time("before", time.Unix(cutoff, 0).UTC()), zap.Uint64("events", old))
	return nil
}

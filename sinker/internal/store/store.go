// Package store is the sinker's ClickHouse side: it creates the database,
// opens the native-protocol connection and inserts batches of events.
package store

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/aluminiapp/pipeline/lib/chconf"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
	"github.com/aluminiapp/pipeline/sinker/schema"
)

// Store inserts events into one database's events table.
type Store struct {
	conn driver.Conn
}

// Open creates the database when it is missing and returns a Store whose
// connection uses it as its default database, which is what the
// migrations and InsertSQL expect.
func Open(ctx context.Context, cfg chconf.Config) (*Store, error) {
	if err := cfg.CreateDatabase(ctx); err != nil {
		return nil, err
	}
	conn, err := cfg.Open()
	if err != nil {
		return nil, err
	}
	return &Store{conn: conn}, nil
}

// New wraps an open connection whose default database holds the events table.
func New(conn driver.Conn) *Store { return &Store{conn: conn} }

// Conn is the underlying connection, for migrations.
func (s *Store) Conn() driver.Conn { return s.conn }

// Ping is a readiness check that ClickHouse answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("clickhouse ping: %w", err)
	}
	return nil
}

// Insert writes events as one native-protocol block. ClickHouse either
// takes the whole block or none of it, so a failed Insert can be retried
// with the same events.
func (s *Store) Insert(ctx context.Context, events []*aluminiv1.Event) error {
	// PrepareBatch, not Exec with bound VALUES: ClickHouse 18.16 waits for a
	// data block after an INSERT sent as a query.
	batch, err := s.conn.PrepareBatch(ctx, schema.InsertSQL)
	if err != nil {
		return fmt.Errorf("preparing insert: %w", err)
	}
	for _, ev := range events {
		if err := batch.Append(schema.Values(ev)...); err != nil {
			// A failed Append already released the batch's connection.
			return fmt.Errorf("appending event %s: %w", ev.EventId, err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("sending %d events: %w", len(events), err)
	}
	return nil
}

// Close closes the connection.
func (s *Store) Close() error { return s.conn.Close() }

// Package store is the sinker's ClickHouse side: it creates the database,
// opens the native-protocol connection and inserts batches of events.
package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
	"github.com/aluminiapp/pipeline/sinker/schema"
)

// ErrBadDatabaseName is returned for a database name that would need quoting.
var ErrBadDatabaseName = errors.New("database name must be letters, digits and underscores, not starting with a digit")

var databaseName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ValidateDatabase checks that name can be used unquoted in statements.
func ValidateDatabase(name string) error {
	if !databaseName.MatchString(name) {
		return fmt.Errorf("%q: %w", name, ErrBadDatabaseName)
	}
	return nil
}

// Options say where ClickHouse is and who the sinker is there.
type Options struct {
	Addr     string
	Database string
	User     string
	Password string
}

// Store inserts events into one database's events table.
type Store struct {
	conn driver.Conn
}

// Open creates the database when it is missing and returns a Store whose
// connection uses it as its default database, which is what the
// migrations and InsertSQL expect.
func Open(ctx context.Context, o Options) (*Store, error) {
	if err := ValidateDatabase(o.Database); err != nil {
		return nil, err
	}
	admin, err := open(o, "default")
	if err != nil {
		return nil, err
	}
	createErr := admin.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+o.Database)
	if cerr := admin.Close(); cerr != nil {
		createErr = errors.Join(createErr, fmt.Errorf("closing clickhouse connection: %w", cerr))
	}
	if createErr != nil {
		return nil, fmt.Errorf("creating database %s at %s: %w", o.Database, o.Addr, createErr)
	}
	conn, err := open(o, o.Database)
	if err != nil {
		return nil, err
	}
	return &Store{conn: conn}, nil
}

func open(o Options, database string) (driver.Conn, error) {
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr: []string{o.Addr},
		Auth: clickhouse.Auth{Database: database, Username: o.User, Password: o.Password},
		// Batches are large and text-heavy: LZ4 makes them several times
		// smaller on the wire for little CPU.
		Compression: &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		DialTimeout: 5 * time.Second,
		// One insert runs at a time; the rest serve migrations and
		// readiness probes.
		MaxOpenConns: 4,
	})
	if err != nil {
		return nil, fmt.Errorf("clickhouse at %s: %w", o.Addr, err)
	}
	return conn, nil
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

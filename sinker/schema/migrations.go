// Package schema owns Alumini's ClickHouse schema: the versioned migrations
// that create it and the mapping of an enriched event onto an events row.
package schema

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"go.uber.org/zap"
)

// Migration is one step of the schema. Statements must be idempotent
// (IF NOT EXISTS and the like): several sinkers may start at once, and a
// crash between a statement and its record runs it again.
type Migration struct {
	Version    uint32
	Name       string
	Statements []string
}

// Migrations are applied in order; append, never edit one that shipped.
var Migrations = []Migration{
	{
		Version: 1,
		Name:    "events table",
		// ReplacingMergeTree keyed on (client, day, event_id) collapses a
		// replayed event into one row when parts merge; until then queries
		// count distinct event ids, so they are right before merges too.
		Statements: []string{`
CREATE TABLE IF NOT EXISTS events
(
    client_id String,
    event_id String,
    type Enum8('unspecified' = 0, 'pageview' = 1, 'custom' = 2, 'identify' = 3),
    name String,
    timestamp DateTime('UTC'),
    received_at DateTime('UTC'),
    url String,
    hostname String,
    path String,
    title String,
    referrer String,
    browser String,
    browser_version String,
    os String,
    os_version String,
    device_type Enum8('unknown' = 0, 'desktop' = 1, 'mobile' = 2, 'tablet' = 3, 'bot' = 4, 'other' = 5),
    is_bot UInt8,
    referrer_source String,
    referrer_medium String,
    search_term String,
    utm_source String,
    utm_medium String,
    utm_campaign String,
    utm_term String,
    utm_content String,
    country String,
    region String,
    city String,
    language String,
    screen_width UInt16,
    screen_height UInt16,
    timezone String,
    visitor_id UInt64,
    session_id UInt64,
    is_new_visitor UInt8,
    previous_visit DateTime('UTC'),
    prop_keys Array(String),
    prop_values Array(String),
    user_id String,
    ip_truncated String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (client_id, toDate(timestamp), event_id)`},
	},
}

// migrationsTable records which migrations ran. ReplacingMergeTree: two
// sinkers racing on the same version leave one row after merges, and
// readers take max(version) anyway.
const migrationsTable = `
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version UInt32,
    name String,
    applied_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY version`

// Applied is the highest migration version recorded in the database.
func Applied(ctx context.Context, conn driver.Conn) (uint32, error) {
	if err := conn.Exec(ctx, migrationsTable); err != nil {
		return 0, fmt.Errorf("creating schema_migrations: %w", err)
	}
	var v uint32
	if err := conn.QueryRow(ctx, "SELECT max(version) FROM schema_migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("reading schema version: %w", err)
	}
	return v, nil
}

// Apply runs every migration newer than the recorded version.
func Apply(ctx context.Context, conn driver.Conn, log *zap.Logger) error {
	current, err := Applied(ctx, conn)
	if err != nil {
		return err
	}
	for _, m := range Migrations {
		if m.Version <= current {
			continue
		}
		for _, stmt := range m.Statements {
			if err := conn.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.Version, m.Name, err)
			}
		}
		if err := record(ctx, conn, m); err != nil {
			return fmt.Errorf("recording migration %d: %w", m.Version, err)
		}
		log.Info("schema migration applied", zap.Uint32("version", m.Version), zap.String("name", m.Name))
	}
	return nil
}

// record inserts a migration's row. It goes through a batch, not Exec with
// bound VALUES, because ClickHouse 18.16 waits for a data block after an
// INSERT statement sent as a query.
func record(ctx context.Context, conn driver.Conn, m Migration) error {
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO schema_migrations (version, name, applied_at)")
	if err != nil {
		return err
	}
	if err := batch.Append(m.Version, m.Name, time.Now().UTC()); err != nil {
		return err
	}
	return batch.Send()
}

// Package chschema owns Alumini's ClickHouse schema, every table the sinker
// and the reporter touch (Tables): the versioned migrations that create it
// (for one node or a cluster, using what the server version offers), the
// mapping of enriched events onto events rows, and the quoting of what DDL
// cannot bind. It is the only place with DDL.
package chschema

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"go.uber.org/zap"
)

// Migration is one step of the schema. Its statements depend on the target
// (server version, cluster or not) and must be idempotent (IF NOT EXISTS,
// idempotent aggregates): several sinkers may start at once, and a crash
// between a statement and its record runs it again.
type Migration struct {
	Version    uint32
	Name       string
	Statements func(t Target) []string
	// Run, when set, runs the migration instead of executing Statements
	// one by one: for a migration that must look at what an interrupted
	// run left (Statements still list what a fresh run executes, for the
	// golden files and the current-engine check).
	Run func(ctx context.Context, conn driver.Conn, t Target, log *zap.Logger) error
}

// Migrations are applied in order; append, never change what one that
// shipped does on a server it already ran on. A migration that adds or
// drops a table changes Tables with it.
var Migrations = []Migration{
	{Version: 1, Name: "events table", Statements: eventsTable},
	{Version: 2, Name: "report views", Statements: reportViews},
	{Version: 3, Name: "event_key column", Statements: eventKeys},
	{Version: 4, Name: "report views over event_key", Statements: keyViews},
	{Version: 5, Name: "sampling key", Statements: samplingKey, Run: resample},
	{Version: 6, Name: "erased_visitors table", Statements: erasedVisitors, Run: upgradeErasedVisitors},
	{Version: 7, Name: "drop report views", Statements: dropReportViews},
	{Version: 8, Name: "rolled-up sessions", Statements: sessionsTables},
}

// eventsTable creates the events table. ReplacingMergeTree keyed on
// (client, day, event_id) collapses a replayed event into one row when
// parts merge; until then queries count distinct event ids (or read with
// FINAL), so they are right before merges too.
func eventsTable(t Target) []string {
	stmts := []string{`
CREATE TABLE IF NOT EXISTS ` + t.Everywhere(t.Local("events")) + `
(
` + eventsColumns(t) + `
)
ENGINE = ` + t.engine("Replacing", "events") + `
PARTITION BY toYYYYMM(timestamp)
ORDER BY (client_id, toDate(timestamp), event_id)`}
	// cityHash64(event_id): every copy of an event lands on one shard, where
	// ReplacingMergeTree can collapse it.
	if d := t.distributed("events", "cityHash64(event_id)"); d != "" {
		stmts = append(stmts, d)
	}
	return stmts
}

// eventsColumns are the columns of migration 1's events table.
func eventsColumns(t Target) string {
	s := t.str()
	props := ""
	if t.MapType() {
		// An alias costs no storage: analysts on current servers get
		// properties['plan'] over the parallel arrays every server has.
		props = ",\n    properties Map(String, String) ALIAS CAST((prop_keys, prop_values), 'Map(String, String)')"
	}
	return `    client_id String,
    event_id String,
    type Enum8('unspecified' = 0, 'pageview' = 1, 'custom' = 2, 'identify' = 3),
    name ` + s + `,
    timestamp DateTime('UTC'),
    received_at DateTime('UTC'),
    url String,
    hostname ` + s + `,
    path String,
    title String,
    referrer String,
    browser ` + s + `,
    browser_version ` + s + `,
    os ` + s + `,
    os_version ` + s + `,
    device_type Enum8('unknown' = 0, 'desktop' = 1, 'mobile' = 2, 'tablet' = 3, 'bot' = 4, 'other' = 5),
    is_bot UInt8,
    referrer_source ` + s + `,
    referrer_medium ` + s + `,
    search_term String,
    utm_source ` + s + `,
    utm_medium ` + s + `,
    utm_campaign ` + s + `,
    utm_term String,
    utm_content String,
    country ` + s + `,
    region ` + s + `,
    city ` + s + `,
    language ` + s + `,
    screen_width UInt16,
    screen_height UInt16,
    timezone ` + s + `,
    visitor_id UInt64,
    session_id UInt64,
    is_new_visitor UInt8,
    previous_visit DateTime('UTC'),
    prop_keys Array(String),
    prop_values Array(String),
    user_id String,
    ip_truncated String` + props
}

// migrationsTable records which migrations ran. ReplacingMergeTree: two
// sinkers racing on the same version leave one row after merges, and
// readers take max(version) anyway. It is local to the node the sinker
// talks to even on a cluster: the DDL it guards runs ON CLUSTER and is
// idempotent, so a sinker on another node repeating it changes nothing.
const migrationsTable = `
CREATE TABLE IF NOT EXISTS ` + SchemaMigrations + `
(
    version UInt32,
    name String,
    applied_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY version`

// Option changes how Apply generates the DDL.
type Option func(*options)

type options struct{ cluster string }

// OnCluster makes Apply generate cluster DDL for the named cluster of the
// server's remote_servers configuration (see Target.Cluster).
func OnCluster(name string) Option { return func(o *options) { o.cluster = name } }

// Applied is the highest migration version recorded in the database.
func Applied(ctx context.Context, conn driver.Conn) (uint32, error) {
	if err := exec(ctx, conn, migrationsTable); err != nil {
		return 0, fmt.Errorf("creating schema_migrations: %w", err)
	}
	var v uint32
	if err := conn.QueryRow(ctx, "SELECT max(version) FROM schema_migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("reading schema version: %w", err)
	}
	return v, nil
}

// Apply runs every migration newer than the recorded version, generated
// for the server conn talks to. conn's default database is the one
// migrated.
func Apply(ctx context.Context, conn driver.Conn, log *zap.Logger, opts ...Option) error {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var database string
	if err := conn.QueryRow(ctx, "SELECT currentDatabase()").Scan(&database); err != nil {
		return fmt.Errorf("reading the current database: %w", err)
	}
	target, err := Detect(ctx, conn, database, o.cluster)
	if err != nil {
		return err
	}
	current, err := Applied(ctx, conn)
	if err != nil {
		return err
	}
	for _, m := range Migrations {
		if m.Version <= current {
			continue
		}
		if err := run(ctx, conn, m, target, log); err != nil {
			return fmt.Errorf("migration %d (%s) on clickhouse %s: %w", m.Version, m.Name, target.Version, err)
		}
		if err := record(ctx, conn, m); err != nil {
			return fmt.Errorf("recording migration %d: %w", m.Version, err)
		}
		log.Info("schema migration applied", zap.Uint32("version", m.Version), zap.String("name", m.Name),
			zap.Stringer("server_version", target.Version), zap.String("cluster", target.Cluster))
	}
	return nil
}

func run(ctx context.Context, conn driver.Conn, m Migration, t Target, log *zap.Logger) error {
	if m.Run != nil {
		return m.Run(ctx, conn, t, log)
	}
	return execAll(ctx, conn, m.Statements(t))
}

func execAll(ctx context.Context, conn driver.Conn, stmts []string) error {
	for _, stmt := range stmts {
		if err := exec(ctx, conn, stmt); err != nil {
			return err
		}
	}
	return nil
}

// ClickHouse error codes exec treats as "already done".
const (
	codeIllegalColumn      = 44 // "Cannot add column ...: column with this name already exists"
	codeTableAlreadyExists = 57
	codeUnknownTable       = 60
)

// unknownTable reports whether err is ClickHouse's UNKNOWN_TABLE.
func unknownTable(err error) bool {
	var ex *clickhouse.Exception
	return errors.As(err, &ex) && ex.Code == codeUnknownTable
}

// exec runs one DDL statement. Two sinkers creating the same table at the
// same moment can both pass IF NOT EXISTS and one then fails with
// TABLE_ALREADY_EXISTS; for an IF NOT EXISTS statement that is success.
// ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS, so an ADD COLUMN that
// finds its column already there (a second sinker, or a crash before the
// migration was recorded) is success too, and so is a DROP TABLE IF EXISTS
// that lost the race to drop the same table.
func exec(ctx context.Context, conn driver.Conn, stmt string) error {
	err := conn.Exec(ctx, stmt)
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		switch {
		case ex.Code == codeTableAlreadyExists && strings.Contains(stmt, "IF NOT EXISTS"):
			return nil
		case ex.Code == codeIllegalColumn && strings.Contains(stmt, " ADD COLUMN ") && strings.Contains(ex.Message, "already exists"):
			return nil
		case ex.Code == codeUnknownTable && strings.HasPrefix(stmt, "DROP TABLE IF EXISTS "):
			return nil
		}
	}
	return err
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

// Statements lists every statement of every migration for t, in order,
// named "<version>/<index>", for the current-engine check and the golden
// files.
func Statements(t Target) (names, stmts []string) {
	for _, m := range Migrations {
		for i, s := range m.Statements(t) {
			names = append(names, fmt.Sprintf("%d/%d %s", m.Version, i+1, m.Name))
			stmts = append(stmts, strings.TrimSpace(s))
		}
	}
	return names, stmts
}

// eventKeys adds event_key, a 64-bit hash of event_id that ClickHouse
// computes on insert (MATERIALIZED: no writer can set it wrong, and
// InsertSQL does not change). Distinct counts and min/max over 8-byte
// numbers are several times faster than over 36-byte id strings on 18.16:
// uniqExact(event_key) took a third of uniqExact(event_id)'s time, and the
// reporter tells a visit of one event by min(event_key) = max(event_key)
// (docs/bench/reporter.md). Two different events of a report share a key
// with probability about n²/2^65 (2·10⁻⁷ for 3 million events); the
// deduplication itself (ReplacingMergeTree, FINAL) still uses event_id.
// Parts written before this migration compute the column while read until
// they are merged.
func eventKeys(t Target) []string {
	stmts := []string{"ALTER TABLE " + t.Everywhere(t.Local("events")) + " ADD COLUMN event_key UInt64 MATERIALIZED cityHash64(event_id)"}
	if t.Cluster != "" {
		// The Distributed table needs the column to read it, as an ALIAS:
		// before 19.x a MATERIALIZED column there is computed on insert and
		// sent on to events_local, which refuses it (ClickHouse issue
		// 4015). The alias is expanded into the query sent to the shards,
		// so they hash event_id while reading instead of reading the
		// stored column: correct, a little slower. The table is made
		// again rather than altered: 18.16 runs an ALTER ON CLUSTER of a
		// table that is not replicated on no node of a cluster whose
		// shards replicate internally ("Table events isn't replicated, but
		// shard #1 is replicated"). It holds no data, and inserts meanwhile
		// fail and are retried by the sinker.
		stmts = append(stmts,
			"DROP TABLE IF EXISTS "+t.ref("events")+t.onCluster(),
			fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s%s\n(\n%s,\n    event_key UInt64 ALIAS cityHash64(event_id)\n)\nENGINE = %s",
				t.ref("events"), t.onCluster(), eventsColumns(t), t.distributedEngine("events", "cityHash64(event_id)")))
	}
	return stmts
}

package chschema

import (
	"context"
	"fmt"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// AwaitShards is ctx for inserts into a Distributed table that return
// only once every shard has stored its rows (insert_distributed_sync): by
// default a Distributed table answers as soon as the node it was sent to
// queued them on its own disk. On one node the setting changes nothing.
func AwaitShards(ctx context.Context) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1}))
}

// Version is a ClickHouse server version, major.minor.
type Version struct{ Major, Minor uint64 }

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// AtLeast reports whether v is major.minor or newer.
func (v Version) AtLeast(major, minor uint64) bool {
	return v.Major > major || (v.Major == major && v.Minor >= minor)
}

// Versions the DDL is generated and tested for: the oldest server Alumini
// supports and the engine of the current-engine check (deploy/sqlcheck).
var (
	Oldest  = Version{18, 16}
	Current = Version{26, 7}
)

// Target is the server, and the layout, the DDL is generated for. Features
// are chosen by version, never by trying them: a statement that fails on
// one server must not leave half a schema behind.
type Target struct {
	Version Version
	// Database is the database the tables live in; cluster mode needs it in
	// Distributed engines and replication paths.
	Database string
	// Cluster, when set, generates cluster DDL: every statement runs ON
	// CLUSTER, tables are Replicated*MergeTree named <name>_local, and a
	// Distributed table under the plain name spreads inserts and queries
	// over the shards, so InsertSQL and the reporter's queries do not change.
	Cluster string
}

// Features the schema uses where the server has them.

// LowCardinality reports whether LowCardinality(String) works without an
// experimental setting (it was experimental and buggy in 18.x).
func (t Target) LowCardinality() bool { return t.Version.AtLeast(19, 3) }

// MapType reports whether the Map type is usable without experimental
// settings.
func (t Target) MapType() bool { return t.Version.AtLeast(22, 1) }

// Codecs reports whether column compression codecs exist.
func (t Target) Codecs() bool { return t.Version.AtLeast(19, 10) }

// Detect returns the target of the server conn talks to.
func Detect(ctx context.Context, conn driver.Conn, database, cluster string) (Target, error) {
	sv, err := conn.ServerVersion()
	if err != nil {
		return Target{}, fmt.Errorf("reading the clickhouse server version: %w", err)
	}
	return Target{Version: Version{sv.Version.Major, sv.Version.Minor}, Database: database, Cluster: cluster}, nil
}

// Local is the name of a table that holds data: name itself on one node,
// name_local on a cluster (where name is the Distributed table, and where
// system.mutations lists the local table's mutations).
func (t Target) Local(name string) string {
	if t.Cluster == "" {
		return name
	}
	return name + "_local"
}

// ref is how DDL names a table: on a cluster qualified with the database,
// because each node runs ON CLUSTER statements in its own default database
// (18.16 does not add the initiator's), where an unqualified name misses.
func (t Target) ref(name string) string {
	if t.Cluster == "" {
		return name
	}
	return QuoteIdent(t.Database) + "." + name
}

// Everywhere is how a statement meant for every node names table: as it
// is on one node; on a cluster qualified with the database (see ref) and
// followed by the ON CLUSTER clause.
func (t Target) Everywhere(table string) string { return t.ref(table) + t.onCluster() }

// Mutable is how an ALTER TABLE ... DELETE names table (events or a view):
// the table itself on one node; on a cluster its local tables on every
// shard, since a Distributed table takes no mutations.
func (t Target) Mutable(table string) string { return t.Everywhere(t.Local(table)) }

// onCluster is the ON CLUSTER clause of DDL statements, or nothing.
func (t Target) onCluster() string {
	if t.Cluster == "" {
		return ""
	}
	return " ON CLUSTER " + QuoteIdent(t.Cluster)
}

// engine returns the engine clause of a MergeTree-family table: kind is
// "Replacing", "Aggregating" or "" (plain MergeTree).
func (t Target) engine(kind, table string) string {
	if t.Cluster == "" {
		return kind + "MergeTree"
	}
	// {shard} and {replica} are the macros every replicated cluster config
	// defines; the database is spelled out because 18.16 has no {database}.
	return fmt.Sprintf("Replicated%sMergeTree(%s, '{replica}')", kind, QuoteString("/clickhouse/tables/{shard}/"+t.Database+"/"+t.Local(table)))
}

// distributed returns the statement creating the Distributed table over a
// local table, or "" on one node. shardKey must send every copy of an
// event to the same shard, so replays meet their originals there.
func (t Target) distributed(table, shardKey string) string {
	if t.Cluster == "" {
		return ""
	}
	return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s%s AS %s\nENGINE = %s",
		t.ref(table), t.onCluster(), t.ref(t.Local(table)), t.distributedEngine(table, shardKey))
}

// distributedEngine is the engine of the Distributed table over table's
// local tables.
func (t Target) distributedEngine(table, shardKey string) string {
	return fmt.Sprintf("Distributed(%s, %s, %s, %s)", QuoteString(t.Cluster), QuoteString(t.Database), QuoteString(t.Local(table)), shardKey)
}

// str is the type of a low-cardinality string column.
func (t Target) str() string {
	if t.LowCardinality() {
		return "LowCardinality(String)"
	}
	return "String"
}

// QuoteIdent renders s as a ClickHouse identifier, for DDL, which takes
// no bound parameters.
func QuoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "\\`") + "`" }

// QuoteString renders s as a ClickHouse string literal: the one way to put
// a value into SQL where clickhouse-go cannot bind it (DDL, engine
// arguments), and how ClickHouse itself shows a literal in the text of a
// statement (system.mutations' command).
func QuoteString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

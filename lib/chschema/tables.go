package chschema

// The tables of a migrated database, by name. Code outside this package
// names a table through these constants, never a string of its own.
const (
	// Events is the events table: one row per event (eventsTable,
	// samplingKey), written by the sinker, read by the reporter.
	Events = "events"
	// ErasedVisitors is the erasure table (erasedVisitors): the reporter
	// writes a record per erasure request and step, every scoped read
	// excludes the visitors in it, and the sinker drops events of the
	// visitors in it.
	ErasedVisitors = "erased_visitors"
	// SchemaMigrations records which migrations ran (migrationsTable).
	SchemaMigrations = "schema_migrations"
)

// Table describes one table of the schema.
type Table struct {
	Name string
	// Sharded tables hold their rows in Name_local on a cluster, under a
	// Distributed table Name (see Target.Local); the others are one table
	// on every node (replicated to all of them, or local to each).
	Sharded bool
	// OneNode tables are made on one node only, not on a cluster.
	OneNode bool
	// Doc says what the table is for and who writes and reads it.
	Doc string
}

// Tables are every table a database holds after Apply: a table not
// described here is a leftover or a bug (TestTablesAreDescribed walks a
// migrated database). A migration that adds or drops a table changes this
// list with it.
var Tables = []Table{
	{Name: Events, Sharded: true, Doc: "one row per event; the sinker inserts, the reporter reads and erasure deletes"},
	{Name: ErasedVisitors, Doc: "erasure requests and their progress; the reporter writes, the reporter and the sinker read"},
	{Name: SchemaMigrations, Doc: "the migrations applied; Apply writes and reads it"},
	{Name: SessionsTable, OneNode: true, Doc: "rolled-up sessions, one row per visit, hour and visit-level values (sessionsTables); the reporter writes and reads it, erasure deletes"},
	{Name: SessionRollsTable, OneNode: true, Doc: "the roll of each client day of " + SessionsTable + " and the events rows it saw; the reporter writes and reads it"},
}

// TableNames are the names of Tables as t lays them out: on a cluster a
// sharded table is two, its Distributed table and Name_local.
func (t Target) TableNames() []string {
	var names []string
	for _, tb := range Tables {
		if tb.OneNode && t.Cluster != "" {
			continue
		}
		names = append(names, tb.Name)
		if tb.Sharded && t.Cluster != "" {
			names = append(names, t.Local(tb.Name))
		}
	}
	return names
}

package chschema

import "fmt"

// The report views are history: migrations 2 to 5 made them and migration
// 7 dropped them (dropReportViews), and their definitions stay so those
// migrations generate the same DDL on a database that has not run them.
// They pre-aggregated the events table per client and hour or day. Every aggregate in them is idempotent — uniqExact of ids, min, max,
// any — never count() or sum(): a replayed event that reaches the events
// table twice also reaches the views twice, and an idempotent aggregate
// absorbs the copy, so a report from a view equals the same report from
// the raw table with uniqExact, before and after merges. The price is that
// uniqExact keeps every distinct id of a bucket; that is what exact,
// replay-proof counts on a server without insert deduplication cost.
//
// The same idempotence makes the backfill safe: a migration creates each
// view first and then aggregates the rows already in events into it, so
// rows inserted meanwhile may be aggregated twice, which changes nothing.
//
// Two generations exist. Migration 2 created the views with uniqExact
// states of the String event_id, which ClickHouse keeps as 128-bit hashes
// (16 bytes per event, SipHash of each id on insert). Migration 4 replaces
// them with the same views over the 8-byte event_key (migration 3) under
// new names, <name>_v2, and drops the old ones: the view tables are about
// 30 % smaller, but ClickHouse's insert into events is not measurably
// faster (docs/bench/sinker.md); what the views cost an
// insert is mostly sessions_daily's one aggregate row per session.
//
// New names, not a drop and re-create under the old ones: every step of
// the upgrade is then idempotent (IF NOT EXISTS, an idempotent backfill, a
// drop of objects nobody re-creates), so several sinkers may run it at
// once, or again after a crash, and never drop each other's new views or
// leave an events table whose view points at a missing table.

// generation is one set of report views: its table names and the column
// and type that identify an event in its states.
type generation struct {
	suffix  string // appended to each view's name
	eventID string // the events column counted as events and page views
	idType  string // its type
}

var (
	// stringIDs is migration 2's generation. Frozen: migration 2 must
	// generate the same DDL on a server that has not run it yet.
	stringIDs = generation{suffix: "", eventID: "event_id", idType: "String"}
	// keyIDs is migration 4's, and the current one.
	keyIDs = generation{suffix: "_v2", eventID: "event_key", idType: "UInt64"}
)

// view is one materialized view and the AggregatingMergeTree it writes to.
type view struct {
	name        string
	columns     string // of the target table
	partitionBy string
	orderBy     string
	bucket      string // the time column: hour or day
	// query aggregates the table named by its one %s.
	query string
}

// views are the last generation's views, which migration 5 made again on
// its new events table and migration 7 dropped.
func views(t Target) []view { return viewsOf(t, keyIDs) }

func viewsOf(t Target, g generation) []view {
	s := t.str()
	id, idType := g.eventID, g.idType
	const eventType = "Enum8('unspecified' = 0, 'pageview' = 1, 'custom' = 2, 'identify' = 3)"
	return []view{
		{
			// Page views (type = 'pageview'), events, visitors and sessions
			// per hour; days and months merge the hours.
			name: "events_hourly" + g.suffix,
			columns: `    client_id String,
    hour DateTime('UTC'),
    type ` + eventType + `,
    is_bot UInt8,
    events AggregateFunction(uniqExact, ` + idType + `),
    visitors AggregateFunction(uniqExact, UInt64),
    sessions AggregateFunction(uniqExact, UInt64)`,
			partitionBy: "toYYYYMM(hour)",
			orderBy:     "(client_id, hour, type, is_bot)",
			bucket:      "hour",
			query: `SELECT
    client_id,
    toStartOfHour(timestamp) AS hour,
    type,
    is_bot,
    uniqExactState(` + id + `) AS events,
    uniqExactState(visitor_id) AS visitors,
    uniqExactState(session_id) AS sessions
FROM %s
GROUP BY client_id, hour, type, is_bot`,
		},
		{
			// One row per session and day: sessions, bounces (one page
			// view) and durations (last minus first event).
			name: "sessions_daily" + g.suffix,
			columns: `    client_id String,
    day Date,
    is_bot UInt8,
    session_id UInt64,
    visitor_id AggregateFunction(any, UInt64),
    pageviews AggregateFunction(uniqExactIf, ` + idType + `, UInt8),
    events AggregateFunction(uniqExact, ` + idType + `),
    started AggregateFunction(min, DateTime('UTC')),
    ended AggregateFunction(max, DateTime('UTC'))`,
			partitionBy: "toYYYYMM(day)",
			orderBy:     "(client_id, day, is_bot, session_id)",
			bucket:      "day",
			query: `SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    session_id,
    anyState(visitor_id) AS visitor_id,
    uniqExactIfState(` + id + `, type = 'pageview') AS pageviews,
    uniqExactState(` + id + `) AS events,
    minState(timestamp) AS started,
    maxState(timestamp) AS ended
FROM %s
GROUP BY client_id, day, is_bot, session_id`,
		},
		{
			// Top pages per day.
			name: "pages_daily" + g.suffix,
			columns: `    client_id String,
    day Date,
    is_bot UInt8,
    hostname ` + s + `,
    path String,
    pageviews AggregateFunction(uniqExact, ` + idType + `),
    visitors AggregateFunction(uniqExact, UInt64)`,
			partitionBy: "toYYYYMM(day)",
			orderBy:     "(client_id, day, is_bot, hostname, path)",
			bucket:      "day",
			query: `SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    hostname,
    path,
    uniqExactState(` + id + `) AS pageviews,
    uniqExactState(visitor_id) AS visitors
FROM %s
WHERE type = 'pageview'
GROUP BY client_id, day, is_bot, hostname, path`,
		},
		{
			// Sources (referrer class and UTM campaign) per day.
			name: "sources_daily" + g.suffix,
			columns: `    client_id String,
    day Date,
    is_bot UInt8,
    referrer_source ` + s + `,
    referrer_medium ` + s + `,
    utm_source ` + s + `,
    utm_medium ` + s + `,
    utm_campaign ` + s + `,
    pageviews AggregateFunction(uniqExact, ` + idType + `),
    visitors AggregateFunction(uniqExact, UInt64),
    sessions AggregateFunction(uniqExact, UInt64)`,
			partitionBy: "toYYYYMM(day)",
			orderBy:     "(client_id, day, is_bot, referrer_source, referrer_medium, utm_source, utm_medium, utm_campaign)",
			bucket:      "day",
			query: `SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    referrer_source,
    referrer_medium,
    utm_source,
    utm_medium,
    utm_campaign,
    uniqExactState(` + id + `) AS pageviews,
    uniqExactState(visitor_id) AS visitors,
    uniqExactState(session_id) AS sessions
FROM %s
WHERE type = 'pageview'
GROUP BY client_id, day, is_bot, referrer_source, referrer_medium, utm_source, utm_medium, utm_campaign`,
		},
	}
}

// materialized is the statement creating v's materialized view, which
// feeds v's table from every insert into the events table.
func (v view) materialized(t Target) string {
	local := t.ref(t.Local(v.name))
	return fmt.Sprintf("CREATE MATERIALIZED VIEW IF NOT EXISTS %s_mv%s TO %s AS\n%s",
		local, t.onCluster(), local, fmt.Sprintf(v.query, t.ref(t.Local("events"))))
}

// dropMaterialized is the statement dropping v's materialized view (its
// table stays).
func (v view) dropMaterialized(t Target) string {
	return "DROP TABLE IF EXISTS " + t.Everywhere(t.Local(v.name)+"_mv")
}

// fill is the statement aggregating the rows of source (a table or a
// subquery) into v's table; on a cluster through its Distributed table.
func (v view) fill(t Target, source string) string {
	return fmt.Sprintf("INSERT INTO %s\n%s", t.ref(v.name), fmt.Sprintf(v.query, source))
}

// reportViews is migration 2: the String-id views.
func reportViews(t Target) []string { return createViews(t, stringIDs) }

// keyViews is migration 4: the event_key views, created, backfilled and
// only then put in place of the String-id ones, which are dropped (their
// materialized view first, so no insert meets a view without its table).
// Until the drop both generations are filled; reports from either are
// right throughout. Dropping the old tables also drops the visitor ids in
// their states, which erasure would otherwise have to rebuild forever.
func keyViews(t Target) []string {
	return append(createViews(t, keyIDs), dropViews(t, stringIDs)...)
}

// dropReportViews is migration 7: the event_key views go too. No report
// read them (merging their uniqExact states measured no faster than
// counting from events, docs/bench/reporter.md), every insert into events
// filled them, which capped the sinker at about half of what ClickHouse
// inserts into events alone (docs/bench/sinker.md), and every erasure had
// to rebuild them.
func dropReportViews(t Target) []string { return dropViews(t, keyIDs) }

// dropViews drops a generation's views: each materialized view first, so
// no insert meets a view without its table, then its tables.
func dropViews(t Target, g generation) []string {
	var stmts []string
	for _, v := range viewsOf(t, g) {
		stmts = append(stmts, v.dropMaterialized(t))
		if t.Cluster != "" {
			stmts = append(stmts, "DROP TABLE IF EXISTS "+t.Everywhere(v.name))
		}
		stmts = append(stmts, "DROP TABLE IF EXISTS "+t.Everywhere(t.Local(v.name)))
	}
	return stmts
}

// createViews creates a generation's aggregate tables, their materialized
// views and, on one node, backfills them from the events already stored.
func createViews(t Target, g generation) []string {
	var stmts []string
	for _, v := range viewsOf(t, g) {
		local := t.ref(t.Local(v.name))
		stmts = append(stmts,
			fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s%s\n(\n%s\n)\nENGINE = %s\nPARTITION BY %s\nORDER BY %s",
				local, t.onCluster(), v.columns, t.engine("Aggregating", v.name), v.partitionBy, v.orderBy),
			v.materialized(t),
		)
		if d := t.distributed(v.name, "rand()"); d != "" {
			stmts = append(stmts, d)
		} else {
			// INSERT ... SELECT has no data block to wait for, so unlike
			// INSERT ... VALUES it is safe as a query on 18.16. A cluster has
			// no such single statement (each shard would backfill its own
			// events_local); migration 5 refills every view through the
			// Distributed tables.
			stmts = append(stmts, v.fill(t, "events"))
		}
	}
	return stmts
}

package schema

import "fmt"

// The report views pre-aggregate the events table per client and hour or
// day. Every aggregate in them is idempotent — uniqExact of ids, min, max,
// any — never count() or sum(): a replayed event that reaches the events
// table twice also reaches the views twice, and an idempotent aggregate
// absorbs the copy, so a report from a view equals the same report from
// the raw table with uniqExact, before and after merges. The price is that
// uniqExact keeps every distinct id of a bucket (16 bytes per event);
// that is what exact, replay-proof counts on a server without insert
// deduplication cost.
//
// The same idempotence makes the backfill safe: migration 2 creates each
// view first and then aggregates the rows already in events into it, so
// rows inserted meanwhile may be aggregated twice, which changes nothing.

// view is one materialized view and the AggregatingMergeTree it writes to.
type view struct {
	name        string
	columns     string // of the target table
	partitionBy string
	orderBy     string
	// query aggregates the table named by its one %s.
	query string
}

func views(t Target) []view {
	s := t.str()
	const eventType = "Enum8('unspecified' = 0, 'pageview' = 1, 'custom' = 2, 'identify' = 3)"
	return []view{
		{
			// Page views (type = 'pageview'), events, visitors and sessions
			// per hour; days and months merge the hours.
			name: "events_hourly",
			columns: `    client_id String,
    hour DateTime('UTC'),
    type ` + eventType + `,
    is_bot UInt8,
    events AggregateFunction(uniqExact, String),
    visitors AggregateFunction(uniqExact, UInt64),
    sessions AggregateFunction(uniqExact, UInt64)`,
			partitionBy: "toYYYYMM(hour)",
			orderBy:     "(client_id, hour, type, is_bot)",
			query: `SELECT
    client_id,
    toStartOfHour(timestamp) AS hour,
    type,
    is_bot,
    uniqExactState(event_id) AS events,
    uniqExactState(visitor_id) AS visitors,
    uniqExactState(session_id) AS sessions
FROM %s
GROUP BY client_id, hour, type, is_bot`,
		},
		{
			// One row per session and day: sessions, bounces (one page
			// view) and durations (last minus first event).
			name: "sessions_daily",
			columns: `    client_id String,
    day Date,
    is_bot UInt8,
    session_id UInt64,
    visitor_id AggregateFunction(any, UInt64),
    pageviews AggregateFunction(uniqExactIf, String, UInt8),
    events AggregateFunction(uniqExact, String),
    started AggregateFunction(min, DateTime('UTC')),
    ended AggregateFunction(max, DateTime('UTC'))`,
			partitionBy: "toYYYYMM(day)",
			orderBy:     "(client_id, day, is_bot, session_id)",
			query: `SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    session_id,
    anyState(visitor_id) AS visitor_id,
    uniqExactIfState(event_id, type = 'pageview') AS pageviews,
    uniqExactState(event_id) AS events,
    minState(timestamp) AS started,
    maxState(timestamp) AS ended
FROM %s
GROUP BY client_id, day, is_bot, session_id`,
		},
		{
			// Top pages per day.
			name: "pages_daily",
			columns: `    client_id String,
    day Date,
    is_bot UInt8,
    hostname ` + s + `,
    path String,
    pageviews AggregateFunction(uniqExact, String),
    visitors AggregateFunction(uniqExact, UInt64)`,
			partitionBy: "toYYYYMM(day)",
			orderBy:     "(client_id, day, is_bot, hostname, path)",
			query: `SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    hostname,
    path,
    uniqExactState(event_id) AS pageviews,
    uniqExactState(visitor_id) AS visitors
FROM %s
WHERE type = 'pageview'
GROUP BY client_id, day, is_bot, hostname, path`,
		},
		{
			// Sources (referrer class and UTM campaign) per day.
			name: "sources_daily",
			columns: `    client_id String,
    day Date,
    is_bot UInt8,
    referrer_source ` + s + `,
    referrer_medium ` + s + `,
    utm_source ` + s + `,
    utm_medium ` + s + `,
    utm_campaign ` + s + `,
    pageviews AggregateFunction(uniqExact, String),
    visitors AggregateFunction(uniqExact, UInt64),
    sessions AggregateFunction(uniqExact, UInt64)`,
			partitionBy: "toYYYYMM(day)",
			orderBy:     "(client_id, day, is_bot, referrer_source, referrer_medium, utm_source, utm_medium, utm_campaign)",
			query: `SELECT
    client_id,
    toDate(timestamp) AS day,
    is_bot,
    referrer_source,
    referrer_medium,
    utm_source,
    utm_medium,
    utm_campaign,
    uniqExactState(event_id) AS pageviews,
    uniqExactState(visitor_id) AS visitors,
    uniqExactState(session_id) AS sessions
FROM %s
WHERE type = 'pageview'
GROUP BY client_id, day, is_bot, referrer_source, referrer_medium, utm_source, utm_medium, utm_campaign`,
		},
	}
}

// ViewNames are the aggregate tables the views write to, for retention.
var ViewNames = []string{"events_hourly", "sessions_daily", "pages_daily", "sources_daily"}

// reportViews creates the aggregate tables, their materialized views and,
// on one node, backfills them from the events already stored.
func reportViews(t Target) []string {
	var stmts []string
	for _, v := range views(t) {
		stmts = append(stmts,
			fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s%s\n(\n%s\n)\nENGINE = %s\nPARTITION BY %s\nORDER BY %s",
				t.local(v.name), t.onCluster(), v.columns, t.engine("Aggregating", v.name), v.partitionBy, v.orderBy),
			fmt.Sprintf("CREATE MATERIALIZED VIEW IF NOT EXISTS %s_mv%s TO %s AS\n%s",
				t.local(v.name), t.onCluster(), t.local(v.name), fmt.Sprintf(v.query, t.local("events"))),
		)
		if d := t.distributed(v.name, "rand()"); d != "" {
			stmts = append(stmts, d)
		} else {
			// INSERT ... SELECT has no data block to wait for, so unlike
			// INSERT ... VALUES it is safe as a query on 18.16. A cluster has
			// no such single statement (each shard would backfill its own
			// events_local); cluster mode is for new deployments.
			stmts = append(stmts, fmt.Sprintf("INSERT INTO %s\n%s", v.name, fmt.Sprintf(v.query, "events")))
		}
	}
	return stmts
}

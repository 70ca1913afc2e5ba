package chschema

import "strings"

// The rolled-up sessions: one row per visit, UTC hour and combination of
// the visit-level dimensions, written once per UTC day by the reporter
// from `events FINAL` (reporter/internal/query, "roll") and read by the
// unfiltered aggregate, time series and visit-level breakdowns. Plain
// columns, never aggregate states: a report sums and counts them without
// FINAL and without merging states, both of which cost several times a
// plain read on 18.16 (docs/bench/reporter.md). Rows are exact because a roll computes
// whole days from the deduplicated events and is recorded in
// SessionRollsTable only after its rows are in: a report reads, per day,
// the rows of the day's latest recorded roll (RollColumn) and counts the
// days without one from events. Replays do not change what FINAL reads;
// late events, erasures and retention change a day's row count in events,
// and the reporter rolls that day again.
const (
	// SessionsTable holds the rolled-up sessions.
	SessionsTable = "sessions_hourly"
	// SessionRollsTable records each (client, day) roll: its version and
	// the events rows (copies included) the day had when it was rolled.
	SessionRollsTable = "session_rolls"
)

// SessionDimensions are the events columns a rolled-up session row is
// grouped by besides its hour: the report dimensions that describe a
// visit rather than one event. A visit whose events differ in one of them
// gets a row per value, as its events count under each value when
// counted from events.
var SessionDimensions = []string{
	"hostname", "referrer_source", "referrer", "referrer_medium", "search_term",
	"utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content",
	"browser", "browser_version", "os", "os_version", "device_type",
	"country", "region", "city",
}

// sessionsTables is the migration creating the two tables. On a cluster it
// creates nothing: the reporter reads events there (docs/reporter.md).
func sessionsTables(t Target) []string {
	if t.Cluster != "" {
		return nil
	}
	s := t.str()
	var dims strings.Builder
	for _, d := range SessionDimensions {
		typ := s
		switch d {
		case "referrer", "search_term", "utm_term", "utm_content":
			typ = "String"
		case "device_type":
			typ = "Enum8('unknown' = 0, 'desktop' = 1, 'mobile' = 2, 'tablet' = 3, 'bot' = 4, 'other' = 5)"
		}
		dims.WriteString("    " + d + " " + typ + ",\n")
	}
	return []string{`
CREATE TABLE IF NOT EXISTS ` + SessionsTable + `
(
    client_id String,
    day Date,
    roll UInt64,
    hour DateTime('UTC'),
    is_bot UInt8,
    session_id UInt64,
    visitor_id UInt64,
    spans UInt8,
` + dims.String() + `    pageviews UInt32,
    events UInt32,
    started DateTime('UTC'),
    ended DateTime('UTC'),
    entry String,
    entry_at DateTime('UTC'),
    exit String,
    exit_at DateTime('UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (client_id, hour, session_id)`, `
CREATE TABLE IF NOT EXISTS ` + SessionRollsTable + `
(
    client_id String,
    day Date,
    roll UInt64,
    rows UInt64
)
ENGINE = ReplacingMergeTree(roll)
ORDER BY (client_id, day)`}
}

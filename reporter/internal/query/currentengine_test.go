package query

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aluminiapp/pipeline/lib/chschema"
	"github.com/aluminiapp/pipeline/lib/registry"
	"github.com/aluminiapp/pipeline/lib/sqlcheck"
)

// currentRow is one events row as a VALUES tuple, in chschema.Columns order:
// the given columns, every other one empty or zero.
func currentRow(set map[string]string) string {
	vals := make([]string, len(chschema.Columns))
	for i, c := range chschema.Columns {
		v, ok := set[c]
		switch {
		case ok:
		case c == "timestamp" || c == "received_at" || c == "previous_visit":
			v = "'1970-01-01 00:00:00'"
		case c == "type":
			v = "'pageview'"
		case c == "device_type":
			v = "'desktop'"
		case c == "prop_keys" || c == "prop_values":
			v = "[]"
		case c == "screen_width" || c == "screen_height" || c == "visitor_id" || c == "session_id" || c == "is_bot" || c == "is_new_visitor":
			v = "0"
		default:
			v = "''"
		}
		vals[i] = v
	}
	return "(" + strings.Join(vals, ", ") + ")"
}

// TestCurrentEngineRunsEveryQuery sends every statement the reporter makes
// (reports of every endpoint, every breakdown and filter operator,
// funnels, retention, export, trends and the erasure statements) through
// deploy/sqlcheck, a current ClickHouse engine, on the sinker's current
// schema with a few rows, so a statement written for 18.16 that a current
// server rejects fails here. A couple of answers are checked too, so the
// statements are not only accepted but mean the same.
func TestCurrentEngineRunsEveryQuery(t *testing.T) {
	sc, err := ScopeOf(&registry.Client{ID: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	march := Range{From: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)}
	p := Params{Range: march, Location: berlin}

	var stmts []sqlcheck.Statement
	add := func(name string, q Query, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		stmts = append(stmts, sqlcheck.Statement{Name: name, SQL: q.SQL, Params: q.Args})
	}
	names, ddl := chschema.Statements(chschema.Target{Version: chschema.Current, Database: "alumini"})
	for i, s := range ddl {
		stmts = append(stmts, sqlcheck.Statement{Name: "schema " + names[i], SQL: s})
	}
	row := func(id, typ, name string, visitor, session int, ts, path string) string {
		return currentRow(map[string]string{
			"client_id": "'shop'", "event_id": "'" + id + "'", "type": "'" + typ + "'", "name": "'" + name + "'",
			"timestamp": "'" + ts + "'", "received_at": "'" + ts + "'", "path": "'" + path + "'",
			"visitor_id": fmt.Sprint(visitor), "session_id": fmt.Sprint(session),
			"browser": "'Firefox'", "country": "'DE'", "referrer_source": "'Google'",
			"prop_keys": "['plan']", "prop_values": "['pro']",
		})
	}
	stmts = append(stmts, sqlcheck.Statement{Name: "seed", SQL: chschema.InsertSQL + " VALUES " + strings.Join([]string{
		row("e1", "pageview", "", 1, 11, "2026-03-05 10:00:00", "/"),
		row("e2", "pageview", "", 1, 11, "2026-03-05 10:02:00", "/pricing"),
		row("e3", "custom", "signup", 1, 11, "2026-03-05 10:03:00", "/pricing"),
		row("e4", "pageview", "", 2, 21, "2026-03-05 11:00:00", "/"),
		row("e4", "pageview", "", 2, 21, "2026-03-05 11:00:00", "/"), // a replay
		row("e5", "pageview", "", 2, 22, "2026-03-12 09:00:00", "/blog"),
	}, ", ")})
	checked := map[int]string{} // statement index -> expected JSONEachRow output

	goal := p
	goal.Goal = "signup"
	q, err := sc.Aggregate(goal)
	add("aggregate", q, err)
	stmts[len(stmts)-1].Output = true
	checked[len(stmts)-1] = "2,3,4,5,2,180,1"
	for _, iv := range []Interval{Hour, Day, Week, Month} {
		q, err := sc.Timeseries(p, iv)
		add("timeseries "+string(iv), q, err)
	}
	for _, name := range DimensionNames() {
		if name == propPrefix+"<key>" {
			name = "prop:plan"
		}
		d, err := ParseDimension(name)
		if err != nil {
			t.Fatal(err)
		}
		q, err := sc.Breakdown(p, d, 10)
		add("breakdown "+name, q, err)
		// Every operator of a filter on this dimension, under the
		// aggregate (row and session filters take different paths).
		for _, f := range []struct {
			op     Op
			values []string
		}{{OpIs, []string{"/"}}, {OpIsNot, []string{"x"}}, {OpContains, []string{"O'Neil\\?"}}, {OpIn, []string{"a", "b"}}} {
			flt, err := NewFilter(d, f.op, f.values)
			if err != nil {
				t.Fatal(err)
			}
			fp := p
			fp.Filters = []Filter{flt}
			q, err := sc.Aggregate(fp)
			add(fmt.Sprintf("aggregate filter %s %s", name, f.op), q, err)
		}
	}
	// A sampled report: SAMPLE after FINAL, over the sampling key of the
	// schema (migration 5), and the count that picks the sample.
	sampled := goal
	sampled.Sample = 2
	q, err = sc.Aggregate(sampled)
	add("aggregate sampled", q, err)
	q, err = sc.Breakdown(sampled, Dimension{name: "entry_page"}, 10)
	add("breakdown entry_page sampled", q, err)
	q, err = sc.Timeseries(sampled, Day)
	add("timeseries sampled", q, err)
	q, err = sc.Volume(p.Range)
	add("volume", q, err)
	stmts[len(stmts)-1].Output = true
	// Six rows sent, the replay in the same insert: current servers
	// collapse it on insert (optimize_on_insert).
	checked[len(stmts)-1] = "5"
	bots := p
	bots.IncludeBots = true
	q, err = sc.Breakdown(bots, Dimension{name: "page"}, 5)
	add("breakdown with bots", q, err)
	q, err = sc.CurrentVisitors(time.Date(2026, 3, 12, 8, 57, 0, 0, time.UTC), time.Date(2026, 3, 12, 9, 2, 1, 0, time.UTC))
	add("current visitors", q, err)
	stmts[len(stmts)-1].Output = true
	checked[len(stmts)-1] = "1"
	q, err = sc.Funnel(p, []Step{{StepPage, "/"}, {StepPage, "/pricing"}, {StepEvent, "signup"}}, time.Hour)
	add("funnel", q, err)
	q, err = sc.Retention(p)
	add("retention", q, err)
	q, err = sc.Export(1, 100)
	add("export", q, err)
	q, err = OperatorScope().Trends(march, Dimension{name: "browser"}, 2, 10)
	add("trends", q, err)

	// Rolled-up sessions, in the order Store.Roll runs it: 5 March rolled,
	// the rest of the month read from events. The unfiltered reports over
	// them answer what they answer from events.
	day := uint32(time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC).Unix() / 86400)
	stmts = append(stmts,
		sqlcheck.Statement{Name: "roll tables", SQL: rollTablesSQL},
		sqlcheck.Statement{Name: "roll counts", SQL: rollCountsSQL, Params: []any{0, march.To.Unix()}},
		sqlcheck.Statement{Name: "rolls", SQL: rollsSQL},
		sqlcheck.Statement{Name: "roll a day", SQL: rollDaySQL(day, []string{"shop", "O'Neil"}, 1)},
		sqlcheck.Statement{Name: "record a roll", SQL: recordRollSQL + " VALUES ('shop', '2026-03-05', 1, 5)"},
		sqlcheck.Statement{Name: "rolled days", SQL: rolledDaysSQL, Params: []any{"shop", march.From.Unix(), march.To.Unix() - 1}},
		sqlcheck.Statement{Name: "superseded rolls", SQL: supersededSQL, Params: []any{uint64(2)}},
		sqlcheck.Statement{Name: "drop superseded rolls", SQL: dropSupersededSQL(map[string][]string{"shop": {"0"}, "O'Neil": {"3", "4"}})},
	)
	rd := rolledDays{rolls: []uint64{1}, tail: [][2]int64{{march.From.Unix(), int64(day) * 86400}, {int64(day+1) * 86400, march.To.Unix()}}}
	add("rolled aggregate", sc.rolledAggregate(p, rd), nil)
	stmts[len(stmts)-1].Output = true
	checked[len(stmts)-1] = "2,3,4,5,2,180,0"
	for _, iv := range []Interval{Hour, Day} {
		add("rolled timeseries "+string(iv), sc.rolledTimeseries(p, iv, rd), nil)
	}
	for _, name := range []string{"browser", "os_version", "device", "entry_page", "exit_page"} {
		add("rolled breakdown "+name, sc.rolledBreakdown(p, Dimension{name: name}, 10, rd), nil)
		stmts[len(stmts)-1].Output = true
	}
	checked[len(stmts)-2] = "/,2,2,3,3" // entry pages: visits 11 (2 page views) and 21 start on /
	onlyRolled := rolledDays{rolls: []uint64{1}}
	add("rolled aggregate without tail", sc.rolledAggregate(Params{Range: Range{From: time.Unix(int64(day)*86400, 0), To: time.Unix(int64(day+1)*86400, 0)}}, onlyRolled), nil)
	stmts[len(stmts)-1].Output = true
	checked[len(stmts)-1] = "2,2,3,4,1,180,0"

	// Erasure, in the order Store.Erase and FinishErasures run it.
	stmts = append(stmts,
		sqlcheck.Statement{Name: "events engine", SQL: eventsEngineSQL},
		sqlcheck.Statement{Name: "erasure targets", SQL: erasureColumnsSQL},
		sqlcheck.Statement{Name: "visitor sessions", SQL: visitorSessionsSQL, Params: []any{"shop", 2}},
		sqlcheck.Statement{Name: "record erasure", SQL: recordErasureSQL + " VALUES ('shop', 2, '2026-03-12 10:00:00', [], '2026-03-05', '2026-03-12', 0)"},
	)
	stmts = append(stmts, sqlcheck.Statement{Name: "pending erasures", SQL: pendingErasuresSQL})
	q, err = batchDelete(chschema.Target{}, "events", "visitor_id", []string{"blog", "shop"}, map[string][]uint64{"blog": {7}, "shop": {2, 9}})
	add("erase events", q, err)
	stmts = append(stmts,
		sqlcheck.Statement{Name: "latest mutation", SQL: latestMutationSQL, Params: []any{"events", chschema.QuoteString("shop")}},
		sqlcheck.Statement{Name: "erasure status", SQL: erasureSQL, Params: []any{"shop", 2}},
		sqlcheck.Statement{Name: "mutation done", SQL: mutationDoneSQL, Params: []any{"events", "mutation_1.txt"}},
		sqlcheck.Statement{Name: "recent erasures", SQL: recentErasuresSQL, Params: []any{"2026-03-05 00:00:00"}},
		sqlcheck.Statement{Name: "returned events", SQL: returnedEventsSQL, Params: []any{"shop", 2}},
	)
	// The tombstone hides visitor 2 from every read at once.
	q, err = sc.Aggregate(p)
	add("aggregate after erasure", q, err)
	stmts[len(stmts)-1].Output = true
	checked[len(stmts)-1] = "1,1,2,3"

	rep := sqlcheck.Check(t, "alumini", stmts)
	for i, want := range checked {
		got := values(t, rep.Results[i].Output)
		if !strings.HasPrefix(got, want) {
			t.Errorf("%s on ClickHouse %s = %s; want %s…", stmts[i].Name, rep.Engine, got, want)
		}
	}
}

// values is the comma-joined values of the first JSONEachRow row of out,
// in column order (which a decoded map would lose).
func values(t *testing.T, out string) string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("output %q: want a JSON object (%v)", out, err)
	}
	var vals []string
	for dec.More() {
		if _, err := dec.Token(); err != nil { // the column name
			t.Fatal(err)
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		vals = append(vals, fmt.Sprint(v))
	}
	return strings.Join(vals, ",")
}

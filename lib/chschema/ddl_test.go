package chschema

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aluminiapp/pipeline/lib/sqlcheck"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// targets are the layouts the DDL is generated, golden-filed and checked for.
var targets = []struct {
	name   string
	target Target
}{
	{"single_18.16", Target{Version: Oldest, Database: "alumini"}},
	{"single_current", Target{Version: Current, Database: "alumini"}},
	{"cluster_18.16", Target{Version: Oldest, Database: "alumini", Cluster: "analytics"}},
	{"cluster_current", Target{Version: Current, Database: "alumini", Cluster: "analytics"}},
}

func TestDDLGolden(t *testing.T) {
	for _, tc := range targets {
		t.Run(tc.name, func(t *testing.T) {
			names, stmts := Statements(tc.target)
			var b strings.Builder
			for i, s := range stmts {
				b.WriteString("-- " + names[i] + "\n" + s + ";\n\n")
			}
			path := filepath.Join("testdata", "ddl_"+tc.name+".sql")
			if *update {
				if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if b.String() != string(want) {
				t.Errorf("Statements(%s) differ from %s (run go test -update and review the diff)", tc.name, path)
			}
		})
	}
}

func TestClusterDDLShape(t *testing.T) {
	_, stmts := Statements(Target{Version: Current, Database: "alumini", Cluster: "analytics"})
	all := strings.Join(stmts, "\n")
	for _, want := range []string{
		// Qualified: each node runs ON CLUSTER DDL in its own default database.
		"CREATE TABLE IF NOT EXISTS `alumini`.events_local ON CLUSTER `analytics`",
		"ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/alumini/events_local', '{replica}')",
		"ENGINE = Distributed('analytics', 'alumini', 'events_local', cityHash64(event_id))",
		"ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/alumini/events_hourly_v2_local', '{replica}')",
		"TO `alumini`.events_hourly_v2_local AS",
		"DROP TABLE IF EXISTS `alumini`.events_hourly_local_mv ON CLUSTER `analytics`",
		"FROM `alumini`.events_local",
		"event_key UInt64 ALIAS cityHash64(event_id)\n)\nENGINE = Distributed(",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("cluster DDL lacks %q", want)
		}
	}
	for _, s := range stmts {
		if strings.HasPrefix(s, "INSERT") {
			// Copies and refills go through Distributed tables, from one
			// node, into every shard.
			if target := strings.Fields(s)[2]; !strings.HasPrefix(target, "`alumini`.") || strings.HasSuffix(target, "_local") {
				t.Errorf("cluster insert into %s, not a qualified Distributed table:\n%s", target, s)
			}
			continue
		}
		if !strings.Contains(s, "ON CLUSTER") {
			t.Errorf("cluster statement without ON CLUSTER:\n%s", s)
		}
	}
}

// TestCurrentEngineAcceptsMigrations runs every migration, for one node on
// the oldest and the current server, on a current ClickHouse engine, and
// parses the cluster DDL there (running it needs a cluster and Keeper).
// Then it inserts events and an erasure record and reads them back, so the
// DDL is not just valid but working.
func TestCurrentEngineAcceptsMigrations(t *testing.T) {
	for _, tc := range targets {
		t.Run(tc.name, func(t *testing.T) {
			mode := "run"
			if tc.target.Cluster != "" {
				mode = "parse"
			}
			names, stmts := Statements(tc.target)
			var check []sqlcheck.Statement
			for i, s := range stmts {
				check = append(check, sqlcheck.Statement{Name: names[i], SQL: s, Mode: mode})
			}
			if mode == "run" {
				check = append(check,
					sqlcheck.Statement{Name: "insert", SQL: InsertSQL + " VALUES " + sampleValues},
					sqlcheck.Statement{Name: "replayed insert", SQL: InsertSQL + " VALUES " + sampleValues},
					sqlcheck.Statement{Name: "events", Output: true, SQL: `SELECT uniqExact(event_key) AS e, uniqExact(visitor_id) AS v
FROM events WHERE client_id = ? AND type = 'pageview'`, Params: []any{"shop"}},
					sqlcheck.Statement{Name: "erasure record", SQL: `INSERT INTO erased_visitors (client_id, visitor_id, requested_at, mutations, first_day, last_day, views_rebuilt)
VALUES ('shop', 7, '2026-11-03 11:00:00', [], '2026-11-03', '2026-11-03', 1)`},
					sqlcheck.Statement{Name: "erasures", Output: true, SQL: `SELECT count() AS n, max(views_rebuilt) AS done FROM erased_visitors WHERE client_id = 'shop'`},
				)
			}
			rep := sqlcheck.Check(t, "alumini", check)
			if mode == "run" {
				if got, want := rep.Results[len(check)-3].Output, `{"e":2,"v":1}`; strings.TrimSpace(got) != want {
					t.Errorf("events on ClickHouse %s = %s; want %s", rep.Engine, got, want)
				}
				if got, want := rep.Results[len(check)-1].Output, `{"n":1,"done":1}`; strings.TrimSpace(got) != want {
					t.Errorf("erased_visitors on ClickHouse %s = %s; want %s", rep.Engine, got, want)
				}
			}
		})
	}
}

// sampleValues are two page views of one session in the events columns.
const sampleValues = `('shop', 'e1', 'pageview', '', '2026-11-03 10:00:00', '2026-11-03 10:00:00', 'https://shop.example/', 'shop.example', '/', 'Home', '', 'Firefox', '120', 'Linux', '', 'desktop', 0, 'search', 'organic', '', '', '', '', '', '', 'DE', '', '', 'de', 1920, 1080, 'Europe/Berlin', 7, 70, 1, '1970-01-01 00:00:00', ['plan'], ['pro'], '', ''),
('shop', 'e2', 'pageview', '', '2026-11-03 10:05:00', '2026-11-03 10:05:00', 'https://shop.example/a', 'shop.example', '/a', 'A', '', 'Firefox', '120', 'Linux', '', 'desktop', 0, '', '', '', '', '', '', '', '', 'DE', '', '', 'de', 1920, 1080, 'Europe/Berlin', 7, 70, 0, '2026-11-03 10:00:00', [], [], '', '')`

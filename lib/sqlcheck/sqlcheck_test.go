package sqlcheck

import (
	"strings"
	"testing"
)

func TestRunReportsEachStatement(t *testing.T) {
	rep, err := Run("checks", []Statement{
		{Name: "create", SQL: "CREATE TABLE t (a String, n UInt32) ENGINE = MergeTree ORDER BY a"},
		{Name: "insert", SQL: "INSERT INTO t (a, n) VALUES (?, ?)", Params: []any{"it's ?", 3}},
		{Name: "read", SQL: "SELECT a, n FROM t WHERE a = ?", Params: []any{"it's ?"}, Output: true},
		{Name: "typo", SQL: "SELEC 1"},
		{Name: "cluster", SQL: "CREATE TABLE r ON CLUSTER c (a String) ENGINE = ReplicatedMergeTree('/t/{shard}', '{replica}') ORDER BY a", Mode: "parse"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Engine == "" || len(rep.Results) != 5 {
		t.Fatalf("Run = %+v; want an engine version and 5 results", rep)
	}
	for i, want := range []bool{true, true, true, false, true} {
		if r := rep.Results[i]; r.OK != want {
			t.Errorf("result %s ok = %v (%s); want %v", r.Name, r.OK, r.Error, want)
		}
	}
	if got := strings.TrimSpace(rep.Results[2].Output); got != `{"a":"it's ?","n":3}` {
		t.Errorf("output of read = %s; want the bound row", got)
	}
	if !strings.Contains(rep.Results[3].Error, "Syntax error") {
		t.Errorf("error of typo = %q; want a syntax error", rep.Results[3].Error)
	}
}

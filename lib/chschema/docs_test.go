package chschema

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"testing"

	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/chtest"
	"github.com/aluminiapp/pipeline/lib/sqlcheck"
)

// docsPath is the analysts' schema guide whose example queries are tested.
const docsPath = "../../docs/schema.md"

var sqlBlock = regexp.MustCompile("(?s)```sql\n(.*?)```")

func exampleQueries(t *testing.T) []string {
	t.Helper()
	md, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	var qs []string
	for _, m := range sqlBlock.FindAllStringSubmatch(string(md), -1) {
		qs = append(qs, m[1])
	}
	if len(qs) != 11 {
		t.Fatalf("%s has %d sql blocks; want the eleven example queries", docsPath, len(qs))
	}
	return qs
}

// TestDocsExampleQueries runs the eleven queries of docs/schema.md on the
// 18.16 server over the fixture; each must answer with rows. Then on the
// two-shard cluster of deploy/clickhouse/cluster.sh, where the docs say
// they work unchanged: each must answer what it answered on one node.
func TestDocsExampleQueries(t *testing.T) {
	qs := exampleQueries(t)
	_, conn := chtest.Database(t)
	if err := Apply(context.Background(), conn, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	insert(t, conn, fixture())
	want := make([]string, len(qs))
	for i, q := range qs {
		if want[i] = dump(t, conn, q); want[i] == "" {
			t.Errorf("example query %d of %s returns no rows:\n%s", i+1, docsPath, q)
		}
	}

	_, cluster := chtest.ClusterDatabase(t)
	if err := Apply(context.Background(), cluster, zap.NewNop(), OnCluster(chtest.Cluster)); err != nil {
		t.Fatal(err)
	}
	insert(t, cluster, fixture())
	for i, q := range qs {
		if got := dump(t, cluster, q); got != want[i] {
			t.Errorf("example query %d of %s on the cluster:\n%s\nwant, as on one node:\n%s\n%s", i+1, docsPath, got, want[i], q)
		}
	}
}

// TestDocsExampleQueriesOnCurrentEngine runs them on a current ClickHouse.
func TestDocsExampleQueriesOnCurrentEngine(t *testing.T) {
	qs := exampleQueries(t)
	names, stmts := Statements(Target{Version: Current, Database: "alumini"})
	var check []sqlcheck.Statement
	for i, s := range stmts {
		check = append(check, sqlcheck.Statement{Name: names[i], SQL: s})
	}
	check = append(check, sqlcheck.Statement{Name: "seed", SQL: InsertSQL + " VALUES " + sampleValues})
	for i, q := range qs {
		check = append(check, sqlcheck.Statement{Name: fmt.Sprintf("example query %d", i+1), SQL: q})
	}
	sqlcheck.Check(t, "alumini", check)
}

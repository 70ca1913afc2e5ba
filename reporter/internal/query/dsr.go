package query

import (
	"fmt"
	"regexp"

	"github.com/aluminiapp/pipeline/lib/chconf"
	"github.com/aluminiapp/pipeline/lib/chschema"
)

// exportColumns are the columns of a data subject export, in order: every
// column the sinker stores (the truncated IP too: it is the visitor's
// data). Arrays stay arrays; everything else is read as text so one row
// type fits all.
var exportColumns = chschema.Columns

// ExportColumns returns the column names of an export, in order.
func ExportColumns() []string { return append([]string(nil), exportColumns...) }

func isArrayColumn(c string) bool { return c == "prop_keys" || c == "prop_values" }

// Export is the statement returning every event of one visitor of the
// scope's client, each event once, oldest first, at most limit rows. Bots
// are included: the export is about the person, not the report.
func (s Scope) Export(visitorID uint64, limit int) (Query, error) {
	if err := s.check(); err != nil {
		return Query{}, err
	}
	var b stmt
	b.sql("SELECT ")
	for i, c := range exportColumns {
		if i > 0 {
			b.sql(", ")
		}
		if isArrayColumn(c) {
			b.sql(c)
		} else {
			b.sql("toString(" + c + ")")
		}
	}
	b.sql("\n").from(s, nil, true)
	b.sql(" AND visitor_id = ").bind(visitorID)
	b.sql("\nORDER BY timestamp, event_id LIMIT 1 BY event_id LIMIT ").bind(limit)
	return b.query(), nil
}

// tableName accepts the names ClickHouse reports for the tables erasure
// covers: plain identifiers and the ".inner." tables of materialized views.
var tableName = regexp.MustCompile(`^\.?[A-Za-z0-9_.]+$`)

// alterTarget is how a mutation names table: quoted, and on a cluster as
// the schema's statements for every node name it (chschema.Target.Everywhere),
// so that it runs on every shard. The names are checked, as they are
// written into the statement.
func alterTarget(l chschema.Target, table string) (string, error) {
	if !tableName.MatchString(table) {
		return "", fmt.Errorf("erase: unexpected table name %q", table)
	}
	if l.Cluster != "" {
		if err := chconf.CheckNames(l.Database, l.Cluster); err != nil {
			return "", fmt.Errorf("erase: %w", err)
		}
	}
	return l.Everywhere(chschema.QuoteIdent(table)), nil
}

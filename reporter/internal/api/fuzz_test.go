package api

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aluminiapp/pipeline/lib/registry"
	"github.com/aluminiapp/pipeline/reporter/internal/query"
)

// FuzzReportParams feeds the query strings of report requests (period,
// from/to, tz, filters, ...) as any API key holder can send them. Whatever
// the input: no panic; a range that parses is non-empty, at most
// maxRangeYears long and within the events table's times; and every
// statement built from it binds each filter value as a parameter, and its
// text is the same whatever the values are.
func FuzzReportParams(f *testing.F) {
	for _, s := range []string{
		"period=7d", "period=today&tz=Europe/Berlin", "period=12mo&compare=previous_period",
		"from=2026-03-01&to=2026-03-31&tz=America/New_York",
		"period=custom&from=2026-03-05T10:00:00Z&to=2026-03-05T11:00:00%2B01:00",
		"filter=country:is:DE&filter=prop:plan:in:[\"pro\",\"team\"]&include_bots=true",
		"filter=page:contains:%27%29%3B%20DROP%20TABLE%20events%3B--",
		"filter=browser:is_not:Chrome&filter=source:in:[\"a\\u0000b\"]",
	} {
		f.Add(s)
	}
	now := time.Date(2026, 12, 4, 15, 4, 5, 0, time.UTC)
	scope, err := query.ScopeOf(&registry.Client{ID: "shop"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		params, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p, _, err := parseParams(params, now, time.UTC)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("parseParams(%q): an error without a message", raw)
			}
			return
		}
		r := p.Range
		if !r.From.Before(r.To) {
			t.Fatalf("parseParams(%q): range %v - %v does not end after it starts", raw, r.From, r.To)
		}
		if r.To.After(r.From.AddDate(maxRangeYears, 0, 1)) {
			t.Fatalf("parseParams(%q): range %v - %v is longer than %d years", raw, r.From, r.To, maxRangeYears)
		}
		if r.From.Before(minTime) || r.To.After(maxTime) {
			t.Fatalf("parseParams(%q): range %v - %v outside the table's times", raw, r.From, r.To)
		}
		if p.Location == nil || len(p.Filters) > maxFilters {
			t.Fatalf("parseParams(%q): location %v, %d filters", raw, p.Location, len(p.Filters))
		}
		q, err := scope.Aggregate(p)
		if err != nil {
			t.Fatalf("parseParams(%q) passed, but the aggregate statement fails: %v", raw, err)
		}
		if n := strings.Count(q.SQL, "?"); n != len(q.Args) {
			t.Fatalf("statement has %d placeholders and %d bound values:\n%s", n, len(q.Args), q.SQL)
		}
		// The statement's text does not depend on the filter values: built
		// again with every value replaced, it is the same, so no value can
		// change what the statement does.
		blank := p
		blank.Filters = nil
		for _, flt := range p.Filters {
			flt.Values = slices.Repeat([]string{"x"}, len(flt.Values))
			blank.Filters = append(blank.Filters, flt)
			for _, v := range p.Filters[len(blank.Filters)-1].Values {
				if !slices.ContainsFunc(q.Args, func(a any) bool { return argHolds(a, v) }) {
					t.Fatalf("filter value %q is not bound as a parameter (args %v)", v, q.Args)
				}
			}
		}
		if b, err := scope.Aggregate(blank); err != nil || b.SQL != q.SQL {
			t.Fatalf("the statement's text changes with the filter values (%v):\n%s\nthen\n%s", err, q.SQL, b.SQL)
		}
	})
}

// argHolds reports whether a bound parameter is v.
func argHolds(a any, v string) bool {
	s, ok := a.(string)
	return ok && s == v
}

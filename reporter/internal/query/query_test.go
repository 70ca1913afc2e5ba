package query

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aluminiapp/pipeline/lib/chschema"
	"github.com/aluminiapp/pipeline/lib/registry"
)

var march = Range{
	From: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
	To:   time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC),
}

// marker is put into every user-supplied value: it must reach the
// arguments and never the SQL text.
const marker = "MARK'\"`\\?--/*"

// builders returns every statement the package builds for scope s, with
// every user-supplied value carrying marker.
func builders(t *testing.T, s Scope) map[string]func() (Query, error) {
	t.Helper()
	var filters []Filter
	for _, name := range append(DimensionNames()[:len(DimensionNames())-1], "prop:"+marker) {
		d, err := ParseDimension(name)
		if err != nil {
			t.Fatalf("ParseDimension(%q) = %v", name, err)
		}
		for _, op := range []Op{OpIs, OpIsNot, OpContains, OpMatches, OpIn} {
			vals := []string{marker}
			if op == OpIn {
				vals = []string{marker, marker + "2"}
			}
			f, err := NewFilter(d, op, vals)
			if err != nil {
				t.Fatal(err)
			}
			filters = append(filters, f)
		}
	}
	loc, _ := time.LoadLocation("Europe/Berlin")
	// The same filters once more as and/or/not (Plausible's language).
	where := &Condition{Op: "or", Of: []Condition{
		{Op: "not", Of: []Condition{{Filter: &filters[0]}}},
		{Op: "and", Of: []Condition{{Filter: &filters[len(filters)-1]}, {Filter: &filters[3]}}},
	}}
	p := Params{Range: march, Location: loc, Filters: filters, Goal: marker, Where: where}
	m := map[string]func() (Query, error){
		"aggregate":        func() (Query, error) { return s.Aggregate(p) },
		"current visitors": func() (Query, error) { return s.CurrentVisitors(march.From, march.To) },
		"funnel": func() (Query, error) {
			return s.Funnel(p, []Step{{StepPage, marker}, {StepEvent, marker}}, time.Hour)
		},
		"retention": func() (Query, error) { return s.Retention(p) },
		"volume":    func() (Query, error) { return s.Volume(p.Range) },
		"aggregate sampled": func() (Query, error) {
			sp := p
			sp.Sample = 20
			return s.Aggregate(sp)
		},
		"export": func() (Query, error) { return s.Export(42, 10) },
	}
	for _, iv := range []Interval{Hour, Day, Week, Month} {
		m["timeseries "+string(iv)] = func() (Query, error) { return s.Timeseries(p, iv) }
	}
	for _, name := range append(DimensionNames()[:len(DimensionNames())-1], "prop:"+marker) {
		d, _ := ParseDimension(name)
		m["breakdown "+name] = func() (Query, error) { return s.Breakdown(p, d, 10) }
	}
	return m
}

// TestNoStatementWithoutTheClientFilter builds every statement from the
// zero Scope (refused) and from a client's scope, where every read of the
// events table must be followed by the client filter bound to that client.
// scopedRead is a read of events whose WHERE starts with the client
// filter, FINAL and SAMPLE or not.
var scopedRead = regexp.MustCompile(`FROM events( FINAL)?( SAMPLE 1/[0-9]+)? WHERE client_id = \?`)

func TestNoStatementWithoutTheClientFilter(t *testing.T) {
	for name, build := range builders(t, Scope{}) {
		if q, err := build(); !errors.Is(err, ErrNoClient) || q.SQL != "" {
			t.Errorf("%s from the zero Scope = %q, %v; want no SQL and ErrNoClient", name, q.SQL, err)
		}
	}
	s, err := ScopeOf(&registry.Client{ID: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	for name, build := range builders(t, s) {
		q, err := build()
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if strings.Contains(q.SQL, "MARK") {
			t.Errorf("%s: a user value reached the SQL text: %s", name, q.SQL)
		}
		if n := strings.Count(q.SQL, "?"); n != len(q.Args) {
			t.Errorf("%s: %d placeholders, %d args", name, n, len(q.Args))
		}
		reads := strings.Count(q.SQL, "FROM events") + strings.Count(q.SQL, "TABLE `events`")
		scoped := len(scopedRead.FindAllString(q.SQL, -1)) + strings.Count(q.SQL, "TABLE `events` DELETE WHERE client_id = ?")
		if reads == 0 || reads != scoped {
			t.Errorf("%s: %d reads of events, %d with the client filter: %s", name, reads, scoped, q.SQL)
		}
		// Every client_id placeholder is bound to this client.
		parts := strings.Split(q.SQL, "?")
		for i := range q.Args {
			if strings.HasSuffix(parts[i], "client_id = ") && q.Args[i] != "shop" {
				t.Errorf("%s: client filter bound to %v; want shop", name, q.Args[i])
			}
		}
	}
	if _, err := ScopeOf(nil); !errors.Is(err, ErrNoClient) {
		t.Errorf("ScopeOf(nil) = %v; want ErrNoClient", err)
	}
	if _, err := ScopeOf(&registry.Client{}); !errors.Is(err, ErrNoClient) {
		t.Errorf("ScopeOf(no id) = %v; want ErrNoClient", err)
	}
}

func TestBuildersRefuse(t *testing.T) {
	s, _ := ScopeOf(&registry.Client{ID: "shop"})
	page, _ := ParseDimension("page")
	for _, tc := range []struct {
		name string
		q    func() (Query, error)
		want error
	}{
		{"empty range", func() (Query, error) { return s.Aggregate(Params{Range: Range{march.From, march.From}}) }, ErrBadRange},
		{"bad interval", func() (Query, error) { return s.Timeseries(Params{Range: march}, "minute") }, ErrBadParam},
		{"zero limit", func() (Query, error) { return s.Breakdown(Params{Range: march}, page, 0) }, ErrBadParam},
		{"one step", func() (Query, error) { return s.Funnel(Params{Range: march}, []Step{{StepPage, "/"}}, time.Hour) }, ErrBadParam},
		{"bad table", func() (Query, error) {
			return batchDelete(chschema.Target{}, "events; DROP", "visitor_id", []string{"shop"}, map[string][]uint64{"shop": {1}})
		}, nil},
		{"bad cluster", func() (Query, error) {
			return batchDelete(chschema.Target{Database: "alumini", Cluster: "c` DELETE"}, "events_local", "visitor_id", []string{"shop"}, map[string][]uint64{"shop": {1}})
		}, nil},
		{"no client", func() (Query, error) {
			return batchDelete(chschema.Target{}, "events", "visitor_id", []string{""}, map[string][]uint64{"": {1}})
		}, nil},
	} {
		_, err := tc.q()
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: err = %v; want %v", tc.name, err, tc.want)
		}
	}
	for _, s := range []string{"nope", "prop:", ""} {
		if _, err := ParseDimension(s); !errors.Is(err, ErrBadParam) {
			t.Errorf("ParseDimension(%q) = %v; want ErrBadParam", s, err)
		}
	}
	if _, err := NewFilter(page, "like", []string{"x"}); !errors.Is(err, ErrBadParam) {
		t.Errorf("NewFilter(like) = %v; want ErrBadParam", err)
	}
	if _, err := NewFilter(page, OpIs, []string{strings.Repeat("x", maxValueLen+1)}); !errors.Is(err, ErrBadParam) {
		t.Errorf("NewFilter(too long) = %v; want ErrBadParam", err)
	}
}

// TestEraseOnCluster: on a cluster the batch's mutation names the local
// table with its database and runs ON CLUSTER, so that it reaches every
// shard; each visitor id is bound under its own client.
func TestEraseOnCluster(t *testing.T) {
	l := chschema.Target{Database: "alumini", Cluster: "analytics"}
	q, err := batchDelete(l, "events_local", "visitor_id", []string{"shop", "blog"}, map[string][]uint64{"shop": {42, 43}, "blog": {42}})
	want := "ALTER TABLE `alumini`.`events_local` ON CLUSTER `analytics` DELETE WHERE (client_id = ? AND visitor_id IN (?, ?)) OR (client_id = ? AND visitor_id IN (?))"
	if err != nil || q.SQL != want || fmt.Sprint(q.Args) != "[shop 42 43 blog 42]" {
		t.Errorf("batch erase on a cluster = %q %v, %v; want %q [shop 42 43 blog 42]", q.SQL, q.Args, err, want)
	}
}

func TestBuckets(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	// The spring DST change in Berlin: 2026-03-29 has 23 hours.
	r := Range{From: time.Date(2026, 3, 29, 0, 0, 0, 0, berlin), To: time.Date(2026, 3, 30, 0, 0, 0, 0, berlin)}
	for _, tc := range []struct {
		iv    Interval
		r     Range
		n     int
		first string
	}{
		{Hour, r, 23, "2026-03-29T00:00:00+01:00"},
		{Day, r, 1, "2026-03-29T00:00:00+01:00"},
		{Week, march, 6, "2026-02-23T00:00:00+01:00"},
		{Month, march, 2, "2026-03-01T00:00:00+01:00"},
	} {
		got, err := Buckets(tc.r, tc.iv, berlin)
		if err != nil || len(got) != tc.n || got[0].Format(time.RFC3339) != tc.first {
			t.Errorf("Buckets(%v, %s) = %d buckets from %v, %v; want %d from %s", tc.r, tc.iv, len(got), fmt.Sprint(got[:min(1, len(got))]), err, tc.n, tc.first)
		}
	}
	if _, err := Buckets(Range{march.From, march.From.AddDate(1, 0, 0)}, Hour, nil); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Buckets(a year by hour) = %v; want ErrTooLarge", err)
	}
}

package api

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// TestSampledReports gives client shop 4,000 more page views than the fixture
// (2,000 visitors, one visit each, 14-28 March 2026: every other visitor
// bounces, the others view three pages) and makes reports over more than
// 500 events read a sample. The aggregate, time series and breakdowns of
// March must then say they read one in 10 visitors, report counts that are
// multiples of 10 close to the true ones, keep the ratios (bounce rate,
// views per visit) of whole visits, and compare with the previous period
// on the same sample; a report over the fixture's few events (a day
// without the generated visitors) stays exact.
func TestSampledReports(t *testing.T) {
	e := newEnv(t, sampleAbove500)
	insert(t, e.conn, sampledVisitors())

	get := func(target string, into any) {
		t.Helper()
		status, _, body := request{target: target, auth: "Bearer " + shopKey}.do(t, e.h)
		if status != http.StatusOK {
			t.Fatalf("GET %s = %d %s", target, status, body)
		}
		if err := json.Unmarshal([]byte(body), into); err != nil {
			t.Fatal(err)
		}
	}
	near := func(what string, got, want float64, within float64) {
		t.Helper()
		if math.Abs(got-want) > within*want {
			t.Errorf("%s = %v; want within %.0f %% of %v", what, got, within*100, want)
		}
	}
	tenfold := func(what string, n uint64) {
		t.Helper()
		if n%10 != 0 {
			t.Errorf("%s = %d: not a count of one in 10 visitors scaled up", what, n)
		}
	}

	var agg struct {
		SampleRate *float64 `json:"sample_rate"`
		Results    struct {
			Visitors, Visits, Pageviews, Events uint64
			BounceRate                          float64 `json:"bounce_rate"`
			ViewsPerVisit                       float64 `json:"views_per_visit"`
		} `json:"results"`
		Comparison struct{ Visitors uint64 } `json:"comparison"`
	}
	get("/api/v1/stats/aggregate?from=2026-03-01&to=2026-03-31&compare=previous_period", &agg)
	if sampleRate(agg.SampleRate) != 0.1 {
		t.Fatalf("sample_rate = %v; want 0.1 (4,000+ events, reports sample above 500)", sampleRate(agg.SampleRate))
	}
	r := agg.Results
	for what, n := range map[string]uint64{"visitors": r.Visitors, "visits": r.Visits, "pageviews": r.Pageviews, "events": r.Events} {
		tenfold(what, n)
	}
	// 2,000 generated visitors and visits plus the fixture's 2 and 3;
	// 4,000 page views and events plus 4 and 5.
	near("visitors", float64(r.Visitors), 2002, 0.25)
	near("visits", float64(r.Visits), 2003, 0.25)
	near("pageviews", float64(r.Pageviews), 4004, 0.25)
	near("events", float64(r.Events), 4005, 0.25)
	near("bounce rate", r.BounceRate, 50, 0.2)
	near("views per visit", r.ViewsPerVisit, 2, 0.2)
	if agg.Comparison.Visitors != 0 {
		t.Errorf("previous period's visitors = %d; want 0 (nothing in February)", agg.Comparison.Visitors)
	}

	var ts struct {
		SampleRate *float64 `json:"sample_rate"`
		Results    struct {
			Points []struct{ Visitors, Pageviews uint64 } `json:"points"`
		} `json:"results"`
	}
	get("/api/v1/stats/timeseries?from=2026-03-01&to=2026-03-31&interval=day", &ts)
	var sum uint64
	for _, p := range ts.Results.Points {
		tenfold("a day's page views", p.Pageviews)
		sum += p.Pageviews
	}
	if sampleRate(ts.SampleRate) != 0.1 || sum != r.Pageviews {
		t.Errorf("time series: sample_rate %v, page views summed %d; want 0.1 and the aggregate's %d", sampleRate(ts.SampleRate), sum, r.Pageviews)
	}

	var bd struct {
		SampleRate *float64 `json:"sample_rate"`
		Results    struct {
			Rows []struct {
				Value     string
				Visitors  uint64
				Pageviews uint64
			} `json:"rows"`
		} `json:"results"`
	}
	get("/api/v1/stats/breakdown?from=2026-03-01&to=2026-03-31&dimension=browser", &bd)
	if sampleRate(bd.SampleRate) != 0.1 || len(bd.Results.Rows) < 2 {
		t.Fatalf("browser breakdown: sample_rate %v, %d rows; want 0.1 and Firefox and Chrome", sampleRate(bd.SampleRate), len(bd.Results.Rows))
	}
	for _, row := range bd.Results.Rows[:2] {
		tenfold(row.Value+"'s visitors", row.Visitors)
		near(row.Value+"'s visitors", float64(row.Visitors), 1000, 0.3)
	}

	// One day holding only the fixture's visit: exact, and said so.
	get("/api/v1/stats/aggregate?from=2026-03-12&to=2026-03-12", &agg)
	if sampleRate(agg.SampleRate) != 1 || agg.Results.Visitors != 1 || agg.Results.Pageviews != 1 {
		t.Errorf("12 March: sample_rate %v, %d visitors, %d page views; want 1, 1 and 1 (exact)", sampleRate(agg.SampleRate), agg.Results.Visitors, agg.Results.Pageviews)
	}
}

// sampleRate is a report's sample_rate, -1 when it has none.
func sampleRate(r *float64) float64 {
	if r == nil {
		return -1
	}
	return *r
}

func sampleAbove500(c *Config) { c.Store.SampleAbove(500) }

// sampledVisitors are TestSampledReports' 2,000 visitors of client shop.
func sampledVisitors() []*aluminiv1.Event {
	var evs []*aluminiv1.Event
	start := time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC) // after the fixture's days
	for v := range 2000 {
		visitor := uint64(1000 + v)
		pages := 3
		if v%2 == 0 {
			pages = 1
		}
		for i := range pages {
			ev := &aluminiv1.Event{ClientId: "shop", EventId: fmt.Sprintf("gen-%d-%d", v, i), VisitorId: visitor, SessionId: visitor * 10,
				TimestampMs: start.Add(time.Duration(v)*10*time.Minute + time.Duration(i)*time.Minute).UnixMilli(),
				Type:        aluminiv1.EventType_EVENT_TYPE_PAGEVIEW, Path: fmt.Sprintf("/p%d", i), Browser: []string{"Firefox", "Chrome"}[v%2]}
			ev.ReceivedAtMs = ev.TimestampMs
			evs = append(evs, ev)
		}
	}
	return evs
}

// TestSampledReportsOnCluster asks TestSampledReports' sampled reports of
// the two-shard cluster: a visitor's events lie on both shards (sharded by
// event), and each shard must sample the same visitors, so every answer
// equals the one-node answer.
func TestSampledReportsOnCluster(t *testing.T) {
	one, cluster := newEnv(t, sampleAbove500), newClusterEnv(t, sampleAbove500)
	insert(t, one.conn, sampledVisitors())
	insert(t, cluster.conn, sampledVisitors())
	for _, target := range []string{
		"/api/v1/stats/aggregate?from=2026-03-01&to=2026-03-31&compare=previous_period",
		"/api/v1/stats/timeseries?from=2026-03-01&to=2026-03-31&interval=day",
		"/api/v1/stats/breakdown?from=2026-03-01&to=2026-03-31&dimension=browser",
		"/api/v1/stats/breakdown?from=2026-03-01&to=2026-03-31&dimension=entry_page&filter=page:contains:p",
	} {
		_, _, want := request{target: target, auth: "Bearer " + shopKey}.do(t, one.h)
		status, _, got := request{target: target, auth: "Bearer " + shopKey}.do(t, cluster.h)
		if status != http.StatusOK || got != want || !strings.Contains(got, `"sample_rate":0.1`) {
			t.Errorf("GET %s on the cluster = %d\n%s\nwant, as on one node (sampled one in 10):\n%s", target, status, got, want)
		}
	}
}

package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const march = "from=2026-03-01&to=2026-03-31"

// goldenCase is one endpoint call whose whole answer is kept under
// testdata/golden, and whose key numbers are also checked by hand below.
type goldenCase struct {
	name, target string
	// want maps a JSON path (dot-separated, numbers index arrays) to the
	// hand-computed value from the fixture's comment.
	want map[string]any
}

var goldenCases = []goldenCase{
	{"aggregate", AggregatePath + "?" + march + "&goal=signup&compare=previous_period", map[string]any{
		"results.visitors": 2.0, "results.visits": 3.0, "results.pageviews": 4.0, "results.events": 5.0,
		"results.views_per_visit": 1.33, "results.bounce_rate": 66.67, "results.visit_duration": 60.0,
		"results.conversions": 1.0, "results.conversion_rate": 50.0,
		"comparison.visitors": 0.0, "previous.from": "2026-01-29T00:00:00Z",
	}},
	{"aggregate_with_bots", AggregatePath + "?" + march + "&include_bots=true", map[string]any{
		"results.visitors": 3.0, "results.visits": 4.0, "results.pageviews": 5.0,
	}},
	{"aggregate_berlin_today", AggregatePath + "?period=today&tz=Europe/Berlin", map[string]any{
		"from": "2026-03-12T00:00:00+01:00", "results.visitors": 1.0, "results.pageviews": 1.0,
	}},
	{"aggregate_filtered", AggregatePath + "?" + march + "&filter=country:is:DE&filter=page:is:/pricing", map[string]any{
		"results.visitors": 1.0, "results.pageviews": 1.0, "results.events": 2.0,
	}},
	{"aggregate_filter_in_not", AggregatePath + "?" + march + `&filter=country:in:["FR","XX"]&filter=page:is_not:/blog`, map[string]any{
		"results.visitors": 1.0, "results.pageviews": 1.0,
	}},
	{"aggregate_entry_page_filter", AggregatePath + "?" + march + "&filter=entry_page:is:/blog", map[string]any{
		"results.visitors": 1.0, "results.visits": 1.0,
	}},
	{"timeseries_day", TimeseriesPath + "?from=2026-03-04&to=2026-03-12&interval=day", map[string]any{
		"results.points.1.time": "2026-03-05T00:00:00Z", "results.points.1.visitors": 2.0, "results.points.1.pageviews": 3.0,
		"results.points.8.visitors": 1.0, "results.points.0.visitors": 0.0,
	}},
	{"timeseries_hour_berlin", TimeseriesPath + "?from=2026-03-05&to=2026-03-05&interval=hour&tz=Europe/Berlin", map[string]any{
		"results.points.11.time": "2026-03-05T11:00:00+01:00", "results.points.11.pageviews": 2.0, "results.points.12.visitors": 1.0,
	}},
	{"timeseries_week", TimeseriesPath + "?" + march + "&interval=week", map[string]any{"results.points.1.visitors": 2.0}},
	{"timeseries_month", TimeseriesPath + "?" + march + "&interval=month", map[string]any{"results.points.0.pageviews": 4.0}},
	{"breakdown_page", BreakdownPath + "?" + march + "&dimension=page", map[string]any{
		"results.rows.0.value": "/", "results.rows.0.visitors": 2.0, "results.rows.1.value": "/blog", "results.rows.2.value": "/pricing",
	}},
	{"breakdown_entry_page", BreakdownPath + "?" + march + "&dimension=entry_page", map[string]any{
		"results.rows.0.value": "/", "results.rows.0.visits": 2.0, "results.rows.1.value": "/blog",
	}},
	{"breakdown_exit_page", BreakdownPath + "?" + march + "&dimension=exit_page", map[string]any{
		"results.rows.0.value": "/pricing", "results.rows.1.value": "/", "results.rows.2.value": "/blog",
	}},
	{"breakdown_source", BreakdownPath + "?" + march + "&dimension=source", map[string]any{"results.rows.0.visitors": 1.0}},
	{"breakdown_search_term", BreakdownPath + "?" + march + "&dimension=search_term&filter=search_term:contains:SHOES", map[string]any{
		"results.rows.0.value": "running shoes", "results.rows.0.events": 3.0,
	}},
	{"breakdown_utm_campaign", BreakdownPath + "?" + march + "&dimension=utm_campaign", map[string]any{}},
	{"breakdown_browser_version", BreakdownPath + "?" + march + "&dimension=browser_version", map[string]any{
		"results.rows.0.value": "Firefox 120", "results.rows.1.value": "Chrome 121",
	}},
	{"breakdown_os_version", BreakdownPath + "?" + march + "&dimension=os_version", map[string]any{}},
	{"breakdown_device", BreakdownPath + "?" + march + "&dimension=device", map[string]any{"results.rows.0.value": "desktop", "results.rows.1.value": "mobile"}},
	{"breakdown_city", BreakdownPath + "?" + march + "&dimension=city&limit=1", map[string]any{"results.rows.0.value": "Berlin"}},
	{"breakdown_event_name", BreakdownPath + "?" + march + "&dimension=event_name", map[string]any{
		"results.rows.0.value": "signup", "results.rows.0.events": 1.0,
	}},
	{"breakdown_property", BreakdownPath + "?" + march + "&dimension=prop:plan", map[string]any{
		"results.rows.0.value": "pro", "results.rows.0.visitors": 1.0,
	}},
	{"realtime", RealtimePath, map[string]any{"results.current_visitors": 1.0}},
	{"funnel", FunnelPath + "?" + march + "&step=page:/&step=page:/pricing&step=event:signup&window=1h", map[string]any{
		"results.steps.0.visitors": 2.0, "results.steps.1.visitors": 1.0, "results.steps.1.drop_off": 1.0,
		"results.steps.1.drop_off_rate": 50.0, "results.steps.2.visitors": 1.0, "results.steps.2.conversion_rate": 50.0,
	}},
	{"retention", RetentionPath + "?from=2026-03-02&to=2026-03-15", map[string]any{
		"results.cohorts.0.week": "2026-03-02", "results.cohorts.0.visitors": 2.0, "results.cohorts.0.returning.1": 1.0,
		"results.cohorts.0.rates.1": 50.0, "results.cohorts.1.visitors": 0.0,
	}},
	{"export_json", ExportPath + "?visitor_id=2", map[string]any{
		"events.0.event_id": "s4", "events.1.path": "/blog", "events.1.type": "pageview",
		// Numbers are JSON numbers, the UInt64 ids strings (beyond 2^53).
		"events.0.is_new_visitor": 0.0, "events.0.screen_width": 0.0, "events.0.visitor_id": "2", "events.0.session_id": "21",
		"events.0.previous_visit": nil, // no previous visit: null, not the zero DateTime
	}},
	{"erasure_none", ErasurePath + "?visitor_id=2", map[string]any{}},
	{"openapi_is_served", OpenAPIPath, map[string]any{"openapi": "3.0.3"}},
}

// lookup walks a decoded JSON value along a dot path.
func lookup(v any, path string) (any, bool) {
	for _, part := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[part]; !ok {
				return nil, false
			}
		case []any:
			i := 0
			for _, c := range part {
				if c < '0' || c > '9' {
					return nil, false
				}
				i = i*10 + int(c-'0')
			}
			if i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// TestGoldenEndpoints calls every endpoint on the fixture, checks the
// hand-computed numbers and compares the whole answer with its golden file.
func TestGoldenEndpoints(t *testing.T) {
	e := newEnv(t)
	for _, tc := range goldenCases {
		checkGolden(t, e, tc, *update)
	}
}

// TestGoldenEndpointsOnCluster asks the same questions of a reporter on the
// sinker's cluster layout (Distributed tables over replicated local ones):
// every answer must equal the one-node golden file.
func TestGoldenEndpointsOnCluster(t *testing.T) {
	e := newClusterEnv(t)
	for _, tc := range goldenCases {
		checkGolden(t, e, tc, false)
	}
}

// checkGolden calls one endpoint and compares the answer with the
// hand-computed values and with its golden file (rewritten when update).
func checkGolden(t *testing.T, e *env, tc goldenCase, update bool) {
	t.Helper()
	code, _, body := request{target: tc.target, auth: "Bearer " + shopKey}.do(t, e.h)
	wantCode := http.StatusOK
	if tc.name == "erasure_none" {
		wantCode = http.StatusNotFound
	}
	if code != wantCode {
		t.Errorf("%s: GET %s = %d %s; want %d", tc.name, tc.target, code, body, wantCode)
		return
	}
	var doc any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Errorf("%s: body is not JSON: %v", tc.name, err)
		return
	}
	for path, want := range tc.want {
		if got, ok := lookup(doc, path); !ok || got != want {
			t.Errorf("%s: GET %s: %s = %v; want %v", tc.name, tc.target, path, got, want)
		}
	}
	if strings.Contains(body, "secret") || strings.Contains(body, "BlogBrowser") {
		t.Errorf("%s: client blog's data in shop's answer: %s", tc.name, body)
	}
	if tc.name == "openapi_is_served" {
		return
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, []byte(body), "", "  "); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "golden", tc.name+".json")
	if update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Errorf("%s: %v (run go test -update to create it)", tc.name, err)
		return
	}
	if !bytes.Equal(pretty.Bytes(), want) {
		t.Errorf("%s: GET %s =\n%s\nwant (%s)\n%s", tc.name, tc.target, pretty.String(), golden, want)
	}
}

func TestExportCSV(t *testing.T) {
	e := newEnv(t)
	code, h, body := request{target: ExportPath + "?visitor_id=1&format=csv", auth: "Bearer " + shopKey}.do(t, e.h)
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if code != http.StatusOK || h.Get("Content-Type") != "text/csv; charset=utf-8" || len(lines) != 4 {
		t.Fatalf("CSV export = %d %q, %d lines; want 200 text/csv with a header and 3 events:\n%s", code, h.Get("Content-Type"), len(lines), body)
	}
	if !strings.HasPrefix(lines[0], "client_id,event_id,type,") || !strings.Contains(lines[3], "signup") || !strings.Contains(lines[3], ",plan,pro,") {
		t.Errorf("CSV export =\n%s\nwant a header, then the signup event with its property last", body)
	}
	// Another client's key sees nothing of shop's visitor.
	code, _, body = request{target: ExportPath + "?visitor_id=1", auth: "Bearer " + blogKey}.do(t, e.h)
	if code != http.StatusOK || !strings.Contains(body, `"events":[]`) {
		t.Errorf("blog exporting shop's visitor = %d %s; want 200 with no events", code, body)
	}
	_ = url.Values{}
}

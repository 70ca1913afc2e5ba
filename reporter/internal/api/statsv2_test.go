package api

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
)

const march2026 = `["2026-03-01", "2026-03-31"]`

// v2Answer is the decoded answer of /api/v2/query.
type v2Answer struct {
	Results []struct {
		Metrics    []float64 `json:"metrics"`
		Dimensions []string  `json:"dimensions"`
	} `json:"results"`
	Meta  map[string]any `json:"meta"`
	Query map[string]any `json:"query"`
}

// table is rows of dimension values (joined) and their metrics, in order.
type table []struct {
	dims    string
	metrics map[string]float64
}

func (e *env) v2(t *testing.T, key, body string) (int, string) {
	t.Helper()
	code, _, out := request{method: http.MethodPost, target: StatsV2Path, auth: "Bearer " + key, body: body}.do(t, e.h)
	return code, out
}

// v1 asks a v1 endpoint of shop's reports over March 2026.
func (e *env) v1(t *testing.T, path string, params url.Values) map[string]any {
	t.Helper()
	if params.Get("period") == "" {
		params.Set("from", "2026-03-01")
		params.Set("to", "2026-03-31")
	}
	code, _, body := request{target: path + "?" + params.Encode(), auth: "Bearer " + shopKey}.do(t, e.h)
	if code != http.StatusOK {
		t.Fatalf("GET %s?%s = %d %s", path, params.Encode(), code, body)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	return out["results"].(map[string]any)
}

func num(v any) float64 {
	f, _ := v.(float64)
	return f
}

// countsOf are the metrics a v1 time-series point or breakdown row gives,
// and views per visit from them.
func countsOf(m map[string]any) map[string]float64 {
	out := map[string]float64{}
	for _, k := range []string{"visitors", "visits", "pageviews", "events"} {
		out[k] = num(m[k])
	}
	if out["visits"] > 0 {
		out["views_per_visit"] = math.Round(out["pageviews"]/out["visits"]*100) / 100
	}
	return out
}

func TestStatsV2AgainstV1(t *testing.T) {
	e := newEnv(t)
	filter := func(fs ...string) url.Values { return url.Values{"filter": fs} }
	aggregate := func(params url.Values) func(t *testing.T) table {
		return func(t *testing.T) table {
			r := e.v1(t, AggregatePath, params)
			m := map[string]float64{}
			for k, v := range r {
				m[k] = num(v)
			}
			return table{{"", m}}
		}
	}
	breakdown := func(dim string, params url.Values, rename func(string) string) func(t *testing.T) table {
		return func(t *testing.T) table {
			params.Set("dimension", dim)
			params.Set("limit", "100")
			r := e.v1(t, BreakdownPath, params)
			total := num(e.v1(t, AggregatePath, url.Values{"filter": params["filter"]})["visitors"])
			var out table
			for _, row := range r["rows"].([]any) {
				m := row.(map[string]any)
				c := countsOf(m)
				c["percentage"] = math.Round(c["visitors"]/total*10000) / 100
				v := m["value"].(string)
				if rename != nil {
					v = rename(v)
				}
				out = append(out, struct {
					dims    string
					metrics map[string]float64
				}{v, c})
			}
			// Plausible's default order: the first metric (visitors here)
			// descending, then the value.
			sort.SliceStable(out, func(i, j int) bool {
				if out[i].metrics["visitors"] != out[j].metrics["visitors"] {
					return out[i].metrics["visitors"] > out[j].metrics["visitors"]
				}
				return out[i].dims < out[j].dims
			})
			return out
		}
	}
	series := func(interval string, params url.Values, layout string) func(t *testing.T) table {
		return func(t *testing.T) table {
			params.Set("interval", interval)
			r := e.v1(t, TimeseriesPath, params)
			var out table
			for _, pt := range r["points"].([]any) {
				m := pt.(map[string]any)
				if num(m["events"]) == 0 {
					continue
				}
				label := strings.Replace(m["time"].(string)[:len(layout)], "T", " ", 1)
				out = append(out, struct {
					dims    string
					metrics map[string]float64
				}{label, countsOf(m)})
			}
			return out
		}
	}
	goal := func(t *testing.T) table {
		counted := aggregate(filter("event_name:is:signup"))(t)
		counted[0].metrics["conversion_rate"] = num(e.v1(t, AggregatePath, url.Values{"goal": {"signup"}})["conversion_rate"])
		return counted
	}
	capital := func(s string) string { return strings.ToUpper(s[:1]) + s[1:] }
	counts := `"visitors", "visits", "pageviews", "events", "views_per_visit"`

	for _, tc := range []struct {
		name, body string
		want       func(t *testing.T) table
	}{
		{"every total", `"metrics": ["visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration", "events"]`, aggregate(url.Values{})},
		{"is", `"metrics": ["visitors", "pageviews", "bounce_rate"], "filters": [["is", "visit:country", ["DE"]]]`, aggregate(filter("country:is:DE"))},
		{"is_not", `"metrics": ["visitors", "events"], "filters": [["is_not", "visit:country", ["DE"]]]`, aggregate(filter("country:is_not:DE"))},
		{"is of two", `"metrics": ["visitors", "events"], "filters": [["is", "visit:country", ["DE", "FR"]]]`, aggregate(filter(`country:in:["DE","FR"]`))},
		{"contains", `"metrics": ["pageviews", "events"], "filters": [["contains", "event:page", ["PRI"]]]`, aggregate(filter("page:contains:pri"))},
		{"contains_not", `"metrics": ["pageviews", "events"], "filters": [["contains_not", "event:page", ["blog"]]]`, aggregate(filter(`page:in:["/","/pricing"]`))},
		{"matches", `"metrics": ["visitors", "pageviews", "events"], "filters": [["matches", "event:page", ["^/pri.*g$"]]]`, aggregate(filter("page:is:/pricing"))},
		{"not", `"metrics": ["visitors", "events"], "filters": [["not", ["is", "visit:browser", ["Firefox"]]]]`, aggregate(filter("browser:is_not:Firefox"))},
		{"and", `"metrics": ["visitors", "events"], "filters": [["and", [["is", "visit:country", ["DE"]], ["is", "visit:browser", ["Firefox"]]]]]`, aggregate(filter("country:is:DE", "browser:is:Firefox"))},
		{"or", `"metrics": ["visitors", "pageviews"], "filters": [["or", [["is", "event:page", ["/"]], ["is", "event:page", ["/blog"]]]]]`, aggregate(filter(`page:in:["/","/blog"]`))},
		{"goal", `"metrics": ["visitors", "events", "conversion_rate"], "filters": [["is", "event:goal", ["signup"]]]`, goal},
		{"goal by source", `"metrics": ["visitors", "events"], "dimensions": ["visit:source"], "filters": [["is", "event:goal", ["signup"]]]`, breakdown("source", filter("event_name:is:signup"), nil)},
		{"preset 7d", `"metrics": ["visitors", "pageviews"], "date_range": "7d"`, aggregate(url.Values{"period": {"7d"}})},
		{"event:page", `"metrics": [` + counts + `], "dimensions": ["event:page"]`, breakdown("page", url.Values{}, nil)},
		{"event:name", `"metrics": ["visitors", "events"], "dimensions": ["event:name"]`, breakdown("event_name", url.Values{}, nil)},
		{"visit:source", `"metrics": ["visitors", "visits"], "dimensions": ["visit:source"]`, breakdown("source", url.Values{}, nil)},
		{"visit:referrer", `"metrics": ["visitors", "events"], "dimensions": ["visit:referrer"]`, breakdown("referrer", url.Values{}, nil)},
		{"visit:utm_source", `"metrics": ["visitors", "pageviews"], "dimensions": ["visit:utm_source"]`, breakdown("utm_source", url.Values{}, nil)},
		{"visit:utm_medium", `"metrics": ["visitors"], "dimensions": ["visit:utm_medium"]`, breakdown("utm_medium", url.Values{}, nil)},
		{"visit:utm_campaign", `"metrics": ["visitors", "events"], "dimensions": ["visit:utm_campaign"]`, breakdown("utm_campaign", url.Values{}, nil)},
		{"visit:device", `"metrics": ["visitors", "events"], "dimensions": ["visit:device"]`, breakdown("device", url.Values{}, capital)},
		{"visit:device filter", `"metrics": ["visitors", "events"], "dimensions": ["visit:browser"], "filters": [["is", "visit:device", ["Mobile"]]]`, breakdown("browser", filter("device:is:mobile"), nil)},
		{"visit:os", `"metrics": ["visitors", "visits"], "dimensions": ["visit:os"]`, breakdown("os", url.Values{}, nil)},
		{"visit:country percentage", `"metrics": ["visitors", "percentage"], "dimensions": ["visit:country"]`, breakdown("country", url.Values{}, nil)},
		{"event:props", `"metrics": ["visitors", "events"], "dimensions": ["event:props:plan"]`, breakdown("prop:plan", url.Values{}, nil)},
		{"breakdown filtered", `"metrics": ["visitors", "pageviews", "percentage"], "dimensions": ["event:page"], "filters": [["is", "visit:country", ["FR"]]]`, breakdown("page", filter("country:is:FR"), nil)},
		{"time:day", `"metrics": [` + counts + `], "dimensions": ["time:day"]`, series("day", url.Values{}, "2006-01-02")},
		{"time auto", `"metrics": ["visitors", "pageviews"], "dimensions": ["time"]`, series("day", url.Values{}, "2006-01-02")},
		{"time:week", `"metrics": ["visitors", "events"], "dimensions": ["time:week"]`, series("week", url.Values{}, "2006-01-02")},
		{"time:month", `"metrics": ["visitors", "visits"], "dimensions": ["time:month"]`, series("month", url.Values{}, "2006-01-02")},
		{"time:hour", `"metrics": ["visitors", "pageviews"], "dimensions": ["time:hour"], "filters": [["is", "visit:country", ["DE"]]]`, series("hour", filter("country:is:DE"), "2006-01-02T15:04:05")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"site_id": "shop", ` + tc.body
			if !strings.Contains(tc.body, "date_range") {
				body += `, "date_range": ` + march2026
			}
			body += "}"
			checkV2(t, e, body, tc.want(t))
		})
	}

	// order_by and pagination: shop's pages by visitors ascending, then
	// the second row only.
	pages := breakdown("page", url.Values{}, nil)(t)
	asc := append(table(nil), pages...)
	sort.SliceStable(asc, func(i, j int) bool {
		if asc[i].metrics["visitors"] != asc[j].metrics["visitors"] {
			return asc[i].metrics["visitors"] < asc[j].metrics["visitors"]
		}
		return asc[i].dims > asc[j].dims
	})
	checkV2(t, e, `{"site_id": "shop", "metrics": ["visitors"], "date_range": `+march2026+`, "dimensions": ["event:page"],
		"order_by": [["visitors", "asc"], ["event:page", "desc"]]}`, asc)
	checkV2(t, e, `{"site_id": "shop", "metrics": ["visitors", "pageviews"], "date_range": `+march2026+`, "dimensions": ["event:page"],
		"pagination": {"limit": 1, "offset": 1}}`, pages[1:2])
}

// checkV2 asks body of shop and compares the answer with want, row by
// row and metric by metric.
func checkV2(t *testing.T, e *env, body string, want table) {
	t.Helper()
	code, out := e.v2(t, shopKey, body)
	if code != http.StatusOK {
		t.Fatalf("POST %s = %d %s", body, code, out)
	}
	var ans v2Answer
	if err := json.Unmarshal([]byte(out), &ans); err != nil {
		t.Fatal(err)
	}
	var q struct {
		Metrics []string `json:"metrics"`
	}
	if err := json.Unmarshal([]byte(body), &q); err != nil {
		t.Fatal(err)
	}
	if len(want) == 0 {
		t.Fatalf("the v1 answer to compare %s with is empty", body)
	}
	if len(ans.Results) != len(want) {
		t.Fatalf("POST %s = %d rows (%s); v1 says %d", body, len(ans.Results), out, len(want))
	}
	for i, r := range ans.Results {
		if got := strings.Join(r.Dimensions, ","); got != want[i].dims {
			t.Errorf("row %d: dimensions %q; v1 says %q (answer %s)", i, got, want[i].dims, out)
		}
		for j, m := range q.Metrics {
			if w, ok := want[i].metrics[m]; !ok || r.Metrics[j] != w {
				t.Errorf("row %d (%s): %s = %v; v1 says %v (answer %s)", i, want[i].dims, m, r.Metrics[j], w, out)
			}
		}
	}
}

func TestStatsV2Refusals(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		body, want string
	}{
		{`"metrics": ["time_on_page"]`, "Unsupported metric `time_on_page`"},
		{`"metrics": []`, "metrics must not be empty"},
		{`"metrics": ["visitors"], "dimensions": ["event:page", "visit:country"]`, "one dimension at a time"},
		{`"metrics": ["visitors"], "dimensions": ["visit:city"]`, "Unsupported dimension `visit:city`"},
		{`"metrics": ["bounce_rate"], "dimensions": ["visit:source"]`, "for the whole range only"},
		{`"metrics": ["visit_duration"], "dimensions": ["time:day"]`, "for the whole range only"},
		{`"metrics": ["conversion_rate"]`, "goal filter"},
		{`"metrics": ["percentage"]`, "only be queried with a dimension"},
		{`"metrics": ["visitors"], "filters": [["contains", "event:page", ["a"], {"case_sensitive": false}]]`, "Unsupported filter modifiers"},
		{`"metrics": ["visitors"], "filters": [["has_done", ["is", "event:name", ["signup"]]]]`, "Unsupported filter operator `has_done`"},
		{`"metrics": ["visitors"], "filters": [["matches", "event:page", ["("]]]`, "not a regular expression"},
		{`"metrics": ["visitors"], "filters": [["is", "event:goal", ["a", "b"]]]`, "Unsupported goal filter"},
		{`"metrics": ["visitors"], "include": {"time_labels": true}`, "Unsupported include"},
		{`"metrics": ["visitors"], "order_by": [["visits", "desc"]]`, "neither a metric nor a dimension"},
		{`"metrics": ["visitors"], "pagination": {"limit": 0}`, "Invalid pagination"},
		{`"metrics": ["visitors"], "imports": true`, "unknown field"},
	} {
		body := `{"site_id": "shop", "date_range": "28d", ` + tc.body + `}`
		code, out := e.v2(t, shopKey, body)
		if code != http.StatusBadRequest || !strings.Contains(out, tc.want) {
			t.Errorf("POST %s = %d %s; want 400 saying %q", body, code, out, tc.want)
		}
	}
	for _, dr := range []string{`"yesterday"`, `["2026-03-31", "2026-03-01"]`, `["2020-01-01", "2026-01-01"]`, `["March", "April"]`} {
		body := fmt.Sprintf(`{"site_id": "shop", "metrics": ["visitors"], "date_range": %s}`, dr)
		if code, out := e.v2(t, shopKey, body); code != http.StatusBadRequest || !strings.Contains(out, "date_range") {
			t.Errorf("POST %s = %d %s; want 400 about date_range", body, code, out)
		}
	}
}

// TestStatsV2Isolation: a key reads its own client only, whatever site_id
// says, and another client's values never show.
func TestStatsV2Isolation(t *testing.T) {
	e := newEnv(t)
	body := `{"site_id": "shop", "metrics": ["visitors"], "date_range": ` + march2026 + `, "dimensions": ["visit:browser"]}`
	if code, out := e.v2(t, blogKey, body); code != http.StatusUnauthorized || !strings.Contains(out, msgInvalidKey) {
		t.Errorf("blog's key asking for shop = %d %s; want 401", code, out)
	}
	if code, out := e.v2(t, "alm_unknown", body); code != http.StatusUnauthorized {
		t.Errorf("an unknown key = %d %s; want 401", code, out)
	}
	code, out := e.v2(t, shopKey, body)
	if code != http.StatusOK || strings.Contains(out, "BlogBrowser") || !strings.Contains(out, "Firefox") {
		t.Errorf("shop's browsers = %d %s; want shop's only", code, out)
	}
	code, out = e.v2(t, blogKey, strings.Replace(body, `"shop"`, `"blog"`, 1))
	if code != http.StatusOK || !strings.Contains(out, "BlogBrowser") || strings.Contains(out, "Firefox") {
		t.Errorf("blog's browsers = %d %s; want blog's only", code, out)
	}
	if code, _, _ := (request{target: StatsV2Path, auth: "Bearer " + shopKey}).do(t, e.h); code != http.StatusMethodNotAllowed {
		t.Errorf("GET %s = %d; want 405", StatsV2Path, code)
	}
}

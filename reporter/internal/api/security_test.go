package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aluminiapp/pipeline/lib/eventually"
	"github.com/aluminiapp/pipeline/lib/registry"
	"github.com/aluminiapp/pipeline/reporter/internal/query"
)

// TestIsolation: a key for one client asking about another gets the same
// 401 as a bad key, and each key sees only its own numbers.
func TestIsolation(t *testing.T) {
	e := newEnv(t)
	invalid := `{"error":"` + msgInvalidKey + `"}`
	for _, tc := range []struct{ name, target, auth string }{
		{"unknown key", AggregatePath, "Bearer alm_nope"},
		{"key hash as key", AggregatePath, "Bearer " + registry.HashAPIKey(shopKey)},
		{"write key as API key", AggregatePath, "Bearer " + shopWriteKey},
		{"other client's id", AggregatePath + "?client_id=blog", "Bearer " + shopKey},
		{"unknown client id", AggregatePath + "?client_id=nosuch", "Bearer " + shopKey},
		{"client id twice", AggregatePath + "?client_id=shop&client_id=blog", "Bearer " + shopKey},
		{"operator endpoint with a client key", OpClientsPath, "Bearer " + shopKey},
	} {
		code, h, body := request{target: tc.target, auth: tc.auth}.do(t, e.h)
		if tc.name == "operator endpoint with a client key" {
			invalid = `{"error":"invalid operator key"}`
		}
		if code != http.StatusUnauthorized || strings.TrimSpace(body) != invalid || h.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: GET %s = %d %s; want 401 %s", tc.name, tc.target, code, body, invalid)
		}
	}
	code, _, body := request{target: AggregatePath + "?" + march, auth: "Bearer " + blogKey}.do(t, e.h)
	if code != http.StatusOK || !strings.Contains(body, `"visitors":1,`) || !strings.Contains(body, `"client_id":"blog"`) {
		t.Errorf("blog aggregate = %d %s; want blog's one visitor", code, body)
	}
}

// injectionCorpus are values that break naive SQL building.
var injectionCorpus = []string{
	`'`, `''`, `\`, `\'`, `' OR '1'='1`, `' OR 1=1 --`, `/* comment */`, `-- comment`, `?`, `??`, `'?'`,
	"\x00", `"); DROP TABLE events; --`, `' UNION ALL SELECT client_id FROM events --`,
	"Ünïcödé ✓ 日本語 🙂", `%27`, `{{name:String}}`, `{x:String}`, "line\nbreak\ttab",
	strings.Repeat("long'", 400), strings.Repeat("x", 3000),
}

// shopValues are all the values client shop's rows hold in any dimension.
func shopValues() map[string]bool {
	m := map[string]bool{"": true}
	for _, ev := range fixtureEvents() {
		if ev.ClientId != "shop" {
			continue
		}
		for _, v := range []string{ev.Path, ev.Hostname, ev.Referrer, ev.ReferrerSource, ev.ReferrerMedium, ev.SearchTerm,
			ev.UtmSource, ev.UtmMedium, ev.UtmCampaign, ev.UtmTerm, ev.UtmContent, ev.Browser, ev.Browser + " " + ev.BrowserVersion,
			ev.Os, ev.Os + " " + ev.OsVersion, ev.Country, ev.Region, ev.City, ev.Name, "desktop", "mobile", "bot", "pro"} {
			m[v] = true
		}
	}
	return m
}

// TestInjectionCorpus sends every corpus value through every filter
// operator of every dimension and as a breakdown's property key: each
// answer is 200 with only shop's values, or a 400 of ours; never a
// database error, never another client's rows.
func TestInjectionCorpus(t *testing.T) {
	e := newEnv(t)
	allowed := shopValues()
	dims := append(query.DimensionNames()[:len(query.DimensionNames())-1], "prop:plan")
	check := func(target string) {
		t.Helper()
		code, _, body := request{target: target, auth: "Bearer " + shopKey}.do(t, e.h)
		target = truncate(target)
		lower := strings.ToLower(body)
		if strings.Contains(lower, "exception") || strings.Contains(lower, "clickhouse") || strings.Contains(lower, "code:") ||
			strings.Contains(body, "secret") || strings.Contains(body, "BlogBrowser") || strings.Contains(body, `"XX"`) {
			t.Errorf("GET %s = %d %s; leaks an error or another client's data", target, code, body)
			return
		}
		switch code {
		case http.StatusOK:
			var rep struct {
				Results struct {
					Rows []query.Row `json:"rows"`
				} `json:"results"`
			}
			if err := json.Unmarshal([]byte(body), &rep); err != nil {
				t.Errorf("GET %s: %v", target, err)
			}
			for _, r := range rep.Results.Rows {
				if !allowed[r.Value] {
					t.Errorf("GET %s: row %q is not one of shop's values", target, r.Value)
				}
			}
		case http.StatusBadRequest:
			if !strings.HasPrefix(body, `{"error":"parameter`) && !strings.HasPrefix(body, `{"error":"bad parameter`) {
				t.Errorf("GET %s = 400 %s; want one of our parameter errors", target, body)
			}
		default:
			t.Errorf("GET %s = %d %s; want 200 or 400", target, code, body)
		}
	}
	for i, v := range injectionCorpus {
		for j, d := range dims {
			op := []string{"is", "is_not", "contains", "in"}[(i+j)%4]
			val := v
			if op == "in" {
				b, _ := json.Marshal([]string{v, "/"})
				val = string(b)
			}
			check(BreakdownPath + "?" + march + "&dimension=" + url.QueryEscape(dims[(j+1)%len(dims)]) +
				"&filter=" + url.QueryEscape(d+":"+op+":"+val))
		}
		check(BreakdownPath + "?" + march + "&dimension=" + url.QueryEscape("prop:"+v))
		check(AggregatePath + "?" + march + "&goal=" + url.QueryEscape(v))
		check(FunnelPath + "?" + march + "&step=" + url.QueryEscape("page:"+v) + "&step=" + url.QueryEscape("event:"+v))
		check(AggregatePath + "?" + march + "&tz=" + url.QueryEscape(v))
	}
}

// waitErasureDone polls the erasure status of a visitor until the erasure
// as a whole (not just one of its mutations) is done, and returns the
// last status body.
func waitErasureDone(t *testing.T, e *env, auth, visitor string) string {
	t.Helper()
	var code int
	var body string
	if !eventually.Within(20*time.Second, func() bool {
		// The reporter's background loop, run as often as the test polls.
		if _, err := e.h.cfg.Store.FinishErasures(context.Background()); err != nil {
			t.Fatal(err)
		}
		code, _, body = request{target: ErasurePath + "?visitor_id=" + visitor, auth: auth}.do(t, e.h)
		var status struct{ Done bool }
		return code == http.StatusOK && json.Unmarshal([]byte(body), &status) == nil && status.Done
	}) {
		t.Fatalf("erasure status = %d %s; not done within 20s", code, body)
	}
	return body
}

// TestErasureStaysGone erases visitor 1, waits for the mutation, replays
// the visitor's events as a Kafka replay would, and checks that reports
// and exports still do not show them. On one node, and on the sinker's
// cluster layout (the two shards of deploy/clickhouse/cluster.sh),
// where the mutations run ON CLUSTER on the local tables.
func TestErasureStaysGone(t *testing.T) {
	t.Run("one node", func(t *testing.T) { testErasureStaysGone(t, newEnv(t)) })
	t.Run("cluster", func(t *testing.T) { testErasureStaysGone(t, newClusterEnv(t)) })
}

func testErasureStaysGone(t *testing.T, e *env) {
	auth := "Bearer " + shopKey
	// Another client's key cannot erase shop's visitor: it erases its own
	// (empty) visitor 1, and shop's numbers stay.
	if code, _, body := (request{method: http.MethodPost, target: ErasurePath + "?visitor_id=1", auth: "Bearer " + blogKey}).do(t, e.h); code >= 300 {
		t.Fatalf("blog erasing its visitor 1 = %d %s", code, body)
	}
	if _, _, body := (request{target: AggregatePath + "?" + march, auth: auth}).do(t, e.h); !strings.Contains(body, `"visitors":2,`) {
		t.Fatalf("after blog's erasure, shop's aggregate = %s; want 2 visitors still", body)
	}
	code, _, body := request{method: http.MethodPost, target: ErasurePath + "?visitor_id=1", auth: auth}.do(t, e.h)
	if code != http.StatusAccepted && code != http.StatusOK {
		t.Fatalf("POST erasure = %d %s; want 202", code, body)
	}
	body = waitErasureDone(t, e, auth, "1")
	if !strings.Contains(body, `"state":"done"`) {
		t.Errorf("erasure status when done = %s; want state done", body)
	}
	var left uint64
	if err := e.conn.QueryRow(context.Background(), "SELECT count() FROM events WHERE client_id = 'shop' AND visitor_id = 1").Scan(&left); err != nil || left != 0 {
		t.Fatalf("rows of the erased visitor after the mutation = %d, %v; want 0", left, err)
	}
	var blogLeft uint64
	if err := e.conn.QueryRow(context.Background(), "SELECT count() FROM events WHERE client_id = 'blog'").Scan(&blogLeft); err != nil || blogLeft != 1 {
		t.Fatalf("blog rows after shop's erasure = %d, %v; want 1", blogLeft, err)
	}
	// A replay writes the visitor's events again.
	var replay = fixtureEvents()[:3]
	insert(t, e.conn, replay)
	for _, target := range []string{AggregatePath + "?" + march, ExportPath + "?visitor_id=1", BreakdownPath + "?" + march + "&dimension=page"} {
		_, _, body := request{target: target, auth: auth}.do(t, e.h)
		if strings.Contains(body, "/pricing") || strings.Contains(body, `"s1"`) || strings.Contains(body, `"visitors":2,`) {
			t.Errorf("after erasure and replay, GET %s = %s; the erased visitor shows", target, body)
		}
	}
	// The reporter's background loop finds the replayed rows and erases
	// them again, so analysts querying ClickHouse do not see them either.
	again, err := e.h.cfg.Store.EraseReturned(context.Background(), fixtureNow)
	if err != nil || again != 1 {
		t.Fatalf("EraseReturned = %d, %v; want 1 visitor erased again", again, err)
	}
	waitErasureDone(t, e, auth, "1")
	if err := e.conn.QueryRow(context.Background(), "SELECT count() FROM events WHERE client_id = 'shop' AND visitor_id = 1").Scan(&left); err != nil || left != 0 {
		t.Errorf("replayed rows of the erased visitor after the second erasure = %d, %v; want 0", left, err)
	}
	if again, err := e.h.cfg.Store.EraseReturned(context.Background(), fixtureNow); err != nil || again != 0 {
		t.Errorf("EraseReturned with nothing back = %d, %v; want 0", again, err)
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RateLimit, c.RateBurst = 0.5, 2 })
	target := RealtimePath
	for i := 0; i < 2; i++ {
		if code, _, body := (request{target: target, auth: "Bearer " + shopKey}).do(t, e.h); code != http.StatusOK {
			t.Fatalf("request %d = %d %s; want 200 within the burst", i+1, code, body)
		}
	}
	code, h, body := request{target: target, auth: "Bearer " + shopKey}.do(t, e.h)
	if code != http.StatusTooManyRequests || h.Get("Retry-After") != "2" || !strings.HasPrefix(body, `{"error":"rate limit`) {
		t.Errorf("third request = %d Retry-After %q %s; want 429 Retry-After 2", code, h.Get("Retry-After"), body)
	}
	// Another key has its own bucket.
	if code, _, body := (request{target: target, auth: "Bearer " + blogKey}).do(t, e.h); code != http.StatusOK {
		t.Errorf("blog after shop was limited = %d %s; want 200", code, body)
	}
}

func TestRefusals(t *testing.T) {
	e := newEnv(t)
	auth := "Bearer " + shopKey
	for _, tc := range []struct {
		name, method, target string
		code                 int
		want                 string
	}{
		{"no key", "", AggregatePath, 401, msgMissingKey},
		{"bad from", "", AggregatePath + "?from=yesterday", 400, `parameter \"from\"`},
		{"over two years", "", AggregatePath + "?from=2024-03-01&to=2026-03-01", 400, "2 years"},
		{"unknown parameter", "", AggregatePath + "?form=2026-03-01", 400, `unknown parameter \"form\"`},
		{"repeated parameter", "", AggregatePath + "?to=2026-03-01&to=2026-03-02", 400, "2 times"},
		{"period and from", "", AggregatePath + "?period=7d&from=2026-03-01", 400, "either a period"},
		{"bad period", "", AggregatePath + "?period=week", 400, `parameter \"period\"`},
		{"bad tz", "", AggregatePath + "?tz=Mars/Olympus", 400, "IANA"},
		{"tz Local", "", AggregatePath + "?tz=Local", 400, "IANA"},
		{"bad filter", "", AggregatePath + "?filter=page", 400, `parameter \"filter\"`},
		{"bad op", "", AggregatePath + "?filter=page:like:x", 400, "operator"},
		{"bad in", "", AggregatePath + "?filter=page:in:/a", 400, "JSON array"},
		{"no dimension", "", BreakdownPath, 400, "dimension"},
		{"bad dimension", "", BreakdownPath + "?dimension=password", 400, "unknown dimension"},
		{"limit too big", "", BreakdownPath + "?dimension=page&limit=100000", 400, "limit"},
		{"hourly two years", "", TimeseriesPath + "?from=2024-04-01&to=2026-03-01&interval=hour", 413, "buckets"},
		{"one step funnel", "", FunnelPath + "?step=page:/", 400, "2-8 steps"},
		{"bad visitor", "", ExportPath + "?visitor_id=abc", 400, "visitor_id"},
		{"bad format", "", ExportPath + "?visitor_id=1&format=xml", 400, "format"},
		{"wrong method", http.MethodPost, AggregatePath, 405, "method POST not allowed"},
		{"unknown path", "", "/api/v1/stats/nope", 404, "no such endpoint"},
	} {
		a := auth
		if tc.name == "no key" {
			a = ""
		}
		code, h, body := request{method: tc.method, target: tc.target, auth: a}.do(t, e.h)
		if code != tc.code || !strings.HasPrefix(body, `{"error":"`) || !strings.Contains(body, tc.want) || h.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %s = %d %s; want %d mentioning %s", tc.name, tc.target, code, body, tc.code, tc.want)
		}
	}
}

// TestFinishErasuresWithoutStatusPolls erases a visitor and never asks for
// the status: the reporter's background loop (Store.FinishErasures) must
// delete the visitor's rows and finish the erasure by itself.
func TestFinishErasuresWithoutStatusPolls(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if code, _, body := (request{method: http.MethodPost, target: ErasurePath + "?visitor_id=2", auth: "Bearer " + shopKey}).do(t, e.h); code >= 300 {
		t.Fatalf("POST erasure = %d %s", code, body)
	}
	var pending int
	if !eventually.Within(20*time.Second, func() bool {
		left, err := e.h.cfg.Store.FinishErasures(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pending = left
		return left == 0
	}) {
		t.Fatalf("%d erasures still pending after 20s", pending)
	}
	// Finished means the visitor's rows are gone.
	var left uint64
	if err := e.conn.QueryRow(ctx, "SELECT count() FROM events WHERE client_id = 'shop' AND visitor_id = 2").Scan(&left); err != nil || left != 0 {
		t.Errorf("rows of visitor 2 after FinishErasures reported none pending = %d, %v; want 0", left, err)
	}
	if code, _, body := (request{target: ErasurePath + "?visitor_id=2", auth: "Bearer " + shopKey}).do(t, e.h); code != http.StatusOK || !strings.Contains(body, `"state":"done"`) {
		t.Errorf("erasure status after FinishErasures = %d %s; want done", code, body)
	}
}

// TestErasureRefusedOnLayoutMismatch runs a reporter configured for one
// node on the sinker's cluster layout: its mutations would reach one shard
// (and name tables the other nodes lack), so erasure is refused with 503
// and a message saying what to set, and nothing is mutated or recorded.
func TestErasureRefusedOnLayoutMismatch(t *testing.T) {
	e := newClusterEnv(t)
	ctx := context.Background()
	single, err := query.NewStore(e.conn, prometheus.NewRegistry(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	e.h.cfg.Store = single // as the reporter runs without -clickhouse-cluster
	code, _, body := (request{method: http.MethodPost, target: ErasurePath + "?visitor_id=2", auth: "Bearer " + shopKey}).do(t, e.h)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"error":"erasure is unavailable: the reporter's cluster setting does not match`) {
		t.Fatalf("POST erasure with the wrong layout = %d %s; want 503 saying the cluster setting does not match", code, body)
	}
	var mutations, records uint64
	if err := e.conn.QueryRow(ctx, "SELECT count() FROM system.mutations WHERE database = currentDatabase()").Scan(&mutations); err != nil {
		t.Fatal(err)
	}
	if err := e.conn.QueryRow(ctx, "SELECT count() FROM erased_visitors").Scan(&records); err != nil {
		t.Fatal(err)
	}
	if mutations != 0 || records != 0 {
		t.Errorf("after the refused erasure: %d mutations, %d erased_visitors rows; want none", mutations, records)
	}
}

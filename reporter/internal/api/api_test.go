package api

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/chtest"
	"github.com/aluminiapp/pipeline/lib/registry"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
	"github.com/aluminiapp/pipeline/reporter/internal/query"
	"github.com/aluminiapp/pipeline/sinker/schema"
)

// API keys of the fixture clients. The registry holds only their hashes.
const (
	shopKey      = "alm_shop0000000000000000000000000000000000000000"
	blogKey      = "alm_blog0000000000000000000000000000000000000000"
	shopWriteKey = "wk_shop"
)

// fixtureNow is the clock of the tests that use the default range.
var fixtureNow = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

// newRegistry writes a registry with the clients shop and blog.
func newRegistry(t *testing.T) registry.Registry {
	t.Helper()
	path := filepath.Join(t.TempDir(), "clients.yaml")
	doc := `
clients:
  - id: shop
    write_keys: [` + shopWriteKey + `]
    api_key_hashes: ["` + registry.HashAPIKey(shopKey) + `"]
  - id: blog
    write_keys: [wk_blog]
    api_key_hashes: ["` + registry.HashAPIKey(blogKey) + `"]
`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	reg, err := registry.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func at(s string) int64 {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UnixMilli()
}

func pageview(client, id string, visitor uint64, ts string) *aluminiv1.Event {
	return &aluminiv1.Event{
		ClientId: client, EventId: id, Type: aluminiv1.EventType_EVENT_TYPE_PAGEVIEW,
		TimestampMs: at(ts), ReceivedAtMs: at(ts), VisitorId: visitor, Path: "/",
	}
}

func custom(client, id string, visitor uint64, ts string) *aluminiv1.Event {
	ev := pageview(client, id, visitor, ts)
	ev.Type, ev.Name, ev.Path = aluminiv1.EventType_EVENT_TYPE_CUSTOM, "signup", ""
	return ev
}

// fixture is the seeded data. Expected totals in the tests are counted by
// hand from this list.
func fixture() (first, replay []*aluminiv1.Event) {
	bot := pageview("shop", "s5", 3, "2026-03-05T11:00:00Z")
	bot.IsBot, bot.DeviceType = true, aluminiv1.DeviceType_DEVICE_TYPE_BOT
	identify := pageview("shop", "s9", 1, "2026-03-20T08:00:00Z")
	identify.Type, identify.UserId = aluminiv1.EventType_EVENT_TYPE_IDENTIFY, "u1"
	first = []*aluminiv1.Event{
		pageview("shop", "s1", 1, "2026-03-05T10:00:00Z"),
		pageview("shop", "s2", 1, "2026-03-05T10:05:00Z"),
		pageview("shop", "s3", 2, "2026-03-06T09:00:00Z"),
		custom("shop", "s4", 2, "2026-03-06T09:30:00Z"),
		bot, // excluded: a bot
		pageview("shop", "s6", 4, "2026-02-28T23:59:59Z"), // before March
		pageview("shop", "s7", 5, "2026-04-01T00:00:00Z"), // the first second after March
		custom("shop", "s8", 6, "2026-03-31T23:59:59Z"),   // the last second of March
		identify, // an event, not a page view
		pageview("blog", "s1", 1, "2026-03-05T10:00:00Z"), // same event and visitor ids as shop's, other client
		pageview("blog", "b2", 7, "2026-03-07T00:00:00Z"),
	}
	// A replay writes s3 again: until parts merge it is a second row.
	replay = []*aluminiv1.Event{pageview("shop", "s3", 2, "2026-03-06T09:00:00Z")}
	return first, replay
}

func insert(t *testing.T, conn driver.Conn, events []*aluminiv1.Event) {
	t.Helper()
	batch, err := conn.PrepareBatch(context.Background(), schema.InsertSQL)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		if err := batch.Append(schema.Values(ev)...); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
}

// seededDatabase returns a connection to a fresh database holding the
// fixture, with the replayed row still a duplicate.
func seededDatabase(t *testing.T) driver.Conn {
	t.Helper()
	ctx := context.Background()
	_, conn := chtest.Database(t)
	if err := schema.Apply(ctx, conn, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	// Keep the duplicate row from being merged away, so the test shows that
	// the query counts it once rather than that a merge happened to run.
	if err := conn.Exec(ctx, "SYSTEM STOP MERGES events"); err != nil {
		t.Fatal(err)
	}
	first, replay := fixture()
	insert(t, conn, first)
	insert(t, conn, replay)
	var rows uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM events WHERE client_id = 'shop' AND event_id = 's3'").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 2 {
		t.Fatalf("fixture: %d rows of the replayed event; want 2", rows)
	}
	return conn
}

func newHandler(t *testing.T, store Aggregator) (*Handler, *prometheus.Registry) {
	t.Helper()
	metrics := prometheus.NewRegistry()
	h, err := New(Config{
		Registry: newRegistry(t), Store: store, Log: zap.NewNop(), Metrics: metrics,
		QueryTimeout: 10 * time.Second, Now: func() time.Time { return fixtureNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	return h, metrics
}

type request struct {
	method, target, auth string
}

func (r request) do(t *testing.T, h http.Handler) (int, http.Header, string) {
	t.Helper()
	method := r.method
	if method == "" {
		method = http.MethodGet
	}
	req := httptest.NewRequest(method, r.target, nil)
	if r.auth != "" {
		req.Header.Set("Authorization", r.auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body, err := io.ReadAll(rec.Result().Body)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Code, rec.Header(), string(body)
}

func TestAggregateTotals(t *testing.T) {
	store, err := query.NewStore(seededDatabase(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	h, metrics := newHandler(t, store)
	const agg = AggregatePath
	for _, tc := range []struct {
		name, target, auth, want string
	}{
		{
			// s1 s2 s3(twice) s4 s8 s9; not the bot s5, not s6 and s7 outside.
			"march", agg + "?from=2026-03-01&to=2026-03-31", "Bearer " + shopKey,
			`{"client_id":"shop","from":"2026-03-01T00:00:00Z","to":"2026-04-01T00:00:00Z","results":{"pageviews":3,"visitors":3,"events":6}}`,
		},
		{
			"own client_id", agg + "?client_id=shop&from=2026-03-01&to=2026-03-31", "Bearer " + shopKey,
			`{"client_id":"shop","from":"2026-03-01T00:00:00Z","to":"2026-04-01T00:00:00Z","results":{"pageviews":3,"visitors":3,"events":6}}`,
		},
		{
			"scheme is case-insensitive", agg + "?from=2026-03-01&to=2026-03-31", "bearer " + shopKey,
			`{"client_id":"shop","from":"2026-03-01T00:00:00Z","to":"2026-04-01T00:00:00Z","results":{"pageviews":3,"visitors":3,"events":6}}`,
		},
		{
			// One second more takes in s7.
			"to is exclusive", agg + "?from=2026-03-01&to=2026-04-01T00:00:01Z", "Bearer " + shopKey,
			`{"client_id":"shop","from":"2026-03-01T00:00:00Z","to":"2026-04-01T00:00:01Z","results":{"pageviews":4,"visitors":4,"events":7}}`,
		},
		{
			// From s2 (inclusive) through the end of March 6th: s2 s3 s4.
			"from is inclusive", agg + "?from=2026-03-05T10:05:00Z&to=2026-03-06", "Bearer " + shopKey,
			`{"client_id":"shop","from":"2026-03-05T10:05:00Z","to":"2026-03-07T00:00:00Z","results":{"pageviews":2,"visitors":2,"events":3}}`,
		},
		{
			// 12:05+02:00 is s2's 10:05Z; midnight of the 6th ends before s3.
			"offsets and fractions", agg + "?from=2026-03-05T12:04:59.5%2B02:00&to=2026-03-06T00:00:00Z", "Bearer " + shopKey,
			`{"client_id":"shop","from":"2026-03-05T10:05:00Z","to":"2026-03-06T00:00:00Z","results":{"pageviews":1,"visitors":1,"events":1}}`,
		},
		{
			// The 7 days before fixtureNow: s1 s2 s3 s4.
			"default range", agg, "Bearer " + shopKey,
			`{"client_id":"shop","from":"2026-03-03T12:00:00Z","to":"2026-03-10T12:00:00Z","results":{"pageviews":3,"visitors":2,"events":4}}`,
		},
		{
			"other client", agg + "?from=2026-03-01&to=2026-03-31", "Bearer " + blogKey,
			`{"client_id":"blog","from":"2026-03-01T00:00:00Z","to":"2026-04-01T00:00:00Z","results":{"pageviews":2,"visitors":2,"events":2}}`,
		},
		{
			"empty range", agg + "?from=2025-01-01&to=2025-12-31", "Bearer " + shopKey,
			`{"client_id":"shop","from":"2025-01-01T00:00:00Z","to":"2026-01-01T00:00:00Z","results":{"pageviews":0,"visitors":0,"events":0}}`,
		},
	} {
		code, header, body := request{target: tc.target, auth: tc.auth}.do(t, h)
		if code != http.StatusOK || strings.TrimSpace(body) != tc.want {
			t.Errorf("%s: GET %s = %d %s; want %d %s", tc.name, tc.target, code, body, http.StatusOK, tc.want)
		}
		if ct := header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type = %q; want application/json", tc.name, ct)
		}
	}
	if got := testutil.ToFloat64(h.requests.WithLabelValues("aggregate", "200")); got != 9 {
		t.Errorf(`alumini_reporter_requests_total{endpoint="aggregate",code="200"} = %v; want 9`, got)
	}
	if n, err := testutil.GatherAndCount(metrics, "alumini_reporter_request_duration_seconds"); err != nil || n != 1 {
		t.Errorf("request duration series = %d, %v; want 1", n, err)
	}
}

// refusingStore fails the test if a request gets as far as a query.
type refusingStore struct{ t *testing.T }

func (s refusingStore) Aggregate(context.Context, string, query.Range) (query.Totals, error) {
	s.t.Error("a request that should have been refused reached the query")
	return query.Totals{}, nil
}

func TestAggregateRefusals(t *testing.T) {
	h, _ := newHandler(t, refusingStore{t})
	const agg = AggregatePath
	invalidKey := `{"error":"` + msgInvalidKey + `"}`
	for _, tc := range []struct {
		name, method, target, auth string
		wantCode                   int
		// wantBody is the exact body when it starts with '{', else a
		// substring of the error message.
		wantBody string
	}{
		{"no key", "", agg, "", http.StatusUnauthorized, `{"error":"` + msgMissingKey + `"}`},
		{"empty bearer", "", agg, "Bearer ", http.StatusUnauthorized, `{"error":"` + msgMissingKey + `"}`},
		{"basic auth", "", agg, "Basic c2hvcDpzaG9w", http.StatusUnauthorized, `{"error":"` + msgMissingKey + `"}`},
		{"unknown key", "", agg, "Bearer alm_nope", http.StatusUnauthorized, invalidKey},
		{"key hash as key", "", agg, "Bearer " + registry.HashAPIKey(shopKey), http.StatusUnauthorized, invalidKey},
		{"write key as API key", "", agg, "Bearer " + shopWriteKey, http.StatusUnauthorized, invalidKey},
		{"other client's id", "", agg + "?client_id=blog", "Bearer " + shopKey, http.StatusUnauthorized, invalidKey},
		{"unknown client id", "", agg + "?client_id=nosuch", "Bearer " + shopKey, http.StatusUnauthorized, invalidKey},
		{"client id twice", "", agg + "?client_id=shop&client_id=blog", "Bearer " + shopKey, http.StatusUnauthorized, invalidKey},
		{"bad from", "", agg + "?from=yesterday", "Bearer " + shopKey, http.StatusBadRequest, `parameter \"from\"`},
		{"empty from", "", agg + "?from=", "Bearer " + shopKey, http.StatusBadRequest, `parameter \"from\"`},
		{"bad to", "", agg + "?to=2026-13-01", "Bearer " + shopKey, http.StatusBadRequest, `parameter \"to\"`},
		{"from after to", "", agg + "?from=2026-03-02&to=2026-03-01", "Bearer " + shopKey, http.StatusBadRequest, `parameter \"from\"`},
		{"from equals to", "", agg + "?from=2026-03-01T00:00:00Z&to=2026-03-01T00:00:00Z", "Bearer " + shopKey, http.StatusBadRequest, `parameter \"from\"`},
		{"over two years", "", agg + "?from=2024-03-01&to=2026-03-01", "Bearer " + shopKey, http.StatusBadRequest, "2 years"},
		{"before 1970", "", agg + "?from=1969-12-31&to=1970-01-02", "Bearer " + shopKey, http.StatusBadRequest, "between"},
		{"unknown parameter", "", agg + "?form=2026-03-01", "Bearer " + shopKey, http.StatusBadRequest, `unknown parameter \"form\"`},
		{"repeated parameter", "", agg + "?to=2026-03-01&to=2026-03-02", "Bearer " + shopKey, http.StatusBadRequest, "2 times"},
		{"wrong method", http.MethodPost, agg, "Bearer " + shopKey, http.StatusMethodNotAllowed, "method POST not allowed"},
		{"unknown path", "", "/api/v1/stats/nope", "Bearer " + shopKey, http.StatusNotFound, "no such endpoint"},
		{"root", "", "/", "", http.StatusNotFound, "no such endpoint"},
	} {
		code, header, body := request{method: tc.method, target: tc.target, auth: tc.auth}.do(t, h)
		method := tc.method
		if method == "" {
			method = http.MethodGet
		}
		body = strings.TrimSpace(body)
		match := strings.Contains(body, tc.wantBody) && strings.HasPrefix(body, `{"error":"`)
		if strings.HasPrefix(tc.wantBody, "{") {
			match = body == tc.wantBody
		}
		if code != tc.wantCode || !match {
			t.Errorf("%s: %s %s = %d %s; want %d %s", tc.name, method, tc.target, code, body, tc.wantCode, tc.wantBody)
		}
		if ct := header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type = %q; want application/json", tc.name, ct)
		}
		if code == http.StatusUnauthorized && header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", tc.name)
		}
		if code == http.StatusMethodNotAllowed && header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: Allow = %q; want GET, HEAD", tc.name, header.Get("Allow"))
		}
	}
	if got := testutil.ToFloat64(h.requests.WithLabelValues("not_found", "404")); got != 2 {
		t.Errorf(`alumini_reporter_requests_total{endpoint="not_found",code="404"} = %v; want 2`, got)
	}
}

func TestAggregateQueryFailureIsA500WithoutDetails(t *testing.T) {
	// A database without the events table makes the query fail.
	_, conn := chtest.Database(t)
	metrics := prometheus.NewRegistry()
	store, err := query.NewStore(conn, metrics)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := newHandler(t, store)
	target := AggregatePath + "?from=2026-03-01&to=2026-03-31"
	code, header, body := request{target: target, auth: "Bearer " + shopKey}.do(t, h)
	want := `{"error":"internal error: the query failed"}`
	if code != http.StatusInternalServerError || strings.TrimSpace(body) != want || header.Get("Content-Type") != "application/json" {
		t.Errorf("GET %s = %d %s; want %d %s", target, code, body, http.StatusInternalServerError, want)
	}
	if n, err := testutil.GatherAndCount(metrics, "alumini_reporter_clickhouse_query_duration_seconds"); err != nil || n != 1 {
		t.Errorf("query duration series = %d, %v; want 1 (the error outcome)", n, err)
	}
}

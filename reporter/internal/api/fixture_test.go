package api

import (
	"context"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/chschema"
	"github.com/aluminiapp/pipeline/lib/chtest"
	"github.com/aluminiapp/pipeline/lib/registry"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
	"github.com/aluminiapp/pipeline/reporter/internal/clientfile"
	"github.com/aluminiapp/pipeline/reporter/internal/query"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// API keys of the fixture clients and the operator. The registry holds
// only their hashes.
const (
	shopKey      = "alm_shop0000000000000000000000000000000000000000"
	blogKey      = "alm_blog0000000000000000000000000000000000000000"
	operatorKey  = "alm_oper0000000000000000000000000000000000000000"
	shopWriteKey = "wk_shop"
)

// fixtureNow is the tests' clock: two minutes after visitor 2's last page
// view, so the realtime count sees them.
var fixtureNow = time.Date(2026, 3, 12, 9, 2, 0, 0, time.UTC)

func writeRegistry(t *testing.T) string {
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
	return path
}

func at(s string) int64 {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UnixMilli()
}

// Fixture visitors of client shop (hand-computed expectations below):
//
//	visitor 1, visit 11, 2026-03-05: "/" 10:00, "/pricing" 10:02, signup
//	  event 10:03 (on /pricing, plan=pro): 2 page views, 3 events, 180 s.
//	visitor 2, visit 21, 2026-03-05: "/" 11:00 (a bounce; sent twice, as a
//	  Kafka replay would).
//	visitor 2, visit 22, 2026-03-12: "/blog" 09:00 (a bounce).
//	visitor 3, 2026-03-05: a bot's page view, excluded unless asked for.
//
// Client blog has one visitor whose values ("/secret-blog", BlogBrowser,
// country XX) must never show in shop's answers.
func fixtureEvents() []*aluminiv1.Event {
	desktop := func(ev *aluminiv1.Event) *aluminiv1.Event {
		ev.Browser, ev.BrowserVersion, ev.Os, ev.OsVersion = "Firefox", "120", "Linux", ""
		ev.DeviceType = aluminiv1.DeviceType_DEVICE_TYPE_DESKTOP
		ev.Country, ev.Region, ev.City = "DE", "DE-BE", "Berlin"
		ev.ReferrerSource, ev.ReferrerMedium, ev.SearchTerm = "Google", "search", "running shoes"
		ev.UtmSource, ev.UtmMedium, ev.UtmCampaign = "newsletter", "email", "spring"
		return ev
	}
	mobile := func(ev *aluminiv1.Event) *aluminiv1.Event {
		ev.Browser, ev.BrowserVersion, ev.Os, ev.OsVersion = "Chrome", "121", "Android", "14"
		ev.DeviceType = aluminiv1.DeviceType_DEVICE_TYPE_MOBILE
		ev.Country, ev.Region, ev.City = "FR", "FR-IDF", "Paris"
		return ev
	}
	pv := func(client, id string, visitor, session uint64, ts, path string) *aluminiv1.Event {
		return &aluminiv1.Event{ClientId: client, EventId: id, Type: aluminiv1.EventType_EVENT_TYPE_PAGEVIEW,
			TimestampMs: at(ts), ReceivedAtMs: at(ts), VisitorId: visitor, SessionId: session, Path: path,
			Url: "https://" + client + ".example" + path, Hostname: client + ".example"}
	}
	signup := pv("shop", "s3", 1, 11, "2026-03-05T10:03:00Z", "/pricing")
	signup.Type, signup.Name, signup.Properties = aluminiv1.EventType_EVENT_TYPE_CUSTOM, "signup", map[string]string{"plan": "pro"}
	bot := pv("shop", "bot1", 3, 31, "2026-03-05T12:00:00Z", "/")
	bot.IsBot, bot.DeviceType, bot.Browser = true, aluminiv1.DeviceType_DEVICE_TYPE_BOT, "Googlebot"
	secret := pv("blog", "b1", 9, 91, "2026-03-05T10:00:00Z", "/secret-blog")
	secret.Browser, secret.Country, secret.ReferrerSource, secret.SearchTerm = "BlogBrowser", "XX", "BlogSource", "blog secret"
	return []*aluminiv1.Event{
		desktop(pv("shop", "s1", 1, 11, "2026-03-05T10:00:00Z", "/")),
		desktop(pv("shop", "s2", 1, 11, "2026-03-05T10:02:00Z", "/pricing")),
		desktop(signup),
		mobile(pv("shop", "s4", 2, 21, "2026-03-05T11:00:00Z", "/")),
		mobile(pv("shop", "s4", 2, 21, "2026-03-05T11:00:00Z", "/")),
		mobile(pv("shop", "s5", 2, 22, "2026-03-12T09:00:00Z", "/blog")),
		bot,
		secret,
	}
}

func insert(t *testing.T, conn driver.Conn, events []*aluminiv1.Event) {
	t.Helper()
	// On a cluster events is a Distributed table: the insert returns once
	// the shards have the rows, as the sinker's does (on one node the
	// setting does nothing).
	ctx := clickhouse.Context(context.Background(), clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1}))
	batch, err := conn.PrepareBatch(ctx, chschema.InsertSQL)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		if err := batch.Append(chschema.Values(ev)...); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
}

// env is a handler on a seeded database.
type env struct {
	h        *Handler
	conn     driver.Conn
	registry string
}

type envOption func(*Config)

// newEnv seeds a fresh database with the fixture and returns a handler on
// it. Rate limits are high unless an option lowers them.
func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	db, conn := chtest.Database(t)
	return seededEnv(t, conn, chschema.Target{Database: db}, opts...)
}

// newClusterEnv is newEnv on the sinker's cluster layout, on the two-shard
// cluster of deploy/clickhouse/cluster.sh: events is a
// Distributed table over replicated local ones.
func newClusterEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	db, conn := chtest.ClusterDatabase(t)
	return seededEnv(t, conn, chschema.Target{Database: db, Cluster: chtest.Cluster}, opts...)
}

// seededEnv migrates conn's database for layout (one node, or a cluster),
// seeds it and returns a handler on it, configured for that layout.
func seededEnv(t *testing.T, conn driver.Conn, layout chschema.Target, opts ...envOption) *env {
	t.Helper()
	ctx := context.Background()
	var migrate []chschema.Option
	if layout.Cluster != "" {
		migrate = append(migrate, chschema.OnCluster(layout.Cluster))
	}
	if err := chschema.Apply(ctx, conn, zap.NewNop(), migrate...); err != nil {
		t.Fatal(err)
	}
	insert(t, conn, fixtureEvents())
	store, err := query.NewStore(conn, prometheus.NewRegistry(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if layout.Cluster != "" {
		store.OnCluster(layout.Database, layout.Cluster)
	}
	if err := store.Init(ctx, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	path := writeRegistry(t)
	reg, err := registry.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Registry: reg, Store: store, Clients: clientfile.New(path), OperatorKeyHash: registry.HashAPIKey(operatorKey),
		Log: zap.NewNop(), Metrics: prometheus.NewRegistry(), QueryTimeout: 10 * time.Second,
		RateLimit: 1e6, RateBurst: 1e6, MaxRows: 100, MaxExport: 1000, TrendsMinClients: 2,
		Now: func() time.Time { return fixtureNow },
	}
	for _, o := range opts {
		o(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{h: h, conn: conn, registry: path}
}

// request is one call to the handler.
type request struct {
	method, target, auth, body string
}

func (r request) do(t *testing.T, h http.Handler) (int, http.Header, string) {
	t.Helper()
	method := r.method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if r.body != "" {
		body = stringsReader(r.body)
	}
	req := httptest.NewRequest(method, r.target, body)
	if r.auth != "" {
		req.Header.Set("Authorization", r.auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Header(), rec.Body.String()
}

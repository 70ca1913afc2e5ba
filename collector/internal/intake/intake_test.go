package intake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/aluminiapp/pipeline/collector/internal/publish"
	"github.com/aluminiapp/pipeline/collector/internal/tracker"
	"github.com/aluminiapp/pipeline/lib/kafkaconf"
	"github.com/aluminiapp/pipeline/lib/kafkatest"
	"github.com/aluminiapp/pipeline/lib/registry"
	"github.com/aluminiapp/pipeline/lib/service"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

const testClients = `
clients:
  - id: shop
    write_keys: [wk_shop]
    respect_dnt: true
    domains: [shop.example, 127.0.0.1]
    exclude:
      ip_ranges: [192.0.2.0/24]
      hostnames: [staging.shop.example]
      paths: [/admin/*]
    server_key_hashes: ["SERVER_KEY_HASH"]
    umami_website_ids: [umami-shop]
  - id: blog
    respect_dnt: false
  - id: app
    write_keys: [wk_app]
    cookie_mode: cookie
    domains: [app.example]
  - id: news
    rate_limit_per_second: 1
  - id: crm
    write_keys: [wk_crm]
    allowed_properties: [plan]
  - id: kids
    write_keys: [wk_kids]
    child_directed: true
    allowed_properties: [level]
  - id: kids2
    child_directed: true
    domains: [kids.example]
    umami_website_ids: [umami-kids]
`

// clientsYAML is testClients with the hash of serverKey in place.
func clientsYAML() []byte {
	return []byte(strings.Replace(testClients, "SERVER_KEY_HASH", registry.HashAPIKey(serverKey), 1))
}

type fixture struct {
	url, kafka, topic string
	cluster           *kfake.Cluster
	handler           *Handler
	metrics           *prometheus.Registry
}

// start runs the handler on a real listener, producing to an in-process
// broker; opts change the handler's configuration.
func start(t testing.TB, opts ...func(*Config)) fixture {
	t.Helper()
	cluster, addr := kafkatest.Start(t)
	kcfg := kafkaconf.Config{Brokers: addr, RawTopic: "raw", Partitions: 3, ReplicationFactor: 1}
	if err := kcfg.EnsureTopics(t.Context(), kcfg.RawTopic); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "clients.yaml")
	if err := os.WriteFile(path, clientsYAML(), 0o600); err != nil {
		t.Fatal(err)
	}
	clients, err := registry.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	pub := publish.New(publish.Config{Addr: kcfg.Addr(), Topic: kcfg.RawTopic, AckTimeout: 2 * time.Second}, reg)
	t.Cleanup(func() {
		if err := pub.Close(); err != nil {
			t.Logf("closing publisher: %v", err)
		}
	})
	cfg := Config{
		Clients: clients, Publisher: pub, Health: service.NewHealth(), Log: zap.NewNop(), Metrics: reg,
		Script: tracker.Script(DefaultPaths.Event), MaxBodyBytes: 4096, MaxBatchEvents: 10,
	}
	for _, o := range opts {
		o(&cfg)
	}
	h := New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(h, ServerConfig{}) // as main.go serves it
	go func() { _ = srv.Serve(ln) }()   // returns when the listener closes at cleanup.
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Logf("shutdown: %v", err)
		}
	})
	return fixture{url: "http://" + ln.Addr().String(), kafka: addr, topic: kcfg.RawTopic, cluster: cluster, handler: h, metrics: reg}
}

// serverKey is the secret Segment write key of shop's servers.
const serverKey = "srv_shop_secret"

func post(t *testing.T, url, contentType, body string, headers map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, buf.String()
}

func TestAcceptedEventReachesKafka(t *testing.T) {
	f := start(t)
	status, body := post(t, f.url+"/api/event", "application/json", `{
		"client_id": "shop", "url": "https://shop.example/pricing?utm_source=news",
		"referrer": "https://www.google.com/", "title": "Pricing", "screen_width": 1280,
		"timestamp": "`+time.Now().UTC().Add(-time.Minute).Format(time.RFC3339)+`",
		"properties": {"plan": "pro", "seats": 3, "trial": true}}`, nil)
	if status != http.StatusAccepted {
		t.Fatalf("POST /api/event = %d %s; want 202", status, body)
	}
	var resp struct {
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil || resp.EventID == "" {
		t.Fatalf("response %s: want an event_id (%v)", body, err)
	}
	msgs := kafkatest.ReadAll(t, f.kafka, f.topic, 1, 5*time.Second)
	if len(msgs) != 1 {
		t.Fatalf("raw topic holds %d records; want 1", len(msgs))
	}
	var hit aluminiv1.RawHit
	if err := proto.Unmarshal(msgs[0].Value, &hit); err != nil {
		t.Fatal(err)
	}
	if hit.ClientId != "shop" || hit.EventId != resp.EventID || hit.Url != "https://shop.example/pricing?utm_source=news" ||
		hit.Type != aluminiv1.EventType_EVENT_TYPE_PAGEVIEW || hit.ScreenWidth != 1280 || hit.SentAtMs == 0 || hit.ReceivedAtMs == 0 {
		t.Errorf("raw hit = %v; want the posted pageview of shop with event id %s", &hit, resp.EventID)
	}
	if got := hit.Properties; got["plan"] != "pro" || got["seats"] != "3" || got["trial"] != "true" {
		t.Errorf("properties = %v; want plan=pro seats=3 trial=true", got)
	}
	if !strings.HasPrefix(string(msgs[0].Key), "shop:") {
		t.Errorf("key = %q; want it to start with the client id", msgs[0].Key)
	}
	if net.IP(hit.Ip).String() != "127.0.0.1" || !strings.Contains(hit.UserAgent, "Firefox") {
		t.Errorf("ip, user agent = %v, %q; want the request's", net.IP(hit.Ip), hit.UserAgent)
	}
}

// TestOnlyAllowedPropertiesReachKafka: a client with an allow-list gets
// only those property names stored, from the JSON API and the pixel alike.
func TestOnlyAllowedPropertiesReachKafka(t *testing.T) {
	f := start(t)
	status, body := post(t, f.url+"/api/event", "application/json",
		`{"client_id": "crm", "url": "https://crm.example/", "properties": {"plan": "pro", "email": "a@b.example"}}`, nil)
	if status != http.StatusAccepted {
		t.Fatalf("POST /api/event = %d %s; want 202", status, body)
	}
	if r := send(t, "GET", f.url+"/p.gif?write_key=wk_crm&url=https%3A%2F%2Fcrm.example%2Fmail&prop.plan=team&prop.email=c%40d.example", nil, nil); r.status != http.StatusOK {
		t.Fatalf("GET /p.gif = %d %s; want 200", r.status, r.body)
	}
	for _, hit := range readHits(t, f, 2) {
		if _, leaked := hit.Properties["email"]; leaked || hit.Properties["plan"] == "" {
			t.Errorf("properties of %s = %v; want plan only", hit.Url, hit.Properties)
		}
	}
}

func TestClientEventIDIsKept(t *testing.T) {
	f := start(t)
	for i := 0; i < 2; i++ { // a retry sends the same event again
		if status, body := post(t, f.url+"/api/event", "text/plain", `{"write_key":"wk_shop","type":"custom","name":"signup","event_id":"evt-123"}`, nil); status != http.StatusAccepted {
			t.Fatalf("POST = %d %s; want 202", status, body)
		}
	}
	for _, m := range kafkatest.ReadAll(t, f.kafka, f.topic, 2, 5*time.Second) {
		var hit aluminiv1.RawHit
		if err := proto.Unmarshal(m.Value, &hit); err != nil {
			t.Fatal(err)
		}
		if hit.EventId != "evt-123" || hit.ClientId != "shop" || hit.Name != "signup" {
			t.Errorf("hit = %v; want event evt-123 of shop named signup", &hit)
		}
	}
}

func TestRefusedAndDroppedEventsNeverReachKafka(t *testing.T) {
	f := start(t)
	big := `{"client_id":"shop","url":"https://shop.example/","title":"` + strings.Repeat("x", 5000) + `"}`
	for _, tc := range []struct {
		name, contentType, body string
		headers                 map[string]string
		status                  int
		message                 string
	}{
		{"unknown client", "application/json", `{"client_id":"nobody","url":"https://a.example/"}`, nil, 400, `unknown client_id \"nobody\"`},
		{"unknown write key", "application/json", `{"write_key":"wk_x","url":"https://a.example/"}`, nil, 400, "unknown write_key"},
		{"no client", "application/json", `{"url":"https://a.example/"}`, nil, 400, "client_id (or write_key) is required"},
		{"malformed JSON", "application/json", `{"client_id":"shop",`, nil, 400, "malformed JSON"},
		{"unknown field", "application/json", `{"client_id":"shop","url":"https://a.example/","colour":"red"}`, nil, 400, `unknown field \"colour\"`},
		{"pageview without url", "application/json", `{"client_id":"shop"}`, nil, 400, "url is required for a pageview"},
		{"relative url", "application/json", `{"client_id":"shop","url":"/pricing"}`, nil, 400, "want an absolute http or https URL"},
		{"custom without name", "application/json", `{"client_id":"shop","type":"custom"}`, nil, 400, "name is required for a custom event"},
		{"bad type", "application/json", `{"client_id":"shop","type":"click"}`, nil, 400, `type \"click\"`},
		{"future timestamp", "application/json", `{"client_id":"shop","url":"https://a.example/","timestamp":"2999-01-01T00:00:00Z"}`, nil, 400, "ahead of or"},
		{"nested property", "application/json", `{"client_id":"shop","url":"https://a.example/","properties":{"a":{"b":1}}}`, nil, 400, `property \"a\": want a string, number or boolean`},
		{"long name", "application/json", `{"client_id":"shop","type":"custom","name":"` + strings.Repeat("n", 201) + `"}`, nil, 400, "name is 201 bytes long; the limit is 200"},
		{"too many properties", "application/json", `{"client_id":"shop","url":"https://a.example/","properties":{` + manyProps(31) + `}}`, nil, 400, `{"error":"properties has 31 entries; the limit is 30"}`},
		{"long property value", "application/json", `{"client_id":"shop","url":"https://a.example/","properties":{"p":"` + strings.Repeat("v", 513) + `"}}`, nil, 400, `{"error":"property \"p\" is 513 bytes long; the limit is 512"}`},
		{"long property name", "application/json", `{"client_id":"shop","url":"https://a.example/","properties":{"` + strings.Repeat("k", 65) + `":"v"}}`, nil, 400, `want 1-64 bytes of UTF-8`},
		{"long url", "application/json", `{"client_id":"shop","url":"https://a.example/` + strings.Repeat("u", 2048) + `"}`, nil, 400, `{"error":"url is 2066 bytes long; the limit is 2048"}`},
		{"wrong JSON type", "application/json", `{"client_id":"shop","url":42}`, nil, 400, `{"error":"malformed JSON: url: want a string, got number"}`},
		{"client_id twice", "application/json", `{"client_id":"shop","url":"https://a.example/","client_id":"blog"}`, nil, 400, `{"error":"malformed JSON: field \"client_id\" appears twice in one object"}`},
		{"event_id twice, once escaped", "application/json", `{"client_id":"shop","url":"https://a.example/","event_id":"a","event_\u0069d":"b"}`, nil, 400, `field \"event_id\" appears twice`},
		{"property twice", "application/json", `{"client_id":"shop","url":"https://a.example/","properties":{"plan":"pro","plan":"free"}}`, nil, 400, `{"error":"malformed JSON: property \"plan\" appears twice"}`},
		{"property twice, first null", "application/json", `{"client_id":"shop","url":"https://a.example/","properties":{"plan":null,"plan":"free"}}`, nil, 400, `property \"plan\" appears twice`},
		{"wrong content type", "application/x-www-form-urlencoded", `client_id=shop`, nil, 415, "Content-Type must be application/json"},
		{"body too large", "application/json", big, nil, 413, "request body is larger than the collector accepts"},
		{"opt-out cookie", "application/json", `{"client_id":"blog","url":"https://blog.example/"}`, map[string]string{"Cookie": OptOutCookie + "=1"}, 204, ""},
		{"DNT header, client respects it", "application/json", `{"client_id":"shop","url":"https://shop.example/"}`, map[string]string{"DNT": "1"}, 204, ""},
		{"GPC header, client respects it", "application/json", `{"client_id":"shop","url":"https://shop.example/"}`, map[string]string{"Sec-GPC": "1"}, 204, ""},
		{"DNT forwarded in payload", "application/json", `{"client_id":"shop","url":"https://shop.example/","dnt":true}`, nil, 204, ""},
	} {
		status, body := post(t, f.url+"/api/event", tc.contentType, tc.body, tc.headers)
		if status != tc.status || !strings.Contains(body, tc.message) {
			t.Errorf("%s: POST = %d %s; want %d with %q", tc.name, status, body, tc.status, tc.message)
		}
		if status == 204 && body != "" {
			t.Errorf("%s: dropped hit answered with body %q; want none", tc.name, body)
		}
	}
	if n := kafkatest.Count(t, f.kafka, f.topic); n != 0 {
		t.Errorf("raw topic holds %d records after only refused and dropped hits; want 0", n)
	}
	// A client that did not ask for DNT respect still collects such hits.
	if status, body := post(t, f.url+"/api/event", "application/json", `{"client_id":"blog","url":"https://blog.example/"}`, map[string]string{"DNT": "1"}); status != 202 {
		t.Errorf("DNT hit for a client without DNT respect = %d %s; want 202", status, body)
	}
}

func manyProps(n int) string {
	var parts []string
	for i := 0; i < n; i++ {
		parts = append(parts, fmt.Sprintf(`"p%d":%d`, i, i))
	}
	return strings.Join(parts, ",")
}

func TestNoAcceptanceWithoutKafka(t *testing.T) {
	cluster, addr := kafkatest.Start(t)
	kcfg := kafkaconf.Config{Brokers: addr, RawTopic: "raw", Partitions: 1, ReplicationFactor: 1}
	if err := kcfg.EnsureTopics(t.Context(), "raw"); err != nil {
		t.Fatal(err)
	}
	// A handler whose broker goes away must answer 503, never 202.
	path := filepath.Join(t.TempDir(), "clients.yaml")
	if err := os.WriteFile(path, clientsYAML(), 0o600); err != nil {
		t.Fatal(err)
	}
	clients, err := registry.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	pub := publish.New(publish.Config{Addr: kcfg.Addr(), Topic: "raw", AckTimeout: 500 * time.Millisecond}, reg)
	h := New(Config{Clients: clients, Publisher: pub, Health: service.NewHealth(), Log: zap.NewNop(), Metrics: reg})
	cluster.Close()

	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("POST")
	ctx.Request.SetRequestURI("/api/event")
	ctx.Request.Header.SetContentType("application/json")
	ctx.Request.SetBodyString(`{"client_id":"shop","url":"https://shop.example/"}`)
	h.Serve(&ctx)
	if got := ctx.Response.StatusCode(); got != 503 || string(ctx.Response.Header.Peek("Retry-After")) != "1" ||
		string(ctx.Response.Body()) != `{"error":"the events could not be stored right now; retry with the same event_id"}` {
		t.Errorf("with the broker down: status %d, Retry-After %q; want 503 with Retry-After", got, ctx.Response.Header.Peek("Retry-After"))
	}
	if err := pub.Close(); err != nil {
		t.Logf("closing publisher of a dead broker: %v", err)
	}
}

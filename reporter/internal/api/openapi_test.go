package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/aluminiapp/pipeline/lib/registry"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// TestOpenAPIListsEveryRoute parses the embedded document and checks that
// it describes every path and method the router serves, and nothing else.
func TestOpenAPIListsEveryRoute(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json does not parse: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q; want 3.x", doc.OpenAPI)
	}
	e := newEnv(t)
	routes := e.h.Routes()
	for path, methods := range routes {
		for _, m := range methods {
			if m == http.MethodHead {
				continue
			}
			if _, ok := doc.Paths[path][strings.ToLower(m)]; !ok {
				t.Errorf("openapi.json lacks %s %s", m, path)
			}
		}
	}
	for path, ops := range doc.Paths {
		for op := range ops {
			found := false
			for _, m := range routes[path] {
				found = found || strings.EqualFold(m, op)
			}
			if !found {
				t.Errorf("openapi.json describes %s %s, which the router does not serve", op, path)
			}
		}
	}
}

func TestOperatorClientManagement(t *testing.T) {
	e := newEnv(t)
	op := "Bearer " + operatorKey
	code, _, body := request{method: http.MethodPost, target: OpClientsPath, auth: op, body: `{"id":"news","domains":["news.example"],"respect_dnt":true}`}.do(t, e.h)
	var added struct {
		APIKey string `json:"api_key"`
	}
	if code != http.StatusCreated || json.Unmarshal([]byte(body), &added) != nil || !strings.HasPrefix(added.APIKey, "alm_") {
		t.Fatalf("POST clients = %d %s; want 201 with an API key", code, body)
	}
	if code, _, body := (request{method: http.MethodPost, target: OpClientsPath, auth: op, body: `{"id":"news"}`}).do(t, e.h); code != http.StatusConflict {
		t.Errorf("adding news twice = %d %s; want 409", code, body)
	}
	if code, _, body := (request{method: http.MethodPatch, target: OpClientsPath + "?id=news", auth: op, body: `{"cookie_mode":"sometimes"}`}).do(t, e.h); code != http.StatusBadRequest {
		t.Errorf("invalid setting = %d %s; want 400", code, body)
	}
	if code, _, body := (request{method: http.MethodPatch, target: OpClientsPath + "?id=news", auth: op, body: `{"retention_days":30}`}).do(t, e.h); code != http.StatusOK || !strings.Contains(body, `"retention_days":30`) {
		t.Errorf("PATCH = %d %s; want 200 with retention 30", code, body)
	}
	// Every registry field can be set (TestEverySettingReachesTheFile in
	// clientfile covers each one); here those the endpoint once refused.
	patch := `{"bots":"drop","time_zone":"Europe/Berlin","rate_limit_per_second":5,"rate_limit_burst":500,"keep_truncated_ip":false,
		"server_key_hashes":["` + registry.HashAPIKey("srv") + `"],"exclude":{"paths":["/admin/*"]},"child_directed":true}`
	code, _, body = request{method: http.MethodPatch, target: OpClientsPath + "?id=news", auth: op, body: patch}.do(t, e.h)
	for _, want := range []string{`"bots":"drop"`, `"time_zone":"Europe/Berlin"`, `"rate_limit_per_second":5`, `"rate_limit_burst":500`,
		`"server_keys":1`, `"paths":["/admin/*"]`, `"child_directed":true`, `"retention_days":30`} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("PATCH %s = %d %s; want 200 showing %s", patch, code, body, want)
		}
	}
	if code, _, body := (request{method: http.MethodPatch, target: OpClientsPath + "?id=news", auth: op, body: `{"cookie_mode":"cookie"}`}).do(t, e.h); code != http.StatusBadRequest || !strings.Contains(body, "child_directed") {
		t.Errorf("cookie mode for a child-directed client = %d %s; want 400 naming child_directed", code, body)
	}
	code, _, body = request{method: http.MethodPost, target: OpKeysPath + "?id=news&rotate=true", auth: op}.do(t, e.h)
	if code != http.StatusCreated || strings.Contains(body, added.APIKey) {
		t.Fatalf("rotate = %d %s; want 201 with a new key", code, body)
	}
	raw := readFile(t, e.registry)
	if strings.Contains(raw, added.APIKey) || strings.Contains(raw, "alm_") {
		t.Error("the registry file holds a plain API key")
	}
	code, _, body = request{target: OpClientsPath, auth: op}.do(t, e.h)
	if code != http.StatusOK || !strings.Contains(body, `"id":"news"`) || !strings.Contains(body, `"api_keys":1`) || strings.Contains(body, "sha256") {
		t.Errorf("GET clients = %d %s; want news with 1 key, no hashes", code, body)
	}
	// Trends: with a minimum of 2 clients, only values both shop and blog
	// have show. A blog visitor with Firefox makes Firefox shared.
	ff := fixtureEvents()[7]
	ff.EventId, ff.VisitorId, ff.Browser = "b2", 10, "Firefox"
	insert(t, e.conn, []*aluminiv1.Event{ff})
	code, _, body = request{target: OpTrendsPath + "?dimension=browser&from=2026-03-01&to=2026-03-31", auth: op}.do(t, e.h)
	if code != http.StatusOK || strings.Contains(body, "BlogBrowser") || strings.Contains(body, "Chrome") ||
		!strings.Contains(body, `{"value":"Firefox","clients":2,"visitors":2,"share":50}`) || !strings.Contains(body, `"total_visitors":4`) {
		t.Errorf("GET trends = %d %s; want only Firefox (2 clients, 2 of 4 visitors)", code, body)
	}
	if code, _, _ := (request{target: OpTrendsPath + "?dimension=page", auth: op}).do(t, e.h); code != http.StatusBadRequest {
		t.Errorf("trends by page = %d; want 400", code)
	}
}

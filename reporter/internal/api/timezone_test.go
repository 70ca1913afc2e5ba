package api

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/aluminiapp/pipeline/lib/registry"
)

// withShopTimeZone gives client shop a time zone in the registry.
func withShopTimeZone(t *testing.T, zone string) envOption {
	t.Helper()
	path := writeRegistry(t)
	doc := readFile(t, path)
	doc = strings.Replace(doc, "  - id: shop\n", "  - id: shop\n    time_zone: "+zone+"\n", 1)
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	reg, err := registry.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := reg.ByAPIKey(shopKey); err != nil || c.TimeZone != zone {
		t.Fatalf("registry: shop's time zone = %v, %v; want %s", c, err, zone)
	}
	return func(c *Config) { c.Registry = reg }
}

// A client's registry time zone is the default of its reports: dates,
// presets and buckets are cut in it unless the request's tz overrides it.
// Pacific/Kiritimati is UTC+14, so its 2026-03-05 ends at 10:00 UTC, just
// before shop's page views of that UTC day (10:00-11:00 UTC).
func TestClientTimeZoneIsTheDefault(t *testing.T) {
	e := newEnv(t, withShopTimeZone(t, "Pacific/Kiritimati"))
	auth := "Bearer " + shopKey
	cases := []struct {
		name, target string
		want         map[string]any
	}{
		{"client zone", AggregatePath + "?from=2026-03-05&to=2026-03-05", map[string]any{
			"tz": "Pacific/Kiritimati", "from": "2026-03-05T00:00:00+14:00", "to": "2026-03-06T00:00:00+14:00",
			"results.visitors": 0.0, "results.pageviews": 0.0,
		}},
		{"next local day", AggregatePath + "?from=2026-03-06&to=2026-03-06", map[string]any{
			"tz": "Pacific/Kiritimati", "results.visitors": 2.0, "results.pageviews": 3.0,
		}},
		{"tz overrides", AggregatePath + "?from=2026-03-05&to=2026-03-05&tz=UTC", map[string]any{
			"tz": "UTC", "from": "2026-03-05T00:00:00Z", "results.visitors": 2.0, "results.pageviews": 3.0,
		}},
		{"preset in client zone", AggregatePath + "?period=today", map[string]any{
			// fixtureNow, 2026-03-12 09:02 UTC, is 23:02 local.
			"tz": "Pacific/Kiritimati", "from": "2026-03-12T00:00:00+14:00", "results.visitors": 1.0,
		}},
		{"buckets in client zone", TimeseriesPath + "?from=2026-03-06&to=2026-03-06&interval=hour", map[string]any{
			"results.points.0.time": "2026-03-06T00:00:00+14:00", "results.points.0.pageviews": 2.0,
			"results.points.1.time": "2026-03-06T01:00:00+14:00", "results.points.1.pageviews": 1.0,
		}},
		{"retention weeks in client zone", RetentionPath + "?from=2026-03-02&to=2026-03-15", map[string]any{
			"from": "2026-03-02T00:00:00+14:00", "results.cohorts.0.week": "2026-03-02", "results.cohorts.0.returning.1": 1.0,
		}},
	}
	for _, tc := range cases {
		code, _, body := request{target: tc.target, auth: auth}.do(t, e.h)
		if code != http.StatusOK {
			t.Errorf("%s: GET %s = %d %s", tc.name, tc.target, code, body)
			continue
		}
		var got any
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		for path, want := range tc.want {
			if v, ok := lookup(got, path); !ok || v != want {
				t.Errorf("%s: GET %s: %s = %v; want %v\n%s", tc.name, tc.target, path, v, want, body)
			}
		}
	}
	// Another client without a zone keeps UTC.
	code, _, body := request{target: AggregatePath + "?period=today", auth: "Bearer " + blogKey}.do(t, e.h)
	if code != http.StatusOK || !strings.Contains(body, `"tz":"UTC"`) || !strings.Contains(body, `"from":"2026-03-12T00:00:00Z"`) {
		t.Errorf("blog's today = %d %s; want UTC", code, body)
	}
}
